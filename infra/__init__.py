"""The CDK app: composes one construct per concern from ``loopml.topology.TOPOLOGY``."""

"""One construct per concern; each builds what ``loopml.topology`` declares, never resources of its own.

The package lives at ``infra.constructs`` (import it with the repository root on ``sys.path``), so it
does not shadow the ``constructs`` library that aws-cdk-lib depends on.
"""

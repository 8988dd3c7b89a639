"""The loopml stack: composes one construct per concern, every resource taken from the declaration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aws_cdk import Stack, Tags
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.api import LoopmlApi
from infra.constructs.buckets import Buckets
from infra.constructs.deployment import Deployment
from infra.constructs.function import DeclaredFunction, LoopmlFunction
from infra.constructs.inference import Inference
from infra.constructs.layers import Layers
from infra.constructs.nag import acknowledge_grant_wildcards
from infra.constructs.observability import Observability
from infra.constructs.queues import Queues
from infra.constructs.resources import Resources, pascal
from infra.constructs.secrets import Secrets
from infra.constructs.tables import Tables
from infra.constructs.workflows import Workflows
from loopml.topology import TOPOLOGY, FunctionSpec, Topology


class FunctionConstruct(Protocol):
    handler: LoopmlFunction


FunctionFactory = Callable[..., FunctionConstruct]

# Functions that need more than DeclaredFunction (routes + declared wiring). Adding one: write its
# construct with DeclaredFunction's signature and list it here.
FUNCTION_CONSTRUCTS: Mapping[str, FunctionFactory] = {"inference": Inference}


class UnexplainedWildcard(ValueError):
    """An IAM wildcard that no grant_* pattern in infra.constructs.nag accounts for."""


class LoopmlStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        topology: Topology = TOPOLOGY,
        function_constructs: Mapping[str, FunctionFactory] = FUNCTION_CONSTRUCTS,
        layers: Sequence[lambda_.ILayerVersion] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("loopml:stage", deployment.stage)
        Tags.of(self).add("loopml:model", deployment.model)
        self.deployment = deployment
        self.topology = topology
        unknown = set(deployment.provisioned_concurrency) - {f.name for f in topology.functions}
        if unknown:
            raise ValueError(f"provisioned_concurrency names undeclared functions: {sorted(unknown)}")
        resources = Resources(
            self,
            deployment,
            declared_functions={f.name: f.alias for f in topology.functions},
            declared_state_machines=frozenset(m.name for m in topology.state_machines),
        )
        self.resources = resources
        self.observability = Observability(self, "Observability", deployment=deployment)
        self.buckets = Buckets(self, "Buckets", deployment=deployment, buckets=topology.buckets, resources=resources)
        self.queues = Queues(
            self,
            "Queues",
            deployment=deployment,
            queues=topology.queues,
            resources=resources,
            observability=self.observability,
        )
        self.tables = Tables(self, "Tables", deployment=deployment, tables=topology.tables, resources=resources)
        self.buckets.add_notifications(topology, resources)
        self.secrets = Secrets(self, "Secrets", deployment=deployment, secrets=topology.secrets, resources=resources)
        # tests pass one list for every function; synth builds each layer set
        self.layer_sets: Mapping[str, Sequence[lambda_.ILayerVersion]] = (
            Layers(self, "Layers", deployment=deployment).sets
            if layers is None
            else {kind: list(layers) for kind in ("full", "slim", "compile")}
        )
        self.api = LoopmlApi(self, "Api", deployment=deployment)
        self.functions: dict[str, LoopmlFunction] = {}
        for spec in topology.functions:
            self.functions[spec.name] = self._function(spec, function_constructs).handler
        self.workflows = Workflows(
            self,
            "Workflows",
            deployment=deployment,
            state_machines=topology.state_machines,
            resources=resources,
        )
        self.observability.watch(
            api=self.api.rest_api,
            functions={name: fn.alias for name, fn in self.functions.items()},
            queues=self.queues.watched,
        )
        unexplained = acknowledge_grant_wildcards(self)
        if unexplained:
            raise UnexplainedWildcard("IAM wildcards not produced by a known grant_*: " + "; ".join(unexplained))

    def _function(self, spec: FunctionSpec, constructs: Mapping[str, FunctionFactory]) -> FunctionConstruct:
        factory = constructs.get(spec.folder, DeclaredFunction)  # every model's lane is an Inference
        return factory(
            self,
            pascal(spec.name),
            spec=spec,
            deployment=self.deployment,
            resources=self.resources,
            layers=self.layer_sets[spec.layer_set],
            api=self.api,
        )

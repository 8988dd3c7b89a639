"""The serving function: a ``LoopmlFunction`` behind the API, resolving the champion model at start."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.api import LoopmlApi
from infra.constructs.deployment import Deployment
from infra.constructs.function import LoopmlFunction
from infra.constructs.resources import Resources
from loopml.topology import FunctionSpec


class Inference(Construct):
    """Serves the deployment's model; ``MODEL_VERSION=champion`` until a rollout pins a version."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        deployment: Deployment,
        resources: Resources,
        layers: Sequence[lambda_.ILayerVersion],
        api: LoopmlApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = LoopmlFunction(
            self,
            "Handler",
            spec=spec,
            deployment=deployment,
            resources=resources,
            layers=layers,
            # The registry's champion alias is read at cold start; the retraining workflow later
            # publishes versions with an explicit MODEL_VERSION for the canary.
            defaults={"MODEL_VERSION": "champion"},
            # The `model` context chooses which registry model this stage serves.
            overrides={"MODEL_NAME": deployment.model},
        )
        api.add_routes(spec.routes, self.handler.alias)

"""The serving function: a declared function behind the API, resolving the champion model at start."""

from __future__ import annotations

from infra.constructs.deployment import Deployment
from infra.constructs.function import DeclaredFunction


class Inference(DeclaredFunction):
    """Serves the deployment's model; ``MODEL_VERSION=champion`` until a rollout pins a version."""

    def environment_defaults(self, deployment: Deployment) -> dict[str, str]:
        # The registry's champion alias is read at cold start; the retraining workflow later publishes
        # versions with an explicit MODEL_VERSION for the canary.
        return {"MODEL_VERSION": "champion"}

    def environment_overrides(self, deployment: Deployment) -> dict[str, str]:
        # The `model` context chooses which registry model this stage serves.
        return {"MODEL_NAME": deployment.model}

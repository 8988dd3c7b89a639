"""Putting a model version in front of traffic: one code path for the workflow's promotion and for a
person's ``loopml promote`` / ``loopml rollback``.

``serve`` moves alias ``live`` of the inference function to a Lambda version pinned to the model
version, then the registry's ``champion`` alias, and appends a ``promoted`` (or ``rolled_back``)
history entry, so what the registry says is what is served. ``promote`` first verifies the version's
artifact against its recorded SHA-256 and publishes that pinned Lambda version; it works when the
current champion is broken (nothing of it is loaded). A canary in flight is not overridden unless
asked: the retraining workflow owns those weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel

from loopml.errors import IntegrityError, NotFound, Unservable, VersionConflict
from loopml.inference.models import pinned_environment, served_runtime
from loopml.names import Runtime
from loopml.registry import HistoryEvent, ModelMetadata, ModelRegistry, servable, served_form


class Routing(Protocol):
    """The inference function's alias (``loopml.retrain.adapters.InferenceAlias``)."""

    def routing(self) -> tuple[str, dict[str, float]]: ...

    def environment(self, qualifier: str = "$LATEST") -> dict[str, str]: ...

    def publish(self, variables: dict[str, str], description: str) -> str: ...

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None: ...


class CanaryInFlight(VersionConflict):
    """Alias ``live`` splits traffic for a retraining's canary; a manual promotion would end it."""


class NoPreviousChampion(NotFound):
    """Nothing to roll back to: the registry has no earlier champion of this model."""


class Served(BaseModel):
    model: str
    version: int
    previous_version: int | None
    lambda_version: str
    action: Literal["promoted", "rolled_back"]


class Promotion:
    def __init__(
        self,
        registry: ModelRegistry,
        alias: Routing,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.alias = alias
        self._clock = clock

    def serve(
        self,
        model: str,
        version: int,
        lambda_version: str,
        actor: str,
        reason: str,
        action: Literal["promoted", "rolled_back"] = "promoted",
        **details: object,
    ) -> Served:
        """All traffic to ``lambda_version`` (which serves ``version``), then the registry follows."""
        previous = self._champion(model)
        self.alias.route(lambda_version)
        self.registry.set_alias(model, "champion", version, actor=actor, reason=reason)
        self.registry.record(
            HistoryEvent(
                model=model,
                at=self._clock(),
                actor=actor,
                action=action,
                version=version,
                previous_version=previous,
                reason=reason,
                details={"lambda_version": lambda_version, **details},
            )
        )
        return Served(
            model=model, version=version, previous_version=previous, lambda_version=lambda_version, action=action
        )

    def promote(
        self,
        model: str,
        version: int,
        actor: str,
        reason: str,
        force: bool = False,
        action: Literal["promoted", "rolled_back"] = "promoted",
    ) -> Served:
        """Verify ``version``, publish a Lambda version pinned to it, and serve it."""
        meta = self.registry.metadata(model, version)  # ModelNotFound names a version that does not exist
        runtime = self.check_servable(meta)
        _, expected, _ = served_form(meta, runtime)  # the form the function's runtime loads
        digest = hashlib.sha256(self.registry.form(meta, runtime)).hexdigest()
        if digest != expected:
            raise IntegrityError(
                f"{model} v{version} is refused: its {'compiled form' if runtime == 'compiled' else 'artifact'}'s "
                f"SHA-256 {digest} is not the registered {expected}"
            )
        primary, weights = self.alias.routing()
        if weights and not force:
            split = ", ".join(f"Lambda version {v} at {w:.0%}" for v, w in weights.items())
            raise CanaryInFlight(
                f"alias live of {model} sends traffic to a canary ({split}, primary {primary}); wait for the "
                "retraining to end, or pass --force to end the canary"
            )
        lambda_version = self.alias.publish(pinned_environment(version), f"{model} v{version}: {reason}")
        return self.serve(model, version, lambda_version, actor, reason, action=action)

    def check_servable(self, meta: ModelMetadata) -> Runtime:
        """The function's declared runtime; Unservable, naming why, when it cannot serve this version."""
        runtime = served_runtime(self.alias.environment())
        reason = servable(meta, runtime)
        if reason:
            raise Unservable(f"{meta.model} is refused: {reason}")
        return runtime

    def previous_champion(self, model: str) -> int:
        """The champion before the current one, from the registry's history."""
        current = self._champion(model)
        for event in reversed(self.registry.history(model)):
            if (
                event.action == "alias_moved"
                and event.details.get("alias") == "champion"
                and event.version == current
                and event.previous_version is not None
                and event.previous_version != current
            ):
                return event.previous_version
        raise NoPreviousChampion(f"model {model!r} has no earlier champion than v{current} to roll back to")

    def rollback(self, model: str, actor: str, reason: str, force: bool = False) -> Served:
        return self.promote(model, self.previous_champion(model), actor, reason, force=force, action="rolled_back")

    def _champion(self, model: str) -> int | None:
        try:
            return self.registry.resolve(model, "champion")
        except NotFound:
            return None

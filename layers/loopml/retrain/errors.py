"""Errors the retraining workflow raises on purpose; the state machine's Retry/Catch match their names."""

from __future__ import annotations

from loopml.errors import InvalidInput, LoopmlError


class RetrainingInProgress(LoopmlError):
    """Another execution holds the model's retraining lock."""


class ApprovalRejected(LoopmlError):
    """A human rejected the challenger (sent as the task failure's error name)."""


class DeploymentFailed(LoopmlError):
    """Lambda did not finish updating the inference function, or its alias is not ours to change."""


class ModelNotServed(InvalidInput):
    """A retraining was asked for a model this deployment does not serve (or has never registered)."""

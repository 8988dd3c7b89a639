"""Errors the retraining workflow raises on purpose; the state machine's Retry/Catch match their names."""

from __future__ import annotations

from loopml.errors import LoopmlError


class RetrainingInProgress(LoopmlError):
    """Another execution holds the model's retraining lock."""


class ApprovalRejected(LoopmlError):
    """A human rejected the challenger (sent as the task failure's error name)."""


class DeploymentFailed(LoopmlError):
    """Lambda did not finish updating the inference function, or its alias is not ours to change."""

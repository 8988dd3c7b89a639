"""Domain errors.

Class names are part of the contract: Step Functions Retry/Catch match on them (``errorType``), and the
API maps them to status codes. Rename one only together with the state machine definition.
"""

from __future__ import annotations

from typing import Any


class LoopmlError(Exception):
    """Base of every error loopml raises on purpose."""


class ConfigurationError(LoopmlError):
    """A function or command was started with missing or invalid configuration."""


class InvalidInput(LoopmlError):
    """User-supplied data is wrong; ``errors`` names each field and the reason."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFound(LoopmlError):
    """A named thing (model, version, alias, prediction) does not exist."""


class ModelNotFound(NotFound):
    """No such model or model version in the registry."""


class VersionConflict(LoopmlError):
    """Another writer won a race for the same version number or object."""


class IntegrityError(LoopmlError):
    """An artifact's SHA-256 does not match the one recorded when it was registered."""


class ModelUnavailable(LoopmlError):
    """The model cannot be served right now (not loadable, and no verified copy to fall back on)."""


class TransientError(LoopmlError):
    """A dependency failed in a way that is worth retrying (throttling, timeouts, 5xx)."""


class InsufficientData(LoopmlError):
    """Too few rows, or a class is missing, to train or evaluate honestly."""

"""Domain errors.

Class names are part of the contract: Step Functions Retry/Catch match on them (``errorType``), and the
API maps them to status codes. Rename one only together with the state machine definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class LoopmlError(Exception):
    """Base of every error loopml raises on purpose."""


class ConfigurationError(LoopmlError):
    """A function or command was started with missing or invalid configuration."""


class InvalidInput(LoopmlError):
    """User-supplied data is wrong; ``errors`` names each field and the reason."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def invalid_input(what: str, errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    """One ``InvalidInput`` naming every bad field of a pydantic ``ValidationError.errors()`` list."""
    details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in details)
    return InvalidInput(f"invalid {what}: {summary}", details)


def parse_object(model: type[M], raw: Any, what: str) -> M:
    """``raw`` (a direct invocation's input, a state machine's) as ``model``: InvalidInput naming what
    is wrong when it is not a JSON object, and every bad field when it does not validate."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{what} must be a JSON object, not {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_input(what, exc.errors(include_url=False)) from None


class NotFound(LoopmlError):
    """A named thing (model, version, alias, prediction) does not exist."""


class ModelNotFound(NotFound):
    """No such model or model version in the registry."""


class VersionConflict(LoopmlError):
    """Another writer won a race for the same version number or object."""


class IntegrityError(LoopmlError):
    """An artifact's SHA-256 does not match the one recorded when it was registered."""


class Unservable(LoopmlError):
    """A model version the function's runtime cannot serve (no compiled form for the compiled runtime)."""


class ModelUnavailable(LoopmlError):
    """The model cannot be served right now (not loadable, and no verified copy to fall back on)."""


class TransientError(LoopmlError):
    """A dependency failed in a way that is worth retrying (throttling, timeouts, 5xx)."""


class InsufficientData(LoopmlError):
    """Too few rows, or a class is missing, to train or evaluate honestly."""


class UnsupportedEvent(LoopmlError):
    """A function was invoked with an event of a shape it does not serve (an SQS batch sent to an API
    function, a raw S3 event sent to a queue consumer, ...). Never retried: the same event fails again."""


class BadRequest(LoopmlError):
    """An HTTP request the API cannot read at all (encoding, media type, size, nesting): answered with
    ``status`` (400, 413 or 415) before any field is validated."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

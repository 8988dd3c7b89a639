"""boto3 clients, created once per execution environment and reused by warm invocations.

boto3 itself is imported here on first use only, so domain code and cold paths that do not touch
AWS never pay for it.
"""

from __future__ import annotations

import functools
from typing import Any

from loopml.errors import LoopmlError, NotFound, TransientError, VersionConflict

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket", "ResourceNotFoundException"})
CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "ConditionalCheckFailedException"})
TRANSIENT = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "500",
        "503",
    }
)


@functools.cache
def client(service: str) -> Any:
    """One client per service per process; endpoint and region come from the standard AWS variables."""
    import boto3
    from botocore.config import Config

    session: Any = boto3.session.Session()
    return session.client(
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=20),
    )


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def translate(exc: Exception, what: str) -> LoopmlError:
    """Map a botocore ClientError (by its code) onto the domain error a caller can act on."""
    code = error_code(exc)
    if code in NOT_FOUND:
        return NotFound(f"{what}: not found")
    if code in CONFLICT:
        return VersionConflict(f"{what}: precondition failed (written concurrently)")
    if code in TRANSIENT or code is None:
        return TransientError(f"{what}: {code or type(exc).__name__}")
    return LoopmlError(f"{what}: {code}")

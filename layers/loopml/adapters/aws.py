"""AWS clients (botocore's), created once per execution environment and reused by warm invocations.

botocore is imported here on first use only, so domain code and cold paths that do not touch AWS never
pay for it.
"""

from __future__ import annotations

import functools
import threading
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


_session_lock = threading.Lock()


@functools.cache
def client(service: str) -> Any:
    """One client per service per process; endpoint and region come from the standard AWS variables."""
    from botocore.config import Config

    with _session_lock:  # a session is not thread-safe, and the capture flush builds its client in a thread
        return _session().create_client(
            service,
            config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=20),
        )


@functools.cache
def _session() -> Any:
    """One botocore session for every client, with a data loader built for cold starts (``botocore_data``).

    botocore's own clients, not boto3's: the adapters call the service APIs only, and importing boto3
    (its resources and s3transfer) and building its session cost a cold start 40 ms and more."""
    import botocore.session

    from loopml.adapters.botocore_data import loader

    core = botocore.session.get_session()
    core.register_component("data_loader", loader(core.get_config_variable("data_path")))
    return core


def clear_clients() -> None:
    """Forget every client and the session (SnapStart restores, tests switching endpoints)."""
    client.cache_clear()
    _session.cache_clear()


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

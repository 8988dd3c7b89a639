"""AWS clients (botocore's), created once per execution environment and reused by warm invocations.

botocore is imported here on first use only, so domain code and cold paths that do not touch AWS never
pay for it.
"""

from __future__ import annotations

import functools
import gzip
import os
import threading
from collections.abc import Callable
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
    """One botocore session for every client, whose service models are read by orjson.

    botocore's own clients, not boto3's: the adapters call the service APIs only, and importing boto3
    (its resources and s3transfer) and building its session cost a cold start 40 ms and more. Building an S3
    client parses 1.5 MB of botocore's JSON (the service model and its endpoint rules), which orjson reads
    in a fifth of the standard library's time; botocore takes the file loader as a component
    (``register_component``), so nothing of it is patched."""
    import botocore.session
    from botocore.loaders import create_loader

    core = botocore.session.get_session()
    loader = create_loader(core.get_config_variable("data_path"))
    loader.file_loader = OrjsonFileLoader()  # type: ignore[assignment]  # botocore asks for the interface only
    core.register_component("data_loader", loader)
    return core


class OrjsonFileLoader:
    """botocore's ``JSONFileLoader`` interface (``exists``, ``load_file``; paths without ``.json``), by orjson."""

    OPENERS: dict[str, Callable[[str, str], Any]] = {".json": open, ".json.gz": gzip.open}

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext in self.OPENERS)

    def load_file(self, file_path: str) -> Any:
        import orjson

        for ext, opener in self.OPENERS.items():
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as fp:
                    return orjson.loads(fp.read())
        return None


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

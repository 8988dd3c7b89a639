"""boto3 clients for the local stack's own calls (to moto, or through the front door), made once each.

One botocore session serves every stack in the process: loading a service model costs ~100 ms, and
sessions are not thread-safe, so clients are created under one lock and cached by service and endpoint.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_SESSION_LOCK = threading.Lock()
_SESSIONS: list[boto3.session.Session] = []


def _session() -> boto3.session.Session:
    """Call with ``_SESSION_LOCK`` held."""
    if not _SESSIONS:
        _SESSIONS.append(boto3.session.Session())
    return _SESSIONS[0]


class Clients:
    def __init__(self, region: str) -> None:
        self.region = region
        self._cache: dict[str, Any] = {}

    def get(self, service: str, endpoint: str) -> Any:
        key = f"{service}@{endpoint}"
        with _SESSION_LOCK:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._cache[key] = _session().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=endpoint,
                    region_name=self.region,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
                    config=Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=32),
                )
            return cached

    def clear(self) -> None:
        with _SESSION_LOCK:
            self._cache.clear()

"""Subject pseudonymisation and log masking.

A subject id is never stored: ``/predict`` replaces it with HMAC-SHA256(key, subject_id), hex. The key
is a secret (an SSM SecureString in the cloud), so the hash cannot be reversed by trying likely ids
without it, and the same subject always maps to the same hash, which is what opt-out and erasure need.
Features marked ``sensitive`` in the model's schema are replaced by ``MASK`` in anything logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from loopml.errors import ConfigurationError, InvalidInput

MASK = "*****"
MIN_KEY_BYTES = 32
MAX_SUBJECT_ID = 256


class SubjectHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"the subject key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __call__(self, subject_id: str) -> str:
        if not subject_id or len(subject_id) > MAX_SUBJECT_ID:
            raise InvalidInput(
                "subject_id must be 1-256 characters",
                [{"loc": ["subject_id"], "msg": "must be 1-256 characters", "type": "value_error"}],
            )
        return hmac.new(self._key, subject_id.encode(), hashlib.sha256).hexdigest()


class LazyHasher:
    """Loads the key on first use, so functions that never see a subject id never fetch it."""

    def __init__(self, load_key: Callable[[], bytes]) -> None:
        self._load_key = load_key
        self._hasher: SubjectHasher | None = None

    def __call__(self, subject_id: str) -> str:
        if self._hasher is None:
            self._hasher = SubjectHasher(self._load_key())
        return self._hasher(subject_id)

    def forget(self) -> None:
        """Drop the key: the next subject id loads it again (a SnapStart restore, a rotated secret)."""
        self._hasher = None


def masked(features: dict[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    hidden = set(sensitive)
    return {k: (MASK if k in hidden else v) for k, v in features.items()}


def masked_record(record: dict[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    """A capture record safe to log: sensitive features masked, the subject hash dropped."""
    out = {k: v for k, v in record.items() if k != "subject_hash"}
    if isinstance(out.get("features"), dict):
        out["features"] = masked(out["features"], sensitive)
    return out

"""Where captured data lives in the object store, and how each object is encoded.

Layout (bucket ``models``)::

    captured/<model>/predictions/dt=YYYY-MM-DD/hour=HH/<digest>.jsonl.gz   one object per batch and hour
    captured/<model>/feedback/dt=YYYY-MM-DD/hour=HH/<digest>.jsonl.gz      same, partitioned by the hour
                                                                          of the *prediction* it labels
    captured/_erased/<sha256 of the subject hash>.json                     erasure tombstones

Both kinds are partitioned by the prediction's hour so the reader finds a prediction and its labels
under the same ``dt=/hour=`` folders, however late a label arrives. ``<digest>`` is derived from the
SQS message ids that produced the object, so a redelivered batch overwrites its own object instead of
adding a second copy. Objects are gzip'd JSON Lines with a fixed gzip mtime (same input, same bytes).

Only this module and the reader know the layout; drift and retraining call ``read_captured``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from loopml import keys

ROOT = keys.CAPTURED
ERASED = ROOT + "_erased/"
Kind = Literal["predictions", "feedback"]
PREDICTION_ID = re.compile(r"^[0-9a-f]{32}$")
_PARTITION = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
GZIP_LEVEL = 6


def utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(text: str) -> datetime:
    return utc(datetime.fromisoformat(text))


def kind_prefix(model: str, kind: Kind) -> str:
    return f"{ROOT}{model}/{kind}/"


def day_prefix(model: str, kind: Kind, day: date) -> str:
    return f"{kind_prefix(model, kind)}dt={day.isoformat()}/"


def partition_prefix(model: str, kind: Kind, moment: datetime) -> str:
    moment = utc(moment)
    return f"{day_prefix(model, kind, moment.date())}hour={moment.hour:02d}/"


def object_key(model: str, kind: Kind, moment: datetime, message_ids: Iterable[str]) -> str:
    """Deterministic: the same messages in the same partition always give the same key."""
    digest = hashlib.sha256("\n".join(sorted(set(message_ids))).encode()).hexdigest()[:32]
    return f"{partition_prefix(model, kind, moment)}{digest}.jsonl.gz"


def partition_hour(key: str) -> datetime | None:
    found = _PARTITION.search(key)
    if found is None:
        return None
    return datetime.fromisoformat(f"{found.group(1)}T{found.group(2)}:00:00+00:00")


def days(start: datetime, end: datetime) -> list[date]:
    """Every UTC day that holds an hour of [start, end)."""
    first, last = utc(start).date(), (utc(end) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def tombstone_key(subject_hash: str) -> str:
    """Keyed by a hash of the subject hash, so no object in the bucket holds the subject hash itself."""
    return f"{ERASED}{tombstone_digest(subject_hash)}.json"


def tombstone_digest(subject_hash: str) -> str:
    return hashlib.sha256(subject_hash.encode()).hexdigest()


def prediction_id(moment: datetime, random_hex: str) -> str:
    """32 hex digits: 8 of the issue time (Unix seconds) then 24 random, so any id tells its hour."""
    return f"{int(utc(moment).timestamp()):08x}{random_hex[:24]}"


def prediction_time(pid: str) -> datetime:
    """When a prediction id was issued; ValueError when it is not one of ours."""
    if not PREDICTION_ID.match(pid):
        raise ValueError(f"{pid!r} is not a prediction id (32 lowercase hex digits)")
    return datetime.fromtimestamp(int(pid[:8], 16), UTC)


def encode(records: Sequence[dict[str, Any]]) -> bytes:
    return encode_lines([json.dumps(r, separators=(",", ":"), allow_nan=False) for r in records])


def encode_lines(lines: Sequence[str]) -> bytes:
    """Already-serialised JSON documents, one per line, gzip'd with a fixed mtime."""
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=GZIP_LEVEL, mtime=0)


def decode(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]

"""How captured data is encoded, and the prediction ids that tell which hour partition it lands in.

The keys themselves (``captured/<model>/<kind>/dt=YYYY-MM-DD/hour=HH/<digest>.jsonl.gz`` and the
erasure tombstones) are built in ``loopml.keys``. Both kinds are partitioned by the *prediction's* hour
so the reader finds a prediction and its labels under the same ``dt=/hour=`` folders, however late a
label arrives. ``<digest>`` is derived from the SQS message ids that produced the object, so a
redelivered batch overwrites its own object instead of adding a second copy. Objects are gzip'd JSON
Lines with a fixed gzip mtime (same input, same bytes).
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from loopml.times import utc

PREDICTION_ID = re.compile(r"^[0-9a-f]{32}$")
_PARTITION = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
GZIP_LEVEL = 6


def partition_hour(key: str) -> datetime | None:
    found = _PARTITION.search(key)
    if found is None:
        return None
    return datetime.fromisoformat(f"{found.group(1)}T{found.group(2)}:00:00+00:00")


def days(start: datetime, end: datetime) -> list[date]:
    """Every UTC day that holds an hour of [start, end)."""
    first, last = utc(start).date(), (utc(end) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def prediction_id(moment: datetime, random_hex: str) -> str:
    """32 hex digits: 8 of the issue time (Unix seconds) then 24 random, so any id tells its hour."""
    return f"{int(utc(moment).timestamp()):08x}{random_hex[:24]}"


def prediction_ids(moment: datetime, count: int) -> list[str]:
    """``count`` ids issued at ``moment`` (``prediction_id``'s layout), their random parts drawn at once."""
    stamp = f"{int(utc(moment).timestamp()):08x}"
    randoms = secrets.token_hex(12 * count)
    return [stamp + randoms[24 * i : 24 * i + 24] for i in range(count)]


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

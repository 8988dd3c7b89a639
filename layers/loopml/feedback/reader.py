"""The captured dataset as rows: predictions in a time window with their labels joined.

Drift evaluation and retraining call ``read_captured`` and never see the layout. Rules:

- predictions whose ``timestamp`` is in ``[start, end)`` (UTC; naive datetimes are UTC);
- each ``prediction_id`` once, even if a redelivery stored it twice;
- labels joined whenever they arrived: feedback is stored under the prediction's hour, so the same
  partitions hold both;
- the winning label: a reviewer's beats the system's, which beats a user's; within a source the
  latest ``received_at`` wins;
- subjects with an erasure tombstone are excluded, whatever is still in flight.
"""

from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime
from typing import Any

from loopml import keys
from loopml.capture import CapturedRow, LabelSource
from loopml.errors import InvalidInput
from loopml.feedback import layout
from loopml.store import ObjectStore
from loopml.times import parse_time, utc

_log = logging.getLogger(__name__)
SOURCE_RANK: dict[str, int] = {"user": 0, "system": 1, "reviewer": 2}


def read_captured(
    store: ObjectStore,
    model: str,
    start: datetime,
    end: datetime,
    *,
    model_version: int | None = None,
    labelled_only: bool = False,
) -> list[CapturedRow]:
    """Rows ordered by timestamp, then prediction id."""
    start, end = utc(start), utc(end)
    if end <= start:
        raise InvalidInput(
            "end must be after start", [{"loc": ["end"], "msg": "must be after start", "type": "value_error"}]
        )
    floor = start.replace(minute=0, second=0, microsecond=0)
    erased = {key[len(keys.ERASED) :].removesuffix(".json") for key in store.list_keys(keys.ERASED)}
    rows: dict[str, CapturedRow] = {}
    digests: dict[str, str] = {}
    skipped = 0
    for key in _keys(store, model, "predictions", floor, end):
        for record in _records(store, key):
            try:
                row = _row(record)
            except (KeyError, TypeError, ValueError):  # stored by an older or broken writer: skip, count
                skipped += 1
                continue
            if row.prediction_id in rows or (model_version is not None and row.model_version != model_version):
                continue
            if not start <= row.timestamp < end:
                continue
            subject = row.subject_hash
            if subject and erased:
                digest = digests.get(subject) or digests.setdefault(subject, keys.tombstone_digest(subject))
                if digest in erased:
                    continue
            rows[row.prediction_id] = row
    if rows:
        best: dict[str, tuple[int, str, str, Any, LabelSource, str | None]] = {}
        for key in _keys(store, model, "feedback", floor, end):
            for fb in _records(store, key):
                try:
                    pid, source, label = fb["prediction_id"], fb["source"], fb["label"]
                    rank = (
                        SOURCE_RANK[source],
                        parse_time(fb["received_at"]).isoformat(),
                        str(fb["feedback_id"]),
                    )
                    if isinstance(label, bool) or not isinstance(label, str | int | float) or label != label:
                        raise TypeError("label")  # a class, or a regression target (NaN never is)
                except (KeyError, TypeError, ValueError):
                    skipped += 1
                    continue
                if pid not in rows:
                    continue
                current = best.get(pid)
                if current is None or rank > current[:3]:
                    best[pid] = (*rank, label, source, fb.get("caller"))
        for pid, (_, received_at, _, label, source, caller) in best.items():
            found = rows[pid]
            found.label, found.label_source, found.label_caller = label, source, caller
            found.label_received_at = parse_time(received_at)
    if skipped:
        _log.warning("read_captured skipped %d malformed stored record(s) of model %s", skipped, model)
    ordered = sorted(rows.values(), key=lambda r: (r.timestamp, r.prediction_id))
    return [r for r in ordered if r.label is not None] if labelled_only else ordered


def _records(store: ObjectStore, key: str) -> list[Any]:
    """An object's records; a line that is not JSON is skipped, an object that is not gzip too: never raised."""
    try:
        lines = gzip.decompress(store.get(key)).splitlines()
    except (OSError, EOFError, ValueError) as exc:
        _log.warning("read_captured skipped unreadable object %s: %s", key, type(exc).__name__)
        return []
    records = []
    for line in lines:
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                _log.warning("read_captured skipped a line of %s that is not JSON", key)
    return records


def _row(record: Any) -> CapturedRow:
    if not isinstance(record, dict):
        raise TypeError("record")
    return CapturedRow.model_validate(record)


def _keys(store: ObjectStore, model: str, kind: keys.CapturedKind, floor: datetime, end: datetime) -> list[str]:
    found = []
    for day in layout.days(floor, end):
        for key in store.list_keys(keys.captured_day_prefix(model, kind, day)):
            hour = layout.partition_hour(key)
            if hour is not None and floor <= hour < end:
                found.append(key)
    return sorted(found)

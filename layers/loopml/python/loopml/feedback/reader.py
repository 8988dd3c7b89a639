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

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from loopml.errors import InvalidInput
from loopml.feedback import layout

LabelSource = Literal["reviewer", "user", "system"]
SOURCE_RANK: dict[str, int] = {"user": 0, "system": 1, "reviewer": 2}


class ReadableStore(Protocol):
    def get(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str) -> list[str]: ...


class CapturedRow(BaseModel):
    prediction_id: str
    timestamp: datetime
    model: str
    model_version: int
    lambda_version: str
    features: dict[str, Any]
    prediction: str | int
    probabilities: dict[str, float]
    confidence: float
    label: str | int | None = None
    label_source: LabelSource | None = None
    label_received_at: datetime | None = None
    subject_hash: str | None = None
    degraded: bool = False


def read_captured(
    store: ReadableStore,
    model: str,
    start: datetime,
    end: datetime,
    *,
    model_version: int | None = None,
    labelled_only: bool = False,
) -> list[CapturedRow]:
    """Rows ordered by timestamp, then prediction id."""
    start, end = layout.utc(start), layout.utc(end)
    if end <= start:
        raise InvalidInput(
            "end must be after start", [{"loc": ["end"], "msg": "must be after start", "type": "value_error"}]
        )
    floor = start.replace(minute=0, second=0, microsecond=0)
    erased = {key[len(layout.ERASED) :].removesuffix(".json") for key in store.list_keys(layout.ERASED)}
    rows: dict[str, CapturedRow] = {}
    digests: dict[str, str] = {}
    for key in _keys(store, model, "predictions", floor, end):
        for record in layout.decode(store.get(key)):
            pid = record["prediction_id"]
            if pid in rows or (model_version is not None and record["model_version"] != model_version):
                continue
            moment = layout.parse_time(record["timestamp"])
            if not start <= moment < end:
                continue
            subject = record.get("subject_hash")
            if subject and erased:
                digest = digests.get(subject) or digests.setdefault(subject, layout.tombstone_digest(subject))
                if digest in erased:
                    continue
            rows[pid] = CapturedRow(
                prediction_id=pid,
                timestamp=moment,
                model=record["model"],
                model_version=record["model_version"],
                lambda_version=record.get("lambda_version", ""),
                features=record["features"],
                prediction=record["prediction"],
                probabilities=record["probabilities"],
                confidence=record["confidence"],
                subject_hash=subject,
                degraded=record.get("degraded", False),
            )
    if rows:
        best: dict[str, tuple[int, str, str, Any, LabelSource]] = {}
        for key in _keys(store, model, "feedback", floor, end):
            for fb in layout.decode(store.get(key)):
                pid = fb["prediction_id"]
                if pid not in rows:
                    continue
                rank = (SOURCE_RANK.get(fb["source"], -1), fb["received_at"], fb["feedback_id"])
                current = best.get(pid)
                if current is None or rank > current[:3]:
                    best[pid] = (*rank, fb["label"], fb["source"])
        for pid, (_, received_at, _, label, source) in best.items():
            row = rows[pid]
            row.label, row.label_source = label, source
            row.label_received_at = layout.parse_time(received_at)
    ordered = sorted(rows.values(), key=lambda r: (r.timestamp, r.prediction_id))
    return [r for r in ordered if r.label is not None] if labelled_only else ordered


def _keys(store: ReadableStore, model: str, kind: layout.Kind, floor: datetime, end: datetime) -> list[str]:
    keys = []
    for day in layout.days(floor, end):
        for key in store.list_keys(layout.day_prefix(model, kind, day)):
            hour = layout.partition_hour(key)
            if hour is not None and floor <= hour < end:
                keys.append(key)
    return sorted(keys)

"""Prediction capture: records buffered during an invocation and sent to SQS after the response.

Each SQS message carries the records of one request (split when a message would pass SQS's size
limit), so a redelivered message repeats whole requests and the consumer de-duplicates by
``prediction_id``. Sending happens in a post-invoke hook: the caller never waits for SQS, and a send
failure is logged and counted, never turned into a failed prediction.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loopml.names import ModelName
from loopml.times import utc

PREDICTION_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_LABEL_LENGTH = 256


class QueueRecord(BaseModel):
    """What every record on the capture and feedback queues shares: nothing non-finite enters the
    dataset, and the model name is checked before it becomes part of a key."""

    # built on first use (the consumer's): the inference function queues plain dicts and never validates these
    model_config = ConfigDict(allow_inf_nan=False, defer_build=True)


def finite_features(features: dict[str, Any]) -> dict[str, Any]:
    """Feature values as they can be stored: null, bool, string, int or a finite float."""
    for name, value in features.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"feature {name[:80]!r} is not a finite number")
        if value is not None and not isinstance(value, str | int | float):
            raise ValueError(f"feature {name[:80]!r} must be a number, a string or null")
    return features


MAX_MESSAGE_BYTES = 240_000  # SQS allows 256 KiB per message; leave room for attributes
MAX_BATCH_ENTRIES = 10  # SendMessageBatch limit
SCHEMA_VERSION = 1  # of every record on the capture and feedback queues and in the dataset
LabelSource = Literal["user", "reviewer", "system"]


class CapturedPrediction(QueueRecord):
    """What the dataset keeps of one prediction: written by inference, stored by the consumer, read back
    by drift and retraining (as ``CapturedRow``, with its label)."""

    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN)
    model: ModelName
    model_version: int = Field(ge=1)
    lambda_version: str = ""
    features: dict[str, Any]
    prediction: str | int | float  # a class, or (regression) the predicted value
    probabilities: dict[str, float]  # empty for regression
    confidence: float | None = None  # the top probability; None for regression
    interval: list[float] | None = Field(default=None, min_length=2, max_length=2)  # regression: [lower, upper]
    degraded: bool = False
    subject_hash: str | None = None

    _features = field_validator("features")(finite_features)


class CaptureRecord(CapturedPrediction):
    """One prediction on the capture queue and in ``captured/<model>/predictions/``."""

    kind: Literal["prediction"] = "prediction"
    schema_version: int = SCHEMA_VERSION
    request_id: str
    timestamp: str
    latency_ms: float
    flags: dict[str, list[str]] = Field(default_factory=dict)


class OptOutRecord(QueueRecord):
    """Sent by /predict instead of the capture record when ``consent`` is false: no features."""

    kind: Literal["optout"] = "optout"
    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN)
    model: ModelName
    model_version: int = Field(ge=1)
    timestamp: str
    subject_hash: str | None = None


class CapturedRow(CapturedPrediction):
    """A stored prediction as the reader returns it: its time parsed, joined with its winning label."""

    timestamp: datetime
    label: str | int | float | None = None
    label_source: LabelSource | None = None
    label_received_at: datetime | None = None
    label_caller: str | None = None  # who sent the winning label (rate limits)

    @field_validator("timestamp", "label_received_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)


def prediction_record(
    *,
    prediction_id: str,
    model: str,
    model_version: int,
    lambda_version: str,
    request_id: str,
    timestamp: str,
    features: dict[str, Any],
    prediction: str | int | float,
    probabilities: dict[str, float],
    confidence: float | None,
    interval: list[float] | None,
    latency_ms: float,
    degraded: bool,
    flags: dict[str, list[str]],
    subject_hash: str | None,
) -> dict[str, Any]:
    """A ``CaptureRecord`` as the JSON-ready dict /predict queues: built without validation on the hot
    path (the consumer validates every record); a test holds its keys to the model's fields."""
    return {
        "kind": "prediction",
        "schema_version": SCHEMA_VERSION,
        "prediction_id": prediction_id,
        "model": model,
        "model_version": model_version,
        "lambda_version": lambda_version,
        "request_id": request_id,
        "timestamp": timestamp,
        "features": features,
        "prediction": prediction,
        "probabilities": probabilities,
        "confidence": confidence,
        "interval": interval,
        "latency_ms": latency_ms,
        "degraded": degraded,
        "flags": flags,
        "subject_hash": subject_hash,
    }


def optout_record(
    *, prediction_id: str, model: str, model_version: int, timestamp: str, subject_hash: str | None
) -> dict[str, Any]:
    """An ``OptOutRecord`` as /predict queues it (see ``prediction_record``)."""
    return {
        "kind": "optout",
        "prediction_id": prediction_id,
        "model": model,
        "model_version": model_version,
        "timestamp": timestamp,
        "subject_hash": subject_hash,
    }


Sender = Callable[[list[str]], int]
"""Sends message bodies; returns how many could not be sent."""


def pack_messages(records: Sequence[dict[str, Any]]) -> list[str]:
    """Group records (already JSON-ready dicts) into message bodies under the size limit."""
    whole = json.dumps({"v": SCHEMA_VERSION, "records": list(records)}, separators=(",", ":"), allow_nan=False)
    if len(whole) <= MAX_MESSAGE_BYTES:  # the common case: one request fits one message, one dumps call
        return [whole] if records else []
    bodies: list[str] = []
    chunk: list[str] = []
    size = 0
    for record in records:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        if chunk and size + len(line) + 1 > MAX_MESSAGE_BYTES:
            bodies.append(_envelope(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        bodies.append(_envelope(chunk))
    return bodies


def _envelope(lines: list[str]) -> str:
    return '{"v":%d,"records":[%s]}' % (SCHEMA_VERSION, ",".join(lines))  # noqa: UP031 - no re-encoding


def unpack_message(body: str) -> list[dict[str, Any]]:
    payload = json.loads(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise ValueError("capture message has no 'records' list")
    return payload["records"]


class CaptureBuffer:
    """Thread-safe buffer of each request's records, drained by ``flush`` (a post-invoke hook). Records are
    built and encoded there, after the response has gone: building and JSON-encoding a 100-row request's
    records costs about as much as scoring it. A request adds its records, or what builds them."""

    def __init__(self, sender: Sender, on_failure: Callable[[int, str], None]) -> None:
        self._sender = sender
        self._on_failure = on_failure
        self._pending: list[Sequence[dict[str, Any]] | Callable[[], Sequence[dict[str, Any]]]] = []
        self._lock = threading.Lock()

    def add(self, records: Sequence[dict[str, Any]] | Callable[[], Sequence[dict[str, Any]]]) -> None:
        if callable(records) or records:
            with self._lock:
                self._pending.append(records)

    @property
    def pending(self) -> int:
        """Requests whose records wait for the next flush."""
        return len(self._pending)

    def flush(self) -> None:
        with self._lock:
            requests, self._pending = self._pending, []
        bodies: list[str] = []
        for request in requests:
            try:
                records = request() if callable(request) else request
            except Exception as exc:  # a builder's fault loses its request's records (how many is unknown), not others'
                self._on_failure(1, f"building a request's records failed: {type(exc).__name__}: {exc}")
                continue
            try:
                bodies += pack_messages(records)
            except (TypeError, ValueError) as exc:  # unserialisable record: count it, never fail the caller
                self._on_failure(len(records), f"{type(exc).__name__}: {exc}")
        if not bodies:
            return
        try:
            failed = self._sender(bodies)
        except Exception as exc:  # capture must never fail a prediction
            self._on_failure(len(bodies), f"{type(exc).__name__}: {exc}")
            return
        if failed:
            self._on_failure(failed, "some messages were rejected by SQS")

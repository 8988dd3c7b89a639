"""The capture consumer: SQS messages (predictions, opt-outs, feedback) into the captured dataset.

One delivery (the SQS records of one invocation) is handled in two phases. ``Delivery.add`` parses
and validates one message; a poison message raises and is reported failed on its own (SQS retries it,
then moves it to the DLQ), never taking its neighbours along. ``commit`` then does the I/O once for
the whole delivery:

1. one index lookup (``prediction_id``) for every record: a prediction already indexed was stored by an
   earlier delivery and is skipped (idempotency by ``prediction_id``; the index is needed anyway to
   answer ``POST /feedback`` quickly); feedback picks up the prediction's subject and version;
2. one subject lookup: records of opted-out or erased subjects are dropped;
3. one object per (model, kind, hour) with a key derived from the message ids (a redelivered delivery
   overwrites its own object), then the index, subject and review-list writes.

If a write fails, every message of the batch that reached ``commit`` is reported failed and retried;
deterministic keys and the index make that retry harmless.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Tag, ValidationError

from loopml import keys
from loopml.capture import CaptureRecord, OptOutRecord
from loopml.feedback import layout
from loopml.feedback.models import FeedbackRecord, IndexEntry, ReviewItem
from loopml.feedback.ports import PredictionIndex, ReviewList, Subjects
from loopml.feedback.privacy import masked, masked_record
from loopml.store import ObjectStore
from loopml.times import parse_time


class PoisonMessage(ValueError):
    """A message that can never be stored: not JSON, no records, or a record of the wrong shape."""


@dataclass
class CommitResult:
    failed: set[str] = field(default_factory=set)  # message ids to report as batch item failures
    predictions: int = 0
    feedback: int = 0
    opt_outs: int = 0
    duplicates: int = 0
    dropped: int = 0  # records of opted-out or erased subjects
    review_items: int = 0
    objects: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class ConsumerConfig:
    review_confidence_threshold: float = 0.6
    review_sample_rate: float = 0.01
    index_ttl_s: int = 400 * 86400
    review_ttl_s: int = 30 * 86400


def sampled(prediction_id: str, rate: float) -> bool:
    """Deterministic sampling from the id's random part: a redelivery makes the same choice."""
    return int(prediction_id[8:16], 16) / 16**8 < rate


class CaptureConsumer:
    def __init__(
        self,
        store: ObjectStore,
        index: PredictionIndex,
        subjects: Subjects,
        review: ReviewList,
        config: ConsumerConfig,
        sensitive: Callable[[str, int], Iterable[str]] = lambda model, version: (),
    ) -> None:
        self.store = store
        self.index = index
        self.subjects = subjects
        self.review = review
        self.config = config
        self.sensitive = sensitive

    def delivery(self) -> Delivery:
        return Delivery(self)


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind", "prediction")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


AnyRecord = Annotated[
    Annotated[CaptureRecord, Tag("prediction")]
    | Annotated[OptOutRecord, Tag("optout")]
    | Annotated[FeedbackRecord, Tag("feedback")],
    Discriminator(_kind),
]


class Envelope(BaseModel):
    """The SQS message body (``loopml.capture``): parsed and validated in one pass from JSON."""

    v: int = 1
    records: list[AnyRecord]


_ENVELOPE = Envelope.model_validate_json


class Delivery:
    def __init__(self, consumer: CaptureConsumer) -> None:
        self._c = consumer
        self.predictions: list[tuple[str, CaptureRecord, datetime]] = []  # (message id, record, hour)
        self.opt_outs: list[tuple[str, OptOutRecord]] = []
        self.feedback: list[tuple[str, FeedbackRecord, datetime]] = []
        self.poison: list[dict[str, Any]] = []  # for the log: reason and the record, masked

    def add(self, message_id: str, body: str) -> None:
        """Validates every record of one message before keeping any of them."""
        try:
            records = _ENVELOPE(body).records
            kept = [(item, self._hour(item)) for item in records]
        except (ValidationError, ValueError) as exc:
            reason = f"message {message_id}: {_short(exc)}".encode("utf-8", "replace").decode("utf-8")
            self.poison.append({"message_id": message_id, "reason": reason, "records": self._loggable(body)})
            raise PoisonMessage(reason) from None
        for item, hour in kept:
            if isinstance(item, CaptureRecord):
                self.predictions.append((message_id, item, hour))
            elif isinstance(item, OptOutRecord):
                self.opt_outs.append((message_id, item))
            else:
                self.feedback.append((message_id, item, hour))

    @staticmethod
    def _hour(item: CaptureRecord | OptOutRecord | FeedbackRecord) -> datetime:
        """The partition hour; raises ValueError for an id or a time that is not ours."""
        issued = layout.prediction_time(item.prediction_id)
        if isinstance(item, FeedbackRecord):
            parse_time(item.received_at)
            return issued.replace(minute=0, second=0)
        return parse_time(item.timestamp).replace(minute=0, second=0, microsecond=0)

    def _loggable(self, body: str) -> list[Any]:
        """The message's records with sensitive features masked; all features when the schema is unknown.

        Strings UTF-8 cannot encode (lone surrogates) are replaced, so the log line itself can be written.
        """
        try:
            raw = json.loads(body.encode("utf-8", "replace").decode("utf-8"))["records"]
        except (ValueError, KeyError, TypeError):
            return []
        out: list[Any] = []
        for record in raw if isinstance(raw, list) else []:
            if not isinstance(record, dict):
                out.append(type(record).__name__)
                continue
            try:
                sensitive = list(self._c.sensitive(str(record.get("model")), int(record.get("model_version") or 0)))
            except Exception:  # an unknown model or a malformed version: hide them all
                features = record.get("features")
                sensitive = list(features) if isinstance(features, dict) else []
            out.append(masked_record(record, sensitive))
        return out

    @property
    def message_ids(self) -> set[str]:
        return {p[0] for p in self.predictions} | {o[0] for o in self.opt_outs} | {f[0] for f in self.feedback}

    def commit(self) -> CommitResult:
        result = CommitResult()
        if not (self.predictions or self.opt_outs or self.feedback):
            return result
        try:
            self._commit(result)
        except Exception as exc:  # any write failure: retry the batch; keys and index make it safe
            result.failed = self.message_ids
            result.error = f"{type(exc).__name__}: {exc}"
        return result

    def _commit(self, result: CommitResult) -> None:
        c = self._c
        ids = [p[1].prediction_id for p in self.predictions] + [o[1].prediction_id for o in self.opt_outs]
        ids += [f[1].prediction_id for f in self.feedback]
        known = c.index.get_many(ids)
        feedback: list[tuple[str, FeedbackRecord, datetime]] = []
        for message_id, fb, hour in self.feedback:
            entry = known.get(fb.prediction_id)
            if entry is not None:
                if entry.opted_out or entry.erased:
                    result.dropped += 1
                    continue
                fb = fb.model_copy(
                    update={
                        "subject_hash": fb.subject_hash or entry.subject_hash,
                        "model_version": fb.model_version or entry.model_version,
                    }
                )
            feedback.append((message_id, fb, hour))
        opt_out_hashes = {o.subject_hash for _, o in self.opt_outs if o.subject_hash}
        hashes = opt_out_hashes | {p[1].subject_hash for p in self.predictions if p[1].subject_hash}
        hashes |= {f[1].subject_hash for f in feedback if f[1].subject_hash}
        status = c.subjects.get_many(hashes) if hashes else {}
        blocked = opt_out_hashes | {h for h, s in status.items() if s.blocked}

        predictions: list[tuple[str, CaptureRecord, datetime]] = []
        seen: set[str] = set()
        for candidate in self.predictions:
            record = candidate[1]
            if record.subject_hash in blocked:
                result.dropped += 1
            elif record.prediction_id in known or record.prediction_id in seen:
                result.duplicates += 1
            else:
                seen.add(record.prediction_id)
                predictions.append(candidate)
        kept_feedback = [f for f in feedback if f[1].subject_hash not in blocked]
        result.dropped += len(feedback) - len(kept_feedback)

        subject_objects: dict[str, set[str]] = defaultdict(set)
        for kind, items in (("predictions", predictions), ("feedback", kept_feedback)):
            groups: dict[tuple[str, datetime], list[tuple[str, Any, datetime]]] = defaultdict(list)
            for member in items:
                groups[(member[1].model, member[2])].append(member)
            for (model, hour), members in groups.items():
                key = keys.captured_key(model, kind, hour, (m[0] for m in members))  # type: ignore[arg-type]
                c.store.put(key, layout.encode_lines([m[1].model_dump_json() for m in members]))
                result.objects.append(key)
                for _, stored, _ in members:
                    if stored.subject_hash:
                        subject_objects[stored.subject_hash].add(key)

        # model_construct: every value below comes from an already validated record
        entries = [
            IndexEntry(
                prediction_id=r.prediction_id,
                model=r.model,
                model_version=r.model_version,
                timestamp=r.timestamp,
                subject_hash=r.subject_hash,
            )
            for _, r, _ in predictions
        ]
        entries += [
            IndexEntry(
                prediction_id=o.prediction_id,
                model=o.model,
                model_version=o.model_version,
                timestamp=o.timestamp,
                opted_out=True,
            )
            for _, o in self.opt_outs
        ]
        if entries:  # one entry per id: BatchWriteItem rejects a batch that repeats a key
            c.index.put_many({e.prediction_id: e for e in entries}.values(), c.config.index_ttl_s)
        for subject_hash in opt_out_hashes:
            if subject_hash not in status or not status[subject_hash].opted_out:
                c.subjects.opt_out(subject_hash)
        for subject_hash, owned in subject_objects.items():
            c.subjects.add_objects(subject_hash, owned)
        review = self._review_items(r for _, r, _ in predictions)
        if review:
            c.review.put_many(review, c.config.review_ttl_s)
        result.predictions = len(predictions)
        result.feedback = len(kept_feedback)
        result.opt_outs = len(self.opt_outs)
        result.review_items = len(review)

    def _review_items(self, records: Iterable[CaptureRecord]) -> list[ReviewItem]:
        c = self._c
        threshold, rate = c.config.review_confidence_threshold, c.config.review_sample_rate
        items = []
        for r in records:
            reason: Literal["low_confidence", "sample"]
            if r.confidence is not None and r.confidence < threshold:  # regression rows are only sampled
                reason = "low_confidence"
            elif sampled(r.prediction_id, rate):
                reason = "sample"
            else:
                continue
            items.append(
                ReviewItem.model_construct(
                    prediction_id=r.prediction_id,
                    model=r.model,
                    model_version=r.model_version,
                    timestamp=r.timestamp,
                    prediction=r.prediction,
                    probabilities=r.probabilities,
                    confidence=r.confidence,
                    interval=r.interval,
                    features=masked(r.features, c.sensitive(r.model, r.model_version)),
                    reason=reason,
                    status="pending",
                    label=None,
                )
            )
        return items


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False))
    return str(exc)


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)

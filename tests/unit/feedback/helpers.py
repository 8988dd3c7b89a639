"""Builders for capture and feedback messages, and a wired consumer on in-memory ports."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.feedback import layout
from loopml.feedback.consumer import CaptureConsumer, ConsumerConfig
from loopml_dev.memory import MemoryObjectStore, MemoryPredictionIndex, MemoryReviewList, MemorySubjects

T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
FEATURES = {"age": 41, "income": 52000.0, "purpose": "car", "gender": "F"}


def pid_at(moment: datetime) -> str:
    return layout.prediction_id(moment, uuid.uuid4().hex)


def prediction(
    moment: datetime = T0,
    *,
    confidence: float = 0.9,
    subject_hash: str | None = None,
    model: str = "default",
    version: int = 1,
    pid: str | None = None,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "prediction",
        "schema_version": 1,
        "prediction_id": pid or pid_at(moment),
        "model": model,
        "model_version": version,
        "lambda_version": "3",
        "request_id": "req",
        "timestamp": moment.isoformat(),
        "features": dict(features or FEATURES),
        "prediction": 1,
        "probabilities": {"0": round(1 - confidence, 6), "1": confidence},
        "confidence": confidence,
        "latency_ms": 0.4,
        "degraded": False,
        "flags": {"out_of_range": [], "unseen_category": [], "missing": []},
        "subject_hash": subject_hash,
    }


def feedback(
    pid: str,
    label: int | str,
    source: str = "user",
    received: datetime | None = None,
    *,
    model: str = "default",
) -> dict[str, Any]:
    return {
        "kind": "feedback",
        "schema_version": 1,
        "feedback_id": uuid.uuid4().hex,
        "prediction_id": pid,
        "model": model,
        "model_version": None,
        "label": label,
        "source": source,
        "comment": None,
        "received_at": (received or T0 + timedelta(hours=1)).isoformat(),
        "subject_hash": None,
    }


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"v": 1, "records": list(records)})


@dataclass
class Wired:
    store: MemoryObjectStore
    index: MemoryPredictionIndex
    subjects: MemorySubjects
    review: MemoryReviewList
    consumer: CaptureConsumer

    def consume(self, messages: list[tuple[str, str]]) -> tuple[list[str], Any]:
        """(message id, body) pairs through a batch; returns (poison ids, commit result)."""
        batch = self.consumer.delivery()
        poison = []
        for message_id, text in messages:
            try:
                batch.add(message_id, text)
            except ValueError:
                poison.append(message_id)
        return poison, batch.commit()


def wired(threshold: float = 0.6, sample_rate: float = 0.0) -> Wired:
    store, index, subjects, review = (
        MemoryObjectStore(),
        MemoryPredictionIndex(),
        MemorySubjects(),
        MemoryReviewList(),
    )
    consumer = CaptureConsumer(
        store,
        index,
        subjects,
        review,
        ConsumerConfig(review_confidence_threshold=threshold, review_sample_rate=sample_rate),
        sensitive=lambda model, version: ["gender"],
    )
    return Wired(store, index, subjects, review, consumer)

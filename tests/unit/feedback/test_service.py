"""The feedback API's domain: existence checks, label validation, review list, privacy helpers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from loopml.errors import ConfigurationError, InvalidInput, NotFound, TransientError
from loopml.feedback.models import FeedbackItem, FeedbackRequest, IndexEntry, ReviewItem
from loopml.feedback.privacy import MASK, SubjectHasher, masked, masked_record
from loopml.feedback.service import FeedbackService
from loopml_dev.memory import MemoryPredictionIndex, MemoryReviewList
from tests.unit.feedback.helpers import T0, pid_at

NOW = T0 + timedelta(hours=1)


class Queue:
    def __init__(self, reject: int = 0) -> None:
        self.records: list[dict] = []
        self.reject = reject

    def __call__(self, bodies: list[str]) -> int:
        for b in bodies:
            self.records.extend(json.loads(b)["records"])
        return self.reject


def service(queue: Queue | None = None, window_s: int = 900):
    index, review = MemoryPredictionIndex(), MemoryReviewList()
    classes = {("default", 1): [0, 1], ("default", 2): ["no", "yes"]}
    svc = FeedbackService(
        index,
        review,
        queue or Queue(),
        lambda model, version: classes[(model, 2 if version is None else version)],
        "default",
        window_s,
        clock=lambda: NOW,
    )
    return svc, index, review


def indexed(index, moment=T0, version=1, **extra) -> str:
    pid = pid_at(moment)
    index.entries[pid] = IndexEntry(
        prediction_id=pid, model="default", model_version=version, timestamp=moment.isoformat(), **extra
    )
    return pid


def test_known_prediction_is_accepted_with_its_label_normalised_and_queued():
    queue = Queue()
    svc, index, _ = service(queue)
    pid = indexed(index, subject_hash="h1")
    out = svc.submit([FeedbackItem(prediction_id=pid, label="1", source="user", comment="late payment")])
    assert out.accepted == 1 and out.items[0].status == "accepted" and len(out.items[0].feedback_id) == 32
    (record,) = queue.records
    assert record["label"] == 1 and record["subject_hash"] == "h1" and record["model_version"] == 1
    assert record["received_at"] == NOW.isoformat() and record["comment"] == "late payment"


def test_unknown_prediction_is_404_unless_it_may_still_be_in_flight():
    queue = Queue()
    svc, _, _ = service(queue)
    old = pid_at(NOW - timedelta(hours=2))
    with pytest.raises(NotFound, match=old):
        svc.submit([FeedbackItem(prediction_id=old, label=1)])
    future = pid_at(NOW + timedelta(hours=1))
    with pytest.raises(NotFound):
        svc.submit([FeedbackItem(prediction_id=future, label=1)])
    assert queue.records == []
    recent = pid_at(NOW - timedelta(minutes=3))
    out = svc.submit([FeedbackItem(prediction_id=recent, label="yes")])  # serving version's classes
    assert out.items[0].status == "pending" and queue.records[0]["model_version"] is None


def test_labels_outside_the_classes_name_each_item_and_nothing_is_queued():
    queue = Queue()
    svc, index, _ = service(queue)
    good, bad = indexed(index), indexed(index)
    with pytest.raises(InvalidInput) as caught:
        svc.submit(
            [FeedbackItem(prediction_id=good, label=0), FeedbackItem(prediction_id=bad, label="maybe")],
            loc=("body", "items"),
        )
    assert caught.value.errors[0]["loc"] == ["body", "items", 1, "label"]
    assert "[0, 1]" in caught.value.errors[0]["msg"]
    assert queue.records == []


def test_opted_out_and_erased_predictions_are_acknowledged_but_not_kept():
    queue = Queue()
    svc, index, _ = service(queue)
    out_pid, gone_pid = indexed(index, opted_out=True), indexed(index, erased=True)
    out = svc.submit([FeedbackItem(prediction_id=p, label=1) for p in (out_pid, gone_pid)])
    assert [i.status for i in out.items] == ["ignored", "ignored"] and out.accepted == 0
    assert queue.records == []


def test_queue_rejection_is_transient():
    svc, index, _ = service(Queue(reject=1))
    with pytest.raises(TransientError):
        svc.submit([FeedbackItem(prediction_id=indexed(index), label=1)])


def test_request_shapes():
    pid = pid_at(T0)
    assert len(FeedbackRequest.model_validate({"prediction_id": pid, "label": 1}).all_items()) == 1
    assert len(FeedbackRequest.model_validate({"items": [{"prediction_id": pid, "label": 1}] * 3}).all_items()) == 3
    for bad in (
        {},
        {"prediction_id": pid},
        {"prediction_id": pid, "label": 1, "items": [{"prediction_id": pid, "label": 1}]},
        {"items": []},
        {"items": [{"prediction_id": pid, "label": 1}] * 101},
        {"prediction_id": "not-an-id", "label": 1},
        {"prediction_id": pid, "label": 1, "source": "oracle"},
        {"prediction_id": pid, "label": 1, "extra": True},
    ):
        with pytest.raises(ValueError):
            FeedbackRequest.model_validate(bad)


def review_item(pid: str, confidence: float, reason: str = "low_confidence") -> ReviewItem:
    return ReviewItem(
        prediction_id=pid,
        model="default",
        model_version=1,
        timestamp=T0.isoformat(),
        prediction=1,
        probabilities={"0": 1 - confidence, "1": confidence},
        confidence=confidence,
        features={"age": 30},
        reason=reason,
    )


def test_review_page_is_least_confident_first_and_reviewer_label_closes_the_item():
    queue = Queue()
    svc, index, review = service(queue)
    pids = [indexed(index) for _ in range(4)]
    review.put_many([review_item(p, c) for p, c in zip(pids, (0.58, 0.51, 0.97, 0.55))], ttl_s=60)
    page = svc.review_page(limit=2)
    assert [i.confidence for i in page.items] == [0.51, 0.55] and page.pending == 4
    with pytest.raises(InvalidInput):
        svc.review_page(limit=0)
    out = svc.review_label(pids[1], "0", "checked the file")
    assert out.items[0].status == "accepted" and queue.records[0]["source"] == "reviewer"
    assert review.items[pids[1]].status == "reviewed" and review.items[pids[1]].label == 0
    assert [i.confidence for i in svc.review_page(limit=10).items] == [0.55, 0.58, 0.97]
    with pytest.raises(InvalidInput):
        svc.review_label("nope", 1, None)


def test_subject_hash_is_keyed_and_stable():
    one, two = SubjectHasher(b"k" * 32), SubjectHasher(b"j" * 32)
    assert one("alice") == one("alice") != one("bob")
    assert one("alice") != two("alice") and len(one("alice")) == 64 and "alice" not in one("alice")
    with pytest.raises(ConfigurationError):
        SubjectHasher(b"short")
    with pytest.raises(InvalidInput):
        one("x" * 257)


def test_sensitive_features_are_masked_for_logs():
    record = {"features": {"gender": "F", "age": 30}, "subject_hash": "h", "prediction_id": "p"}
    assert masked(record["features"], ["gender"]) == {"gender": MASK, "age": 30}
    assert masked_record(record, ["gender"]) == {"features": {"gender": MASK, "age": 30}, "prediction_id": "p"}

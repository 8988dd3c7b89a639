"""Consumer -> captured dataset -> read_captured, on in-memory ports."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest

from loopml import keys
from loopml.errors import InvalidInput, TransientError
from loopml.feedback import layout
from loopml.feedback.erasure import erase_subject
from loopml.feedback.reader import read_captured
from tests.unit.feedback.helpers import T0, body, feedback, pid_at, prediction, wired

DAY = timedelta(days=1)


def read(w, start=T0 - DAY, end=T0 + DAY, **kw):
    return read_captured(w.store, "default", start, end, **kw)


def test_predictions_and_labels_land_partitioned_and_join():
    w = wired()
    p1, p2 = prediction(T0), prediction(T0 + timedelta(hours=2))
    poison, result = w.consume([("m1", body(p1)), ("m2", body(p2))])
    assert poison == [] and result.predictions == 2 and result.failed == set()
    keys = w.store.list_keys("captured/default/predictions/")
    assert [k.split("/")[3:5] for k in keys] == [["dt=2026-11-20", "hour=10"], ["dt=2026-11-20", "hour=12"]]
    assert all(k.endswith(".jsonl.gz") for k in keys)
    lines = gzip.decompress(w.store.objects[keys[0]]).decode().splitlines()
    assert json.loads(lines[0])["prediction_id"] == p1["prediction_id"]

    w.consume([("m3", body(feedback(p1["prediction_id"], 0)))])
    (fb_key,) = w.store.list_keys("captured/default/feedback/")
    assert "/dt=2026-11-20/hour=10/" in fb_key  # under the prediction's hour, not the label's

    rows = read(w)
    assert [r.prediction_id for r in rows] == [p1["prediction_id"], p2["prediction_id"]]
    assert rows[0].label == 0 and rows[0].label_source == "user"
    assert rows[1].label is None and rows[1].label_source is None
    assert rows[0].features == p1["features"] and rows[0].model_version == 1 and rows[0].lambda_version == "3"
    assert [r.prediction_id for r in read(w, labelled_only=True)] == [p1["prediction_id"]]


def test_poison_message_fails_alone_and_the_rest_is_stored_once():
    w = wired()
    good = [prediction(T0 + timedelta(minutes=i)) for i in range(3)]
    bad_record = prediction(T0)
    del bad_record["features"]
    messages = [
        ("g1", body(good[0])),
        ("bad-json", "{not json"),
        ("g2", body(good[1])),
        ("bad-shape", body(good[2] | {"confidence": "high"})),
        ("bad-field", body(bad_record)),
        ("bad-kind", body({"kind": "mystery"})),
        ("g3", body(good[2])),
    ]
    poison, result = w.consume(messages)
    assert poison == ["bad-json", "bad-shape", "bad-field", "bad-kind"]
    assert result.failed == set() and result.predictions == 3
    assert sorted(r.prediction_id for r in read(w)) == sorted(p["prediction_id"] for p in good)


def test_redelivery_creates_no_duplicates():
    w = wired()
    records = [prediction(T0 + timedelta(seconds=i)) for i in range(4)]
    first = [(f"m{i}", body(r)) for i, r in enumerate(records)]
    w.consume(first)
    keys = w.store.list_keys("captured/")
    w.consume(first)  # the same batch again: same key, duplicates skipped
    assert w.store.list_keys("captured/") == keys
    _, again = w.consume([("m1", body(records[1])), ("m9", body(records[3], prediction(T0)))])
    assert again.duplicates == 2 and again.predictions == 1
    assert len(read(w)) == 5
    assert len({r.prediction_id for r in read(w)}) == 5


def test_same_batch_redelivered_after_a_failed_index_write_is_read_once():
    w = wired()
    records = [prediction(T0 + timedelta(seconds=i)) for i in range(3)]
    messages = [(f"m{i}", body(r)) for i, r in enumerate(records)]

    def broken(entries, ttl_s):
        raise TransientError("dynamodb: ProvisionedThroughputExceededException")

    w.index.put_many, original = broken, w.index.put_many  # type: ignore[method-assign]
    _, failed = w.consume(messages)
    assert failed.failed == {"m0", "m1", "m2"} and "ProvisionedThroughput" in (failed.error or "")
    w.index.put_many = original  # type: ignore[method-assign]
    _, ok = w.consume(messages)
    assert ok.failed == set() and ok.predictions == 3
    assert len(w.store.list_keys("captured/")) == 1  # the retry overwrote its own object
    assert len(read(w)) == 3


def test_late_labels_join_and_window_is_half_open():
    w = wired()
    inside, edge = prediction(T0), prediction(T0 + timedelta(hours=3))
    w.consume([("m1", body(inside, edge))])
    w.consume([("m2", body(feedback(inside["prediction_id"], 0, received=T0 + timedelta(days=9))))])
    rows = read_captured(w.store, "default", T0, T0 + timedelta(hours=3))
    assert [r.prediction_id for r in rows] == [inside["prediction_id"]]
    assert rows[0].label == 0 and rows[0].label_received_at == T0 + timedelta(days=9)
    naive = read_captured(w.store, "default", T0.replace(tzinfo=None), (T0 + timedelta(hours=3)).replace(tzinfo=None))
    assert [r.prediction_id for r in naive] == [inside["prediction_id"]]  # naive datetimes are UTC
    with pytest.raises(InvalidInput):
        read_captured(w.store, "default", T0, T0)


def test_reviewer_beats_user_and_latest_wins_within_a_source():
    w = wired()
    a, b, c = (prediction(T0 + timedelta(minutes=i)) for i in range(3))
    w.consume([("p", body(a, b, c))])
    later = T0 + timedelta(hours=5)
    w.consume(
        [
            ("f1", body(feedback(a["prediction_id"], 1, "reviewer", T0 + timedelta(hours=1)))),
            ("f2", body(feedback(a["prediction_id"], 0, "user", later))),  # later, but a user's
            ("f3", body(feedback(b["prediction_id"], 1, "user", T0 + timedelta(hours=1)))),
            ("f4", body(feedback(b["prediction_id"], 0, "user", later))),  # latest user label wins
            ("f5", body(feedback(c["prediction_id"], 1, "user", later))),
            ("f6", body(feedback(c["prediction_id"], 0, "system", T0 + timedelta(hours=1)))),
        ]
    )
    labels = {r.prediction_id: (r.label, r.label_source) for r in read(w)}
    assert labels[a["prediction_id"]] == (1, "reviewer")
    assert labels[b["prediction_id"]] == (0, "user")
    assert labels[c["prediction_id"]] == (0, "system")


def test_model_version_filter_and_other_models_kept_apart():
    w = wired()
    v1, v2 = prediction(T0, version=1), prediction(T0, version=2)
    other = prediction(T0, model="churn")
    w.consume([("m", body(v1, v2, other))])
    assert [r.model_version for r in read(w, model_version=2)] == [2]
    assert len(read(w)) == 2
    assert [r.model for r in read_captured(w.store, "churn", T0 - DAY, T0 + DAY)] == ["churn"]


def test_opt_out_is_remembered_and_later_feedback_is_dropped():
    w = wired()
    optout = {
        "kind": "optout",
        "prediction_id": pid_at(T0),
        "model": "default",
        "model_version": 1,
        "timestamp": T0.isoformat(),
        "subject_hash": "h-out",
    }
    _, result = w.consume([("o", body(optout))])
    assert result.opt_outs == 1 and w.subjects.items["h-out"].opted_out
    assert w.store.list_keys("captured/") == []
    later = prediction(T0 + timedelta(minutes=5), subject_hash="h-out")
    other = prediction(T0 + timedelta(minutes=5), subject_hash="h-in")
    _, result = w.consume([("p", body(later, other))])
    assert result.dropped == 1 and result.predictions == 1
    _, result = w.consume([("f", body(feedback(optout["prediction_id"], 1)))])
    assert result.dropped == 1 and w.store.list_keys("captured/default/feedback/") == []
    assert [r.subject_hash for r in read(w)] == ["h-in"]


def test_erasure_leaves_nothing_of_the_subject_and_keeps_everyone_else():
    w = wired(threshold=0.99)  # everything goes on the review list too
    mine = [prediction(T0 + timedelta(hours=h), subject_hash="h-me", features={"age": 97}) for h in (0, 0, 30)]
    theirs = [prediction(T0 + timedelta(hours=h), subject_hash="h-you") for h in (0, 30)]
    anonymous = prediction(T0)
    w.consume([("a", body(mine[0], theirs[0], anonymous)), ("b", body(mine[1])), ("c", body(mine[2], theirs[1]))])
    early = feedback(mine[0]["prediction_id"], 1)  # consumed before ... and with the subject from the index
    w.consume([("f1", body(early, feedback(theirs[0]["prediction_id"], 0)))])
    mine_ids = {p["prediction_id"] for p in mine}

    receipt = erase_subject("h-me", w.store, w.index, w.subjects, w.review)
    assert receipt.predictions_removed == 3 and receipt.feedback_removed == 1
    assert receipt.objects_rewritten + receipt.objects_deleted >= 3
    assert receipt.review_items_removed == 3
    for key, data in w.store.objects.items():
        text = gzip.decompress(data).decode() if key.endswith(".gz") else data.decode()
        assert "h-me" not in text and '"age":97' not in text
        assert not any(pid in text for pid in mine_ids), key
    assert all(w.index.entries[p].erased and w.index.entries[p].subject_hash is None for p in mine_ids)
    rows = read(w, end=T0 + timedelta(days=3))
    assert sorted(r.prediction_id for r in rows) == sorted(
        [anonymous["prediction_id"], *(p["prediction_id"] for p in theirs)]
    )
    assert {r.prediction_id: r.label for r in rows}[theirs[0]["prediction_id"]] == 0

    # a straggler still in flight is dropped by the consumer; one that slipped in is hidden by the tombstone
    _, result = w.consume([("late", body(prediction(T0, subject_hash="h-me")))])
    assert result.dropped == 1
    w.store.put(
        keys.captured_key("default", "predictions", T0, ["slipped"]),
        layout.encode([prediction(T0, subject_hash="h-me")]),
    )
    assert all(r.subject_hash != "h-me" for r in read(w))
    again = erase_subject("h-me", w.store, w.index, w.subjects, w.review)
    assert again.predictions_removed == 0  # idempotent (the slipped object is not recorded for the subject)


def test_review_list_takes_low_confidence_and_a_deterministic_sample_with_sensitive_masked():
    w = wired(threshold=0.6, sample_rate=0.5)
    records = [prediction(T0 + timedelta(seconds=i), confidence=0.55 if i % 4 == 0 else 0.95) for i in range(40)]
    w.consume([("m", body(*records))])
    reasons = {i.prediction_id: i.reason for i in w.review.items.values()}
    low = {r["prediction_id"] for r in records if r["confidence"] < 0.6}
    assert {p for p, why in reasons.items() if why == "low_confidence"} == low
    sampled = {p for p, why in reasons.items() if why == "sample"}
    assert 0 < len(sampled) < 30
    assert all(i.features["gender"] == "*****" and i.features["age"] == 41 for i in w.review.items.values())
    again = wired(threshold=0.6, sample_rate=0.5)
    again.consume([("m", body(*records))])
    assert {i.prediction_id for i in again.review.items.values()} == set(reasons)


def test_poison_samples_for_the_log_mask_sensitive_features_and_the_subject():
    w = wired()
    bad = prediction(T0, subject_hash="h-secret") | {"confidence": "high"}
    poison, _ = w.consume([("bad", body(bad))])
    batch = w.consumer.delivery()
    with pytest.raises(ValueError, match="confidence"):
        batch.add("bad", body(bad))
    (sample,) = batch.poison
    (logged,) = sample["records"]
    assert poison == ["bad"] and logged["features"]["gender"] == "*****" and logged["features"]["age"] == 41
    assert "subject_hash" not in logged and "h-secret" not in json.dumps(sample)
    unknown = wired()
    unknown.consumer.sensitive = lambda model, version: (_ for _ in ()).throw(KeyError(model))
    other = unknown.consumer.delivery()
    with pytest.raises(ValueError):
        other.add("bad", body(bad))
    assert set(other.poison[0]["records"][0]["features"].values()) == {"*****"}  # schema unknown: hide all

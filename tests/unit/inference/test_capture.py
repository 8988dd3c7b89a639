from __future__ import annotations

import json

from loopml.capture import MAX_MESSAGE_BYTES, CaptureBuffer, pack_messages, unpack_message


def test_messages_stay_under_the_sqs_limit_and_keep_every_record():
    records = [{"prediction_id": str(i), "blob": "x" * 5000} for i in range(200)]
    bodies = pack_messages(records)
    assert len(bodies) > 1
    assert all(len(b.encode()) <= MAX_MESSAGE_BYTES + 100 for b in bodies)
    unpacked = [r for b in bodies for r in unpack_message(b)]
    assert unpacked == records


def test_flush_sends_once_and_counts_failures():
    sent: list[list[str]] = []
    failures: list[tuple[int, str]] = []

    def sender(bodies: list[str]) -> int:
        sent.append(bodies)
        return 1

    buffer = CaptureBuffer(sender, lambda n, why: failures.append((n, why)))
    buffer.add([{"prediction_id": "a"}])
    buffer.add([{"prediction_id": "b"}])
    buffer.flush()
    buffer.flush()
    assert len(sent) == 1 and len(sent[0]) == 2
    assert failures == [(1, "some messages were rejected by SQS")]


def test_a_raising_sender_never_escapes():
    failures: list[tuple[int, str]] = []

    def sender(bodies: list[str]) -> int:
        raise ConnectionError("down")

    buffer = CaptureBuffer(sender, lambda n, why: failures.append((n, why)))
    buffer.add([{"prediction_id": "a"}])
    buffer.flush()
    assert failures == [(1, "ConnectionError: down")]
    assert buffer.pending == 0


def test_non_finite_values_are_refused_before_sending():
    import pytest

    with pytest.raises(ValueError, match="Out of range"):
        pack_messages([{"x": float("nan")}])
    assert json.loads(pack_messages([{"x": 1}])[0])["records"] == [{"x": 1}]


def test_send_batches_respect_both_sqs_limits():
    from loopml.adapters.sqs import MAX_BATCH_BYTES, message_groups
    from loopml.capture import MAX_MESSAGE_BYTES

    big = ["x" * MAX_MESSAGE_BYTES] * 3
    small = ["y" * 100] * 25
    groups = message_groups(big + small)
    assert all(sum(1 for b in g if b in big) <= 1 for g in groups)
    assert all(len(g) <= 10 and sum(len(b) for b in g) <= MAX_BATCH_BYTES for g in groups)
    assert [b for g in groups for b in g] == big + small


def test_the_queued_dicts_are_the_record_models_field_for_field():
    """/predict builds its records without validation; the consumer validates them with these models."""
    from datetime import UTC, datetime

    from loopml.capture import CapturedRow, CaptureRecord, OptOutRecord, optout_record, prediction_record

    pid = "0" * 8 + "a" * 24
    record = prediction_record(
        prediction_id=pid,
        model="default",
        model_version=3,
        lambda_version="7",
        request_id="r",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        features={"age": 31, "region": "north"},
        prediction="yes",
        probabilities={"no": 0.25, "yes": 0.75},
        confidence=0.75,
        interval=None,
        latency_ms=1.5,
        degraded=False,
        flags={"missing": []},
        subject_hash=None,
    )
    assert set(record) == set(CaptureRecord.model_fields)
    assert CaptureRecord.model_validate(record).model_dump() == record
    row = CapturedRow.model_validate(record)  # what the reader makes of the stored record
    assert row.timestamp == datetime(2026, 1, 1, tzinfo=UTC) and row.label is None
    optout = optout_record(prediction_id=pid, model="default", model_version=3, timestamp="t", subject_hash="h")
    assert set(optout) == set(OptOutRecord.model_fields)
    assert OptOutRecord.model_validate(optout).model_dump() == optout


def test_records_are_built_at_flush_and_a_failing_builder_loses_only_its_own_request():
    """/predict hands over what builds its records, after the response: the flush builds them, once."""
    sent: list[list[str]] = []
    failures: list[tuple[int, str]] = []
    built: list[str] = []

    def records(pid: str):
        def build() -> list[dict[str, str]]:
            built.append(pid)
            return [{"prediction_id": pid}]

        return build

    def broken() -> list[dict[str, str]]:
        raise KeyError("probabilities")

    buffer = CaptureBuffer(lambda bodies: sent.append(bodies) or 0, lambda n, why: failures.append((n, why)))
    buffer.add(records("a"))
    buffer.add(broken)
    buffer.add(records("b"))
    assert built == [] and buffer.pending == 3  # nothing built while the request is answered
    buffer.flush()
    buffer.flush()
    assert built == ["a", "b"]
    assert [r["prediction_id"] for b in sent[0] for r in unpack_message(b)] == ["a", "b"]
    assert failures == [(1, "building a request's records failed: KeyError: 'probabilities'")]

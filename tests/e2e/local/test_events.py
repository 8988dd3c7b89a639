"""SQS event source mappings (partial batch failures, redrive to the DLQ) and schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml_dev.local.pollers import failed_ids
from loopml_dev.local.runtime import InvokeResult
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).parent / "fixtures" / "events"


def _count(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _shape(value):
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return type(value).__name__


def test_partial_batch_failure_deletes_good_records_once_and_redrives_the_poison_one(stack, function_log):
    sqs, s3 = stack.client("sqs"), stack.client("s3")
    url, dlq = stack.queue_url("work"), stack.queue_url("work-dlq")
    # Warm the consumer first: a cold start longer than the visibility timeout would (rightly) deliver twice.
    assert stack.invoke("sqs_consumer", {"Records": []}).function_error is None
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(["good-1", "good-2", "good-3", "poison-1"])]
    entries[0]["MessageAttributes"] = {"kind": {"DataType": "String", "StringValue": "prediction"}}
    sqs.send_message_batch(QueueUrl=url, Entries=entries)

    wait_for(lambda: _count(sqs, dlq), 20, "the poison message in the DLQ", interval_s=0.2)
    assert _count(sqs, dlq) == 1, "the poison message must reach the DLQ after maxReceiveCount receives"
    assert _count(sqs, url) == 0
    keys = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket="loopml-test-results", Prefix="processed/good-")["Contents"]
    )
    assert [key.rsplit("-", 1)[1] for key in keys] == ["1", "1", "1"], f"each good record processed once: {keys}"
    assert [key.split("/")[1] for key in keys] == ["good-1", "good-2", "good-3"]
    assert not s3.list_objects_v2(Bucket="loopml-test-results", Prefix="processed/poison").get("Contents")
    retried = [line for line in function_log.lines if "[sqs:sqs_consumer]" in line and "reported failed" in line]
    assert len(retried) >= 2, "the poison record must be delivered again after the visibility timeout"
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["poison-1"]


def test_batch_response_rules():
    ids = {"a", "b"}
    assert failed_ids(InvokeResult(200, b'{"batchItemFailures": []}', "1"), ids) == set()
    assert failed_ids(InvokeResult(200, b"null", "1"), ids) == set()
    assert failed_ids(InvokeResult(200, b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', "1"), ids) == {"b"}
    assert failed_ids(InvokeResult(200, b'{"errorType": "X"}', "1", "Unhandled"), ids) is None
    assert failed_ids(InvokeResult(200, b'{"batchItemFailures": [{"itemIdentifier": "zz"}]}', "1"), ids) is None
    assert failed_ids(InvokeResult(200, b'{"batchItemFailures": [{"itemIdentifier": ""}]}', "1"), ids) is None


def test_sqs_event_matches_the_saved_sample(stack):
    from loopml_dev.local.pollers import sqs_record

    sqs = stack.client("sqs")
    dlq = stack.queue_url("work-dlq")
    sqs.purge_queue(QueueUrl=dlq)
    sqs.send_message(
        QueueUrl=dlq, MessageBody="x", MessageAttributes={"kind": {"DataType": "String", "StringValue": "p"}}
    )
    message = sqs.receive_message(
        QueueUrl=dlq,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"][0]
    record = sqs_record(message, stack.deployment.queue_arns["work"], "us-east-1")
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":loopml-test-work")
    assert record["messageAttributes"]["kind"]["stringValue"] == "p"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert _shape({"Records": [record]}) == _shape(json.loads((SAMPLES / "sqs_batch.json").read_text()))


def test_trigger_schedule_sends_a_scheduled_event_or_the_declared_input(stack):
    tick = stack.trigger_schedule("tick")
    event = json.loads(tick.payload)["event"]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/loopml-test-tick"]
    assert _shape(event) == _shape(json.loads((SAMPLES / "eventbridge_scheduled.json").read_text()))

    nightly = stack.trigger_schedule("nightly")
    assert json.loads(nightly.payload)["event"] == {"job": "nightly"}
    with pytest.raises(KeyError, match="no schedule named 'weekly'"):
        stack.trigger_schedule("weekly")

"""The feedback function against moto: real API Gateway and SQS events in, S3/DynamoDB/SQS effects out."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopml import keys
from loopml.adapters.s3 import S3ObjectStore
from loopml.feedback import layout
from loopml.feedback.reader import read_captured
from loopml.registry import ModelRegistry
from loopml.times import parse_time
from loopml_dev.local.context import StubContext
from loopml_dev.local.stores import create_table
from tests.conftest import ROOT, load_handler, make_metadata

BUCKET = "loopml-test-models"
EVENTS = ROOT / "events" / "feedback"
KEY = "example-subject-key-for-tests-only-0123456789"  # the key the sample events were hashed with
SUBJECT_HASH = hmac.new(KEY.encode(), b"customer-42", hashlib.sha256).hexdigest()
T = datetime(2026, 11, 25, 17, 41, 11, tzinfo=UTC)
P1, P2, P3 = (
    "6b071db73f2a9c81d4e6b7a05c1e8f92",
    "6b071db7b81c04f7e29a6d3350a1c7e4",
    "6b071db709d7e1a4c6b2f8530e4a9d17",
)
POISON = "7b0a6b1e-5c3f-4f38-9d0e-2a4c1b8e6f01"
TABLES = {"PREDICTION_INDEX_TABLE": "t-index", "REVIEW_TABLE": "t-review", "SUBJECTS_TABLE": "t-subjects"}


Context = partial(StubContext, "feedback", version="3")


class Deployed:
    def __init__(self, module: ModuleType, s3: Any, sqs: Any, queue_url: str, dlq_url: str) -> None:
        self.module, self.s3, self.sqs, self.queue_url, self.dlq_url = module, s3, sqs, queue_url, dlq_url
        self.store = S3ObjectStore(s3, BUCKET)

    def call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        out = self.module.handler(event, Context())
        return out["statusCode"], json.loads(out["body"])

    def consume(self, event: dict[str, Any]) -> list[str]:
        out = self.module.handler(event, Context())
        return [f["itemIdentifier"] for f in out["batchItemFailures"]]

    def drain_feedback_queue(self) -> list[str]:
        """What Lambda's poller would do: hand the queued feedback to the function, delete successes."""
        failures: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return failures
            failed = self.consume(sqs_event(messages, "feedback"))
            failures += failed
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def objects(self) -> dict[str, bytes]:
        keys = self.store.list_keys("")
        return {k: self.store.get(k) for k in keys}


def sqs_event(messages: list[dict[str, Any]], queue: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795628471300"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text())
    data.update(changes)
    return data


def with_body(name: str, body: Any) -> dict[str, Any]:
    return event(name, body=body if isinstance(body, str) else json.dumps(body))


def create_tables(dynamodb: Any) -> None:
    for table in TABLES.values():
        create_table(dynamodb, table)


@pytest.fixture
def deployed(aws_env, monkeypatch, trained) -> Iterator[Deployed]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="loopml-test-feedback-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="loopml-test-feedback",
            Attributes={
                "VisibilityTimeout": "0",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
            },
        )["QueueUrl"]
        create_tables(boto3.client("dynamodb"))
        registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
        trained.register(registry, make_metadata(trained))
        registry.set_alias("default", "champion", 1, actor="test", reason="first")
        for name, value in {
            "MODEL_BUCKET": BUCKET,
            "FEEDBACK_QUEUE_URL": queue_url,
            **TABLES,
            "SUBJECT_KEY": KEY,
            "REVIEW_SAMPLE_RATE": "0",
            "POWERTOOLS_SERVICE_NAME": "feedback",
            "POWERTOOLS_METRICS_NAMESPACE": "loopml",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        yield Deployed(load_handler("feedback"), s3, sqs, queue_url, dlq_url)


def rows(d: Deployed) -> dict[str, Any]:
    return {
        r.prediction_id: r for r in read_captured(d.store, "default", T - timedelta(hours=1), T + timedelta(hours=1))
    }


def test_every_sample_event_parses_through_the_handler_models():
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, SQSEvent

    from loopml.feedback.consumer import CaptureConsumer, ConsumerConfig, PoisonMessage
    from loopml.feedback.models import FeedbackRequest, ReviewLabelRequest
    from loopml_dev.memory import MemoryObjectStore, MemoryPredictionIndex, MemoryReviewList, MemorySubjects

    files = sorted(EVENTS.glob("*.json"))
    assert len(files) >= 7
    poison = []
    for path in files:
        data = json.loads(path.read_text())
        if "Records" in data:
            batch = CaptureConsumer(
                MemoryObjectStore(), MemoryPredictionIndex(), MemorySubjects(), MemoryReviewList(), ConsumerConfig()
            ).delivery()
            for record in SQSEvent(data).records:
                try:
                    batch.add(record.message_id, record.body)
                except PoisonMessage:
                    poison.append(record.message_id)
            continue
        evt = APIGatewayProxyEvent(data)
        assert evt.request_context.request_id
        if evt.resource == "/feedback":
            FeedbackRequest.model_validate(evt.json_body)
        elif evt.http_method == "POST":
            ReviewLabelRequest.model_validate(evt.json_body)
    assert poison == [POISON]  # the sample capture batch carries exactly one truncated message


def test_capture_batch_reports_only_the_poison_message_and_redelivery_adds_nothing(deployed):
    d = deployed
    assert d.consume(event("sqs_capture_batch.json")) == [POISON]
    keys = d.store.list_keys("captured/")
    assert keys and all(k.startswith("captured/default/predictions/dt=2026-11-25/hour=17/") for k in keys)
    assert d.consume(event("sqs_capture_batch.json")) == [POISON]
    assert d.store.list_keys("captured/") == keys
    found = rows(d)
    assert sorted(found) == sorted([P1, P2, P3])
    assert found[P1].subject_hash == SUBJECT_HASH and found[P1].features["gender"] == "female"
    opted = boto3.client("dynamodb").get_item(
        TableName="t-index", Key={"id": {"S": "6b071db75e6f7a8b9c0d1e2f3a4b5c6d"}}
    )
    assert opted["Item"]["opted_out"] == {"BOOL": True}


def test_feedback_and_review_flow_joins_labels_with_reviewer_winning(deployed):
    d = deployed
    d.consume(event("sqs_capture_batch.json"))
    status, body = d.call(event("post_feedback_single.json"))
    assert status == 202, body
    assert body["accepted"] == 1 and body["items"][0]["status"] == "accepted"
    status, body = d.call(event("post_feedback_batch.json"))
    assert status == 202 and [i["prediction_id"] for i in body["items"]] == [P1, P2]
    status, page = d.call(event("get_review.json"))
    assert status == 200 and [i["prediction_id"] for i in page["items"]] == [P2]  # 0.55 < 0.6
    assert page["items"][0]["features"]["gender"] == "*****"  # sensitive: masked for reviewers
    status, body = d.call(event("post_review.json"))
    assert status == 202, body
    assert d.drain_feedback_queue() == []
    found = rows(d)
    assert (found[P1].label, found[P1].label_source) == (0, "system")  # system beats user
    assert (found[P2].label, found[P2].label_source) == (0, "reviewer")  # reviewer beats the user's "1"
    assert found[P3].label is None
    status, page = d.call(event("get_review.json"))
    assert page["items"] == [] and page["pending"] == 0


BAD_REQUESTS = [
    ("post_feedback_single.json", "{not json", 400, None),
    ("post_feedback_single.json", {"prediction_id": P1}, 422, ["body"]),
    ("post_feedback_single.json", {"prediction_id": "abc", "label": 1}, 422, ["body", "prediction_id"]),
    ("post_feedback_single.json", {"prediction_id": P1, "label": 1, "source": "x"}, 422, ["body", "source"]),
    ("post_feedback_single.json", {"prediction_id": P1, "label": "maybe"}, 422, ["body", "label"]),
    (
        "post_feedback_batch.json",
        {"items": [{"prediction_id": P1, "label": 1}, {"prediction_id": P2, "label": 7}]},
        422,
        ["body", "items", 1, "label"],
    ),
    ("post_feedback_batch.json", {"items": [{"prediction_id": P1, "label": 1}] * 101}, 422, ["body", "items"]),
    ("post_review.json", {"label": 1, "reviewer": "me"}, 422, ["body", "reviewer"]),
]


def test_bad_requests_get_4xx_naming_the_field_and_queue_nothing(deployed):
    d = deployed
    d.consume(event("sqs_capture_batch.json"))
    for name, body, status, loc in BAD_REQUESTS:
        got, answer = d.call(with_body(name, body))
        assert got == status, (body, answer)
        if loc:
            assert answer["detail"][0]["loc"][: len(loc)] == loc, (body, answer)
    assert d.sqs.receive_message(QueueUrl=d.queue_url).get("Messages") is None


def test_unknown_prediction_is_404_and_bad_query_is_422(deployed):
    d = deployed
    unknown = layout.prediction_id(T - timedelta(days=2), "0" * 24)
    status, answer = d.call(with_body("post_feedback_single.json", {"prediction_id": unknown, "label": 1}))
    assert status == 404 and unknown in answer["message"]
    query = {"queryStringParameters": {"limit": "0"}, "multiValueQueryStringParameters": {"limit": ["0"]}}
    status, answer = d.call(event("get_review.json", **query))
    assert status == 422 and answer["detail"][0]["loc"] == ["query", "limit"]
    bad = event("post_review.json", path="/review/nope", pathParameters={"prediction_id": "nope"})
    status, answer = d.call(bad)
    assert status == 422 and answer["detail"][0]["loc"] == ["path", "prediction_id"]


def test_erasure_removes_the_subject_from_every_object_and_returns_a_receipt(deployed):
    d = deployed
    d.consume(event("sqs_capture_batch.json"))
    assert d.consume(event("sqs_feedback_batch.json")) == []
    status, receipt = d.call(event("delete_subject.json"))
    assert status == 200, receipt
    assert receipt["predictions_removed"] == 2 and receipt["feedback_removed"] == 2
    assert receipt["objects_rewritten"] == 1 and receipt["objects_deleted"] == 1
    assert receipt["review_items_removed"] == 1
    for key, data in d.objects().items():
        text = gzip.decompress(data).decode() if key.endswith(".gz") else data.decode(errors="replace")
        assert SUBJECT_HASH not in text and "customer-42" not in text
        assert P1 not in text and P2 not in text, key
    assert sorted(rows(d)) == [P3]
    assert d.store.list_keys(keys.ERASED) == [keys.tombstone_key(SUBJECT_HASH)]
    # feedback arriving after the erasure is dropped: the index says erased
    assert d.consume(event("sqs_feedback_batch.json")) == []
    assert d.store.list_keys("captured/default/feedback/") == []


def test_poison_is_retried_then_dead_lettered_while_good_labels_are_stored_once(deployed):
    d = deployed
    d.consume(event("sqs_capture_batch.json"))
    good = {
        "v": 1,
        "records": [json.loads(r["body"])["records"][0] for r in event("sqs_feedback_batch.json")["Records"]],
    }
    d.sqs.send_message(QueueUrl=d.queue_url, MessageBody=json.dumps(good))
    d.sqs.send_message(QueueUrl=d.queue_url, MessageBody='{"v":1,"records":[{"kind":"feedback"}]}')
    failures = d.drain_feedback_queue()  # visibility 0: the poison comes straight back, 3 times
    assert len(failures) == 3 and len(set(failures)) == 1
    dead = d.sqs.receive_message(QueueUrl=d.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ['{"v":1,"records":[{"kind":"feedback"}]}']
    assert len(d.store.list_keys("captured/default/feedback/")) == 1
    assert (rows(d)[P1].label, rows(d)[P1].label_source) == (0, "reviewer")


def test_predict_hashes_the_subject_and_opt_out_captures_nothing(deployed, monkeypatch, tmp_path):
    d = deployed
    capture_url = d.sqs.create_queue(QueueName="loopml-test-capture")["QueueUrl"]
    monkeypatch.setenv("CAPTURE_QUEUE_URL", capture_url)
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    inference = load_handler("inference")
    predict = json.loads((ROOT / "events" / "inference" / "predict_single.json").read_text())
    instance = json.loads(predict["body"])["instance"]

    def post(payload: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        out = inference.handler(predict | {"body": json.dumps(payload)}, Context())
        assert out["statusCode"] == 200, out["body"]
        messages = d.sqs.receive_message(QueueUrl=capture_url, MaxNumberOfMessages=10)["Messages"]
        for m in messages:
            d.sqs.delete_message(QueueUrl=capture_url, ReceiptHandle=m["ReceiptHandle"])
        return json.loads(out["body"]), [r for m in messages for r in json.loads(m["Body"])["records"]]

    answer, (record,) = post({"instance": instance, "subject_id": "customer-42"})
    assert record["subject_hash"] == SUBJECT_HASH and "customer-42" not in json.dumps(record)
    pid = answer["predictions"][0]["prediction_id"]
    assert abs(layout.prediction_time(pid) - parse_time(record["timestamp"])) < timedelta(seconds=1)
    answer, (marker,) = post({"instance": instance, "subject_id": "customer-77", "consent": False})
    assert marker["kind"] == "optout" and "features" not in marker and answer["predictions"][0]["prediction"] in (0, 1)
    bad = inference.handler(predict | {"body": json.dumps({"instance": instance, "consent": "maybe"})}, Context())
    assert bad["statusCode"] == 422 and "consent" in bad["body"]


def test_a_message_delivered_twice_in_one_batch_is_stored_once(deployed):
    d = deployed
    records = event("sqs_capture_batch.json")["Records"]
    twice = [records[0], records[3], records[0] | {"messageId": "dup-1"}, records[3] | {"messageId": "dup-2"}]
    assert d.consume({"Records": twice}) == []
    assert sorted(rows(d)) == sorted([P1, P2])


def _capture(pid: str, low_confidence: bool = True, **changes: Any) -> dict[str, Any]:
    template = json.loads(event("sqs_capture_batch.json")["Records"][0]["body"])["records"][0]
    record = {**template, "prediction_id": pid, **changes}
    if low_confidence:
        record["confidence"] = 0.51
    return record


def _messages(records: list[dict[str, Any]]) -> dict[str, Any]:
    messages = [
        {
            "MessageId": f"00000000-0000-4000-8000-{i:012d}",
            "ReceiptHandle": f"rh-{i}",
            "Body": json.dumps({"v": 1, "records": [r]}),
            "MD5OfBody": "0" * 32,
        }
        for i, r in enumerate(records)
    ]
    return sqs_event(messages, "capture")


def _pid(i: int) -> str:
    return f"6b071db7{i:024x}"


def test_a_nan_record_among_100_fails_alone_and_never_enters_the_dataset(deployed):
    """The NaN-record drill: NaN probabilities and Infinity confidence in one message of a batch of 100."""
    d = deployed
    records = [_capture(_pid(i)) for i in range(100)]
    body = json.dumps({"v": 1, "records": [_capture(_pid(57))]})
    body = body.replace('"confidence": 0.51', '"confidence": Infinity').replace('": 0.', '": NaN, "x": 0.', 1)
    batch = _messages(records)
    batch["Records"][57]["body"] = body
    poison_id = batch["Records"][57]["messageId"]
    assert d.consume(batch) == [poison_id]
    stored = rows(d)
    assert len(stored) == 99 and _pid(57) not in stored
    assert d.consume(batch) == [poison_id]  # redelivered: nothing stored twice, the neighbours untouched
    assert len(rows(d)) == 99
    for key in d.store.list_keys("captured/"):
        text = gzip.decompress(d.store.get(key)).decode()
        assert (
            "NaN" not in text
            and "Infinity" not in text
            and "null" not in text.replace('"subject_hash":null', "").replace('"interval":null', "")
        )


def test_a_model_name_that_is_a_path_never_becomes_a_key(deployed):
    d = deployed
    sneaky = _capture(_pid(1), model="default/predictions/dt=2026-11-25/hour=17/x")
    fine = _capture(_pid(2))
    batch = _messages([sneaky, fine])
    assert d.consume(batch) == [batch["Records"][0]["messageId"]]
    keys = d.store.list_keys("captured/")
    assert all(k.startswith("captured/default/predictions/dt=2026-11-25/hour=17/") for k in keys)
    assert all(k.count("/") == 5 for k in keys), keys
    assert set(rows(d)) == {_pid(2)}


def test_the_reader_skips_malformed_stored_records_instead_of_breaking(deployed):
    d = deployed
    d.consume(_messages([_capture(_pid(3))]))
    bad_lines = b'{"prediction_id": "x"}\nnot json\n{"prediction_id": "%s", "confidence": NaN}\n' % _pid(4).encode()
    d.store.put("captured/default/predictions/dt=2026-11-25/hour=17/broken.jsonl.gz", gzip.compress(bad_lines))
    d.store.put("captured/default/predictions/dt=2026-11-25/hour=17/notgzip.jsonl.gz", b"plain")
    assert set(rows(d)) == {_pid(3)}


@pytest.mark.parametrize(
    "wrong",
    [
        {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]},
        {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
        "just a string",
    ],
)
def test_an_event_of_the_wrong_shape_is_one_named_error(deployed, wrong):
    from loopml.errors import UnsupportedEvent

    with pytest.raises(UnsupportedEvent, match="the feedback function serves SQS batches"):
        deployed.module.handler(wrong, Context())

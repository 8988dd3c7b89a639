"""The local stack's grant check, on the real declaration: each function reaches what it was granted."""

from __future__ import annotations

import pytest

from loopml.topology import ACCESSES, TOPOLOGY, physical_name
from loopml_dev.local.grants import OPERATIONS, denial, statements


def policy(function: str) -> list[dict[str, object]]:
    return statements(TOPOLOGY.function(function).grants, lambda name: physical_name("local", name))


BUCKET = "loopml-local-models"
QUEUE = "http://127.0.0.1:4566/123456789012/loopml-local-capture"


def test_every_declarable_access_has_its_operations() -> None:
    assert set(OPERATIONS) == {(kind, access) for kind, accesses in ACCESSES.items() for access in accesses}


@pytest.mark.parametrize(
    ("function", "service", "operation", "params"),
    [
        ("inference", "s3", "GetObject", {"Bucket": BUCKET, "Key": "models/default/v1/model.joblib"}),
        ("inference", "sqs", "SendMessageBatch", {"QueueUrl": QUEUE, "Entries": []}),
        ("feedback", "s3", "DeleteObject", {"Bucket": BUCKET, "Key": "captured/default/predictions/x"}),
        ("feedback", "dynamodb", "BatchGetItem", {"RequestItems": {"loopml-local-prediction-index": {}}}),
        ("drift", "s3", "PutObject", {"Bucket": BUCKET, "Key": "models/default/drift/latest.json"}),
        ("drift", "s3", "PutObject", {"Bucket": BUCKET, "Key": "starts/default/20261125T120000Z.json"}),
        ("retrain", "lambda", "UpdateAlias", {"FunctionName": "loopml-local-inference", "Name": "live"}),
        ("retrain", "cloudwatch", "PutMetricAlarm", {"AlarmName": "loopml-local-inference-canary-default-v2-x"}),
        ("retrain", "stepfunctions", "SendTaskSuccess", {"taskToken": "t", "output": "{}"}),
        ("starter", "s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": "starts/default/"}),
    ],
)
def test_granted_calls_pass(function: str, service: str, operation: str, params: dict[str, object]) -> None:
    assert denial(policy(function), service, operation, params) is None


@pytest.mark.parametrize(
    ("function", "service", "operation", "params", "why"),
    [
        ("inference", "s3", "GetObject", {"Bucket": BUCKET, "Key": "captured/default/x"}, "s3:GetObject"),
        ("inference", "s3", "PutObject", {"Bucket": BUCKET, "Key": "models/default/v9/model.joblib"}, "PutObject"),
        ("batch", "s3", "DeleteObject", {"Bucket": BUCKET, "Key": "batch/output/default/x"}, "DeleteObject"),
        ("drift", "s3", "PutObject", {"Bucket": BUCKET, "Key": "models/default/v1/metadata.json"}, "PutObject"),
        ("starter", "sqs", "SendMessage", {"QueueUrl": QUEUE, "MessageBody": "x"}, "sqs:SendMessage"),
        ("feedback", "lambda", "UpdateAlias", {"FunctionName": "loopml-local-inference"}, "lambda:UpdateAlias"),
        ("retrain", "cloudwatch", "DeleteAlarms", {"AlarmNames": ["someone-elses-alarm"]}, "DeleteAlarms"),
        ("inference", "s3", "GetObject", {"Bucket": "another-bucket", "Key": "models/x"}, "another-bucket"),
    ],
)
def test_anything_else_is_refused_naming_the_action_and_resource(
    function: str, service: str, operation: str, params: dict[str, object], why: str
) -> None:
    refused = denial(policy(function), service, operation, params)
    assert refused is not None and why in refused

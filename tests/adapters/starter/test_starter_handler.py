"""The starter function against moto: real-shaped S3-in-SQS events in, reports and executions out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from moto import mock_aws

from loopml.adapters.s3 import S3ObjectStore
from loopml.data import write_csv
from loopml.registry import ModelRegistry, serialize_bundle
from loopml.retrain.models import RetrainInput
from loopml.training import TrainedModel
from loopml.uploads import parse_notification
from loopml_dev import datasets
from loopml_dev.local.context import StubContext
from tests.conftest import RAW_S3_EVENT, ROOT, load_handler, make_metadata

EVENTS = ROOT / "events" / "starter"
BUCKET = "loopml-test-models"
WAIT = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.fixture
def deployed(aws_env: None, monkeypatch: pytest.MonkeyPatch, trained: TrainedModel) -> Iterator[tuple[ModuleType, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="loopml-test-retrain", definition=json.dumps(WAIT), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
        meta = registry.register(make_metadata(trained), serialize_bundle(trained.bundle))
        registry.set_alias("default", "champion", meta.version, actor="test", reason="first")
        monkeypatch.setenv("MODEL_BUCKET", BUCKET)
        monkeypatch.setenv("RETRAIN_STATE_MACHINE_ARN", arn)
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "starter")
        yield load_handler("starter"), s3


def test_every_sample_event_parses_through_the_handler_models() -> None:
    files = sorted(EVENTS.glob("*.json"))
    assert {p.name for p in files} >= {"sqs_upload.json", "sqs_test_event.json", "scheduled_weekly.json"}
    for path in files:
        data = json.loads(path.read_text())
        if "Records" in data:
            for record in data["Records"]:
                for upload in parse_notification(record["body"]):
                    assert upload.key.startswith("incoming/")
        else:
            RetrainInput.parse(data)
    (upload,) = parse_notification(_event("sqs_upload.json")["Records"][0]["body"])
    assert upload.key == "incoming/default/loans 2026-11(1).csv"
    assert parse_notification(_event("sqs_test_event.json")["Records"][0]["body"]) == []


def test_an_uploaded_file_starts_the_retraining(deployed: tuple[ModuleType, Any]) -> None:
    module, s3 = deployed
    event = _event("sqs_upload.json")
    key = unquote_plus(json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"])
    s3.put_object(Bucket=BUCKET, Key=key, Body=write_csv(datasets.loan_default(300, seed=4)))

    assert module.handler(event, StubContext("starter", memory_mb=2048, timeout_s=300)) == {"batchItemFailures": []}

    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key + ".started.json")["Body"].read())
    sfn = boto3.client("stepfunctions")
    described = sfn.describe_execution(executionArn=report["execution_arn"])
    given = json.loads(described["input"])
    assert given == {"model": "default", "reason": f"upload: s3://{BUCKET}/{key}", "data_uri": f"s3://{BUCKET}/{key}"}
    assert module.handler(_event("sqs_test_event.json"), StubContext("starter", memory_mb=2048, timeout_s=300)) == {
        "batchItemFailures": []
    }


def test_a_second_upload_is_refused_while_one_runs(deployed: tuple[ModuleType, Any]) -> None:
    module, s3 = deployed
    data = write_csv(datasets.loan_default(300, seed=4))
    for key in ("incoming/default/a.csv", "incoming/default/b.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        body = {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": len(data)}},
                }
            ]
        }
        event = {"Records": [{**_event("sqs_test_event.json")["Records"][0], "body": json.dumps(body)}]}
        assert module.handler(event, StubContext("starter", memory_mb=2048, timeout_s=300)) == {"batchItemFailures": []}
    refused = json.loads(s3.get_object(Bucket=BUCKET, Key="incoming/default/b.csv.refused.json")["Body"].read())
    assert refused["status"] == "refused" and "already running" in refused["reason"]


def test_the_weekly_schedule_starts_a_retraining(deployed: tuple[ModuleType, Any]) -> None:
    module, _ = deployed
    result = module.handler(_event("scheduled_weekly.json"), StubContext("starter", memory_mb=2048, timeout_s=300))
    assert result["status"] == "started" and result["model"] == "default"


def test_a_poison_message_fails_alone(deployed: tuple[ModuleType, Any]) -> None:
    module, _ = deployed
    good = _event("sqs_test_event.json")["Records"][0]
    poison = {**good, "messageId": "poison-1", "body": "not json"}
    assert module.handler({"Records": [good, poison]}, StubContext("starter", memory_mb=2048, timeout_s=300)) == {
        "batchItemFailures": [{"itemIdentifier": "poison-1"}]
    }


def test_the_declared_schedule_is_off_by_default() -> None:
    from loopml.topology import TOPOLOGY

    (weekly,) = TOPOLOGY.function("starter").schedules
    assert (weekly.name, weekly.rate_minutes, weekly.enabled) == ("weekly", 10080, False)
    assert weekly.input == _event("scheduled_weekly.json")
    assert Path(ROOT / "functions" / "starter" / "app.py").is_file()


def test_a_raw_s3_event_is_one_named_error_not_a_key_error(deployed: tuple[ModuleType, Any]) -> None:
    from loopml.errors import UnsupportedEvent

    module, _ = deployed
    with pytest.raises(UnsupportedEvent, match=r"the starter function serves SQS batches.*Records from 'aws:s3'"):
        module.handler(RAW_S3_EVENT, StubContext("starter"))

"""The batch function against moto: a real-shaped S3-in-SQS event in, scored file and report out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from moto import mock_aws

from loopml.adapters.s3 import MultipartSink, S3ObjectStore
from loopml.batch.models import BatchJob
from loopml.data import write_csv
from loopml.registry import ModelRegistry, serialize_bundle
from loopml.training import TrainedModel
from loopml.uploads import parse_notification
from loopml_dev import datasets
from loopml_dev.local.context import StubContext
from tests.conftest import RAW_S3_EVENT, ROOT, load_handler, make_metadata

EVENTS = ROOT / "events" / "batch"
BUCKET = "loopml-test-models"


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.fixture
def deployed(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, trained: TrainedModel, tmp_path: Any
) -> Iterator[tuple[ModuleType, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
        meta = registry.register(make_metadata(trained), serialize_bundle(trained.bundle))
        registry.set_alias("default", "champion", meta.version, actor="test", reason="first")
        monkeypatch.setenv("MODEL_BUCKET", BUCKET)
        monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("CHUNK_ROWS", "100")
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batch")
        yield load_handler("batch"), s3


def test_every_sample_event_parses_through_the_handler_models() -> None:
    files = sorted(EVENTS.glob("*.json"))
    assert {p.name for p in files} >= {"sqs_batch_input.json", "sqs_test_event.json"}
    uploads = [
        u for path in files for r in json.loads(path.read_text())["Records"] for u in parse_notification(r["body"])
    ]
    (upload,) = uploads
    assert upload.key == "batch/input/default/applications 2026-11.csv"
    assert BatchJob.from_key(upload.key).scored_key == "batch/output/default/applications 2026-11.scored.csv"


def test_an_uploaded_file_is_scored_with_its_bad_rows_reported(deployed: tuple[ModuleType, Any]) -> None:
    module, s3 = deployed
    event = _event("sqs_batch_input.json")
    key = unquote_plus(json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"])
    columns = datasets.loan_default(250, seed=30)
    columns["age"][100] = "unknown"
    s3.put_object(Bucket=BUCKET, Key=key, Body=write_csv(columns))

    assert module.handler(event, StubContext("batch", memory_mb=2048, timeout_s=900)) == {"batchItemFailures": []}

    out = s3.get_object(Bucket=BUCKET, Key="batch/output/default/applications 2026-11.scored.csv")
    rows = list(csv.DictReader(io.StringIO(out["Body"].read().decode())))
    assert len(rows) == 249 and out["ContentType"] == "text/csv"
    report = json.loads(
        s3.get_object(Bucket=BUCKET, Key="batch/output/default/applications 2026-11.errors.json")["Body"].read()
    )
    assert report["summary"]["rows"] == 250 and report["summary"]["rejected"] == 1
    assert report["errors"] == [{"row": 101, "line": 102, "field": "age", "reason": "expected a number"}]
    assert module.handler(_event("sqs_test_event.json"), StubContext("batch", memory_mb=2048, timeout_s=900)) == {
        "batchItemFailures": []
    }


def test_large_outputs_go_up_in_parts(deployed: tuple[ModuleType, Any]) -> None:
    _, s3 = deployed
    sink = MultipartSink(s3, BUCKET, "batch/output/default/big.scored.csv", "text/csv", part_bytes=5 * 1024 * 1024)
    chunk = b"x" * (3 * 1024 * 1024)
    for _ in range(4):
        sink.write(chunk)
    sink.close()
    body = s3.get_object(Bucket=BUCKET, Key="batch/output/default/big.scored.csv")["Body"].read()
    assert len(body) == 12 * 1024 * 1024
    aborted = MultipartSink(s3, BUCKET, "batch/output/default/never.csv", "text/csv", part_bytes=1)
    aborted.write(b"partial")
    aborted.abort()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/output/default/never")


def test_a_raw_s3_event_is_one_named_error_not_a_key_error(deployed: tuple[ModuleType, Any]) -> None:
    from loopml.errors import UnsupportedEvent

    module, _ = deployed
    with pytest.raises(UnsupportedEvent, match=r"the batch function serves SQS batches.*Records from 'aws:s3'"):
        module.handler(RAW_S3_EVENT, StubContext("batch"))

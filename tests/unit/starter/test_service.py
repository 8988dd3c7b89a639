"""The starter's decisions on uploads (rejected, started, refused, duplicate, ignored) and the schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from loopml.data import write_csv
from loopml.errors import InvalidInput, ModelNotFound
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.starter.service import UploadStarter
from loopml.training import TrainedModel
from loopml.uploads import Upload
from loopml_dev import datasets
from loopml_dev.memory import MemoryObjectStore
from tests.unit.library.uploads_store import BUCKET, upload, with_champion

NOW = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)
ARN = "arn:aws:states:us-east-1:123456789012:execution:loopml-test-retrain:default-upload-20261125T183000"


class FakeStart:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.requests: list[RetrainInput] = []

    def __call__(self, request: RetrainInput, trigger: str) -> str:
        if self.refuse:
            raise RetrainingInProgress("a retraining of 'default' is already running: default-20261125T1815")
        self.requests.append(request)
        return ARN


@pytest.fixture
def setup(trained: TrainedModel) -> tuple[MemoryObjectStore, UploadStarter, FakeStart]:
    bucket, registry, _ = with_champion(trained)
    start = FakeStart()
    return bucket, UploadStarter(bucket, registry, start, 10_000_000, clock=lambda: NOW), start


def _good() -> bytes:
    return write_csv(datasets.loan_default(300, seed=4))


def test_a_good_upload_starts_a_retraining_once(setup: Any) -> None:
    bucket, starter, start = setup
    outcome = starter.handle(upload(bucket, "incoming/default/fresh data.csv", _good()))
    assert outcome.action == "started" and outcome.report_key == "incoming/default/fresh data.csv.started.json"
    (request,) = start.requests
    assert request.model == "default"
    assert request.data_uri == f"s3://{BUCKET}/incoming/default/fresh data.csv"
    assert request.reason == f"upload: s3://{BUCKET}/incoming/default/fresh data.csv"
    report = bucket.json(outcome.report_key)
    assert report["status"] == "started" and report["execution_arn"] == ARN and report["rows"] == 300
    assert report["execution_name"] == "default-upload-20261125T183000" and report["champion_version"] == 1
    # a redelivered notification does not start a second one
    again = starter.handle(Upload(bucket=BUCKET, key="incoming/default/fresh data.csv", size=1))
    assert again.action == "duplicate" and len(start.requests) == 1


def test_a_bad_upload_is_rejected_with_a_report_and_never_started(setup: Any) -> None:
    bucket, starter, start = setup
    columns = datasets.loan_default(300, seed=4)
    columns["credit_score"][6] = "excellent"
    outcome = starter.handle(upload(bucket, "incoming/default/bad.csv", write_csv(columns)))
    assert outcome.action == "rejected" and not start.requests
    report = bucket.json("incoming/default/bad.csv.rejected.json")
    assert report["status"] == "rejected" and report["problems_total"] == 1
    assert report["problems"] == [
        {"problem": "expected a number", "row": 7, "column": "credit_score", "value": "excellent"}
    ]
    assert bucket.content_types["incoming/default/bad.csv.rejected.json"] == "application/json"


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("incoming/loose.csv", "incoming/<model>/<file>"),
        ("incoming/Bad_Model/a.csv", "model name 'Bad_Model' is invalid"),
        ("incoming/default/a.xlsx", "unsupported file type"),
        ("incoming/nobody/a.csv", "model 'nobody' has no alias 'champion'"),
    ],
)
def test_uploads_that_cannot_be_checked_are_rejected(setup: Any, key: str, needle: str) -> None:
    bucket, starter, start = setup
    outcome = starter.handle(upload(bucket, key, _good()))
    assert outcome.action == "rejected" and not start.requests
    assert needle in bucket.json(key + ".rejected.json")["problems"][0]["problem"]


def test_oversized_uploads_are_rejected_before_reading(setup: Any, trained: TrainedModel) -> None:
    bucket, _, start = setup
    _, registry, _ = with_champion(trained)
    small = UploadStarter(bucket, registry, start, max_upload_bytes=100, clock=lambda: NOW)
    outcome = small.handle(upload(bucket, "incoming/default/big.csv", _good()))
    assert outcome.action == "rejected" and "reads at most 100" in outcome.detail


def test_a_running_retraining_is_a_refusal_not_a_retry(trained: TrainedModel) -> None:
    bucket, registry, _ = with_champion(trained)
    starter = UploadStarter(bucket, registry, FakeStart(refuse=True), 10_000_000, clock=lambda: NOW)
    outcome = starter.handle(upload(bucket, "incoming/default/a.csv", _good()))
    assert outcome.action == "refused"
    report = bucket.json("incoming/default/a.csv.refused.json")
    assert report["reason"].startswith("a retraining of 'default' is already running")


def test_reports_and_other_prefixes_are_ignored(setup: Any) -> None:
    bucket, starter, start = setup
    for key in ("incoming/default/a.csv.rejected.json", "incoming/default/a.csv.started.json", "batch/input/x.csv"):
        assert starter.handle(upload(bucket, key, b"{}")).action == "ignored"
    assert starter.handle(Upload(bucket="other", key="incoming/default/a.csv", size=1)).action == "ignored"
    assert not start.requests


def test_the_schedule_starts_with_its_input(setup: Any) -> None:
    _, starter, start = setup
    result = starter.scheduled({"model": "default", "reason": "scheduled retraining"})
    assert result == {"status": "started", "model": "default", "execution_arn": ARN}
    assert start.requests[0].reason == "scheduled retraining" and start.requests[0].data_uri is None
    with pytest.raises(InvalidInput, match="reason"):
        starter.scheduled({"model": "default"})
    with pytest.raises(ModelNotFound):
        starter.scheduled({"model": "nobody", "reason": "x"})

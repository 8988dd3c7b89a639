"""The drift function against moto: API, schedule and Step Functions events in; reports in S3, executions
in Step Functions and EMF metrics out."""

from __future__ import annotations

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
from loopml.capture import CapturedRow
from loopml.drift.models import DriftRunReport, EvaluateRequest, is_scheduled, parse_invocation
from loopml.feedback import layout
from loopml.registry import ModelRegistry
from loopml.training import TrainedModel
from loopml_dev.local.context import StubContext
from tests.conftest import ROOT, load_handler
from tests.unit.drift.helpers import captured_rows, version_metadata

BUCKET = "loopml-test-models"
EVENTS = ROOT / "events" / "drift"
WAIT = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}


Context = partial(StubContext, "drift", memory_mb=2048, timeout_s=300)


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text())
    data.update(changes)
    return data


def post(body: Any) -> dict[str, Any]:
    return event("post_evaluate.json", body=json.dumps(body))


def get_latest(query: dict[str, str] | None) -> dict[str, Any]:
    return event("get_latest.json", queryStringParameters=query, multiValueQueryStringParameters=None)


def store_rows(store: S3ObjectStore, rows: list[CapturedRow]) -> None:
    """Captured predictions and their labels in the feedback layout, one object per hour."""
    by_hour: dict[datetime, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for r in rows:
        hour = r.timestamp.replace(minute=0, second=0, microsecond=0)
        preds, labels = by_hour.setdefault(hour, ([], []))
        preds.append(
            {
                "kind": "prediction",
                "schema_version": 1,
                "request_id": "req",
                "latency_ms": 0.3,
                **r.model_dump(mode="json", exclude={"label", "label_source", "label_received_at"}),
            }
        )
        if r.label is not None:
            labels.append(
                {
                    "kind": "feedback",
                    "feedback_id": f"fb-{r.prediction_id}",
                    "prediction_id": r.prediction_id,
                    "label": r.label,
                    "source": "user",
                    "received_at": (r.timestamp + timedelta(minutes=5)).isoformat(),
                }
            )
    for hour, (preds, labels) in by_hour.items():
        store.put(keys.captured_key("default", "predictions", hour, [hour.isoformat()]), layout.encode(preds))
        if labels:
            store.put(keys.captured_key("default", "feedback", hour, [hour.isoformat()]), layout.encode(labels))


class Deployed:
    def __init__(self, module: ModuleType, store: S3ObjectStore, sfn: Any, arn: str) -> None:
        self.module, self.store, self.sfn, self.arn = module, store, sfn, arn

    def call(self, evt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        out = self.module.handler(evt, Context())
        return out["statusCode"], json.loads(out["body"])

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.module.handler(payload, Context())
        return result

    def executions(self, status: str | None = None) -> list[dict[str, Any]]:
        extra = {"statusFilter": status} if status else {}
        return list(self.sfn.list_executions(stateMachineArn=self.arn, **extra)["executions"])


@pytest.fixture
def deployed(aws_env: None, monkeypatch: pytest.MonkeyPatch, trained: TrainedModel) -> Iterator[Deployed]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        store = S3ObjectStore(s3, BUCKET)
        registry = ModelRegistry(store)
        meta = registry.register(version_metadata(trained), b"not a real artifact")
        registry.set_alias("default", "champion", meta.version, "test", "first")
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="loopml-test-retrain", definition=json.dumps(WAIT), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        for name, value in {
            "MODEL_BUCKET": BUCKET,
            "RETRAIN_STATE_MACHINE_ARN": arn,
            "POWERTOOLS_SERVICE_NAME": "drift",
            "POWERTOOLS_METRICS_NAMESPACE": "loopml",
        }.items():
            monkeypatch.setenv(name, value)
        yield Deployed(load_handler("drift"), store, sfn, arn)


def now_rows(trained: TrainedModel, **kwargs: Any) -> list[CapturedRow]:
    return captured_rows(trained, 400, start=datetime.now(UTC) - timedelta(hours=1), **kwargs)


def test_every_sample_event_parses_through_the_handlers_input_model() -> None:
    files = sorted(EVENTS.glob("*.json"))
    assert {f.name for f in files} >= {
        "post_evaluate.json",
        "post_evaluate_window.json",
        "get_latest.json",
        "scheduled.json",
        "stepfunctions_evaluate.json",
    }
    for path in files:
        data = json.loads(path.read_text())
        if "httpMethod" in data:
            if data["httpMethod"] == "POST":
                EvaluateRequest.model_validate_json(data["body"])
            else:
                assert data["queryStringParameters"]["model"]
        elif is_scheduled(data):
            assert data["detail"] == {}
        else:
            parse_invocation(data)


def test_drifted_traffic_reports_alerts_and_starts_a_retraining(
    deployed: Deployed, trained: TrainedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    store_rows(deployed.store, now_rows(trained, covariate_shift=1.0, labelled=0.3))
    status, summary = deployed.call(event("post_evaluate.json"))
    assert status == 200, summary
    assert summary["data_drift"] == "drifted" and summary["n_rows"] == 400 and summary["n_labelled"] > 50
    assert summary["trigger"]["action"] == "started"
    [execution] = deployed.executions()
    assert execution["name"] == summary["trigger"]["execution_name"]
    given = json.loads(deployed.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert given["model"] == "default" and given["reason"].startswith("drift: dataset drift:")
    report = DriftRunReport.model_validate_json(deployed.store.get(summary["report_key"]))
    assert report.summary.run_id == summary["run_id"]
    head = deployed.store._s3.head_object(Bucket=BUCKET, Key=summary["html_key"])
    assert head["ContentType"].startswith("text/html")
    assert deployed.store.list_keys("starts/default/")
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for e in emf for d in e["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"DatasetDriftShare", "DriftedFeatures", "FeatureDriftScore", "FeaturePsi", "LiveAccuracy"} <= names
    assert {"RetrainingStarted", "PerformanceRegressed", "DataDriftDetected"} <= names
    feature_lines = [e for e in emf if "feature" in e]
    assert {e["feature"] for e in feature_lines} >= {"age", "credit_score"}
    assert all(e["model"] == "default" for e in emf)

    # the execution is still running: the next evaluation skips, then the cooldown takes over
    status, again = deployed.call(event("post_evaluate.json"))
    assert (again["trigger"]["action"], again["trigger"]["code"]) == ("skipped", "retraining_running")
    deployed.sfn.stop_execution(executionArn=execution["executionArn"])
    status, third = deployed.call(event("post_evaluate.json"))
    assert (third["trigger"]["action"], third["trigger"]["code"]) == ("skipped", "cooldown")
    assert len(deployed.executions()) == 1

    status, latest = deployed.call(get_latest({"model": "default"}))
    assert status == 200 and latest["run_id"] == third["run_id"]
    status, by_version = deployed.call(get_latest({"model": "default", "model_version": "1"}))
    assert status == 200 and by_version["run_id"] == third["run_id"]


def test_latest_before_any_run_and_bad_queries(deployed: Deployed) -> None:
    status, body = deployed.call(get_latest({"model": "default"}))
    assert status == 404 and "no drift evaluation" in body["message"]
    status, body = deployed.call(get_latest(None))
    assert status == 422 and body["detail"][0]["loc"] == ["query", "model"]
    status, body = deployed.call(get_latest({"model": "default", "model_version": "0"}))
    assert status == 422 and body["detail"][0]["loc"] == ["query", "model_version"]


def test_bad_bodies_name_the_field(deployed: Deployed, trained: TrainedModel) -> None:
    status, body = deployed.call(post({"model": "default", "config": {"drift": {"treshold": 0.2}}}))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "config", "drift", "treshold"]
    status, body = deployed.call(post({"model_version": 1}))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "model"]
    status, body = deployed.call(post({"model": "default", "config": {"drift": {"per_feature": {"agee": {}}}}}))
    assert status == 422 and body["detail"][0]["loc"] == ["config", "drift", "per_feature", "agee"]
    status, body = deployed.call(post({"model": "default", "model_version": 9}))
    assert status == 404 and "no version 9" in body["message"]
    status, body = deployed.call(event("post_evaluate.json", body="{not json"))
    assert status == 400


def test_window_event_and_too_little_data(deployed: Deployed, trained: TrainedModel) -> None:
    status, summary = deployed.call(event("post_evaluate_window.json"))
    assert status == 200, summary
    assert summary["n_rows"] == 0 and summary["data_drift"] == "insufficient_data"
    assert summary["trigger"]["code"] == "insufficient_data"
    assert "region" not in summary["feature_scores"]
    assert (summary["window_start"], summary["window_end"]) == ("2026-11-25T00:00:00Z", "2026-11-25T18:00:00Z")
    assert deployed.executions() == []


def test_schedule_and_step_functions_invocations(deployed: Deployed, trained: TrainedModel) -> None:
    store_rows(deployed.store, now_rows(trained, covariate_shift=1.0))
    scheduled = deployed.invoke(event("scheduled.json"))
    assert scheduled["model"] == "default" and scheduled["trigger"]["action"] == "started"
    direct = deployed.invoke(event("stepfunctions_evaluate.json"))
    assert direct["model_version"] == 1 and direct["trigger"]["code"] == "disabled"
    from loopml.errors import InvalidInput

    with pytest.raises(InvalidInput, match="model"):
        deployed.invoke({"model": "Not Valid"})


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ({"end": "0001-01-01T00:00:00Z"}, "must be between 2000-01-01"),
        ({"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z"}, "must be between 2000-01-01"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "longer than 744 hours"),
        ({"start": "2020-01-01T00:00:00Z"}, "longer than 744 hours"),
        ({"end": "0001-01-01T00:00:01+14:00"}, "must be between 2000-01-01"),
    ],
)
def test_drift_windows_are_bounded_with_the_field_named(deployed: Deployed, window: dict, says: str) -> None:
    status, body = deployed.call(post({"model": "default", **window}))
    assert status == 422 and says in json.dumps(body), body
    assert deployed.executions() == []


def test_a_drift_event_of_the_wrong_shape_is_one_named_error(deployed: Deployed) -> None:
    from loopml.errors import InvalidInput

    with pytest.raises(InvalidInput, match="invalid drift evaluation input"):
        deployed.invoke({"Records": [{"eventSource": "aws:s3"}]})

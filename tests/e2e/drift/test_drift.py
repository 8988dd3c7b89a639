"""Drift end to end in the local stack: drifted traffic over HTTP, captured by the feedback function,
evaluated on demand and by the schedule, reports in S3, metrics in CloudWatch, and the retraining start."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loopml.adapters.s3 import S3ObjectStore
from loopml.drift.models import DriftRunReport
from loopml.feedback.reader import read_captured
from loopml.topology import TOPOLOGY, physical_name
from loopml_dev import datasets
from loopml_dev.local import LocalStack
from loopml_dev.local.up import MODEL
from tests.e2e.conftest import LogSink, call, served_stack, wait_for

pytestmark = pytest.mark.e2e

FIRST_MODEL_ROWS = 2000
TRAFFIC = 600
BATCH = 200
LABELS = 200
RETRAIN_DECLARED = any(m.name == "retrain" for m in TOPOLOGY.state_machines)
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def function_log() -> LogSink:
    return LogSink()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, function_log: LogSink) -> Iterator[LocalStack]:
    with served_stack(
        tmp_path_factory.mktemp("drift-state"), FIRST_MODEL_ROWS, alarm_interval_s=0, function_log=function_log
    ) as local:
        yield local


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svg = 0
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svg += tag == "svg"
        if tag == "section" and dict(attrs).get("id"):
            self.ids.append(str(dict(attrs)["id"]))


def test_drifted_traffic_is_detected_reported_and_retrains(
    stack: LocalStack, function_log: LogSink, tmp_path: Path
) -> None:
    started = time.monotonic()
    store = S3ObjectStore(stack.client("s3"), physical_name(stack.stage, "models"))
    status, body = call(stack, "GET", f"/drift/latest?model={MODEL}")
    assert status == 404, body

    # drifted traffic over HTTP, in batches, then labels for some of it
    columns = datasets.loan_default(TRAFFIC, seed=21, covariate_shift=1.0)
    rows = datasets.rows(columns)
    ids: list[str] = []
    for i in range(0, TRAFFIC, BATCH):
        status, body = call(stack, "POST", "/predict", {"instances": rows[i : i + BATCH]})
        assert status == 200, body
        ids += [p["prediction_id"] for p in body["predictions"]]
    since = datetime.now(UTC) - timedelta(minutes=10)

    def captured() -> list[Any]:
        found = read_captured(store, MODEL, since, datetime.now(UTC) + timedelta(minutes=1))
        return found if len(found) == TRAFFIC else []

    wait_for(captured, 45, what="all predictions captured in S3", log=function_log)
    truth = columns[datasets.TARGET]
    for i in range(0, LABELS, 100):
        items = [{"prediction_id": ids[j], "label": truth[j]} for j in range(i, i + 100)]
        status, body = call(stack, "POST", "/feedback", {"items": items})
        assert status == 202, body

    def labelled() -> list[Any]:
        found = read_captured(store, MODEL, since, datetime.now(UTC) + timedelta(minutes=1), labelled_only=True)
        return found if len(found) == LABELS else []

    wait_for(labelled, 45, what="labels joined", log=function_log)
    traffic_done = time.monotonic()

    # on demand: the alert, the reports and the retraining start
    status, summary = call(
        stack, "POST", "/drift/evaluate", {"model": MODEL, "config": {"trigger": {"retrain": {"approval": True}}}}
    )
    assert status == 200, summary
    assert summary["n_rows"] == TRAFFIC and summary["n_labelled"] == LABELS
    assert summary["data_drift"] == "drifted" and summary["share_drifted"] >= 0.5
    assert {"age", "credit_score", "income"} <= set(summary["drifted_features"])
    assert any(a.startswith("dataset drift:") for a in summary["alerts"])
    assert summary["performance"] in ("ok", "regressed") and summary["live_metrics"]["accuracy"] is not None
    decision = summary["trigger"]
    sfn = stack.client("stepfunctions")
    if RETRAIN_DECLARED:
        assert (decision["action"], decision["code"]) == ("started", "started"), decision
        described = sfn.describe_execution(executionArn=decision["execution_arn"])
        given = json.loads(described["input"])
        assert given["model"] == MODEL and given["reason"].startswith("drift: dataset drift:")
        assert given["approval"] is True
    else:
        assert decision["code"] == "not_configured"

    report = DriftRunReport.model_validate_json(store.get(summary["report_key"]))
    assert report.summary.run_id == summary["run_id"] and report.bias is not None
    html = store.get(summary["html_key"]).decode()
    page = Page()
    page.feed(html)
    assert page.svg >= len(report.data_drift.features)
    assert {"run", "performance", "quality", "prediction-drift"} <= set(page.ids)
    for feature in report.data_drift.features:
        assert f'id="feature-{feature.name}"' in html
    if CHROMIUM.exists():
        path = tmp_path / "report.html"
        path.write_text(html)
        shot = tmp_path / "report.png"
        subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", path.as_uri()],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert shot.exists() and shot.stat().st_size > 10_000

    # the hourly schedule, fired now: same data, but the guards hold the second start back
    result = stack.trigger_schedule("evaluate-default", "drift")
    assert not result.function_error, result.payload[:2000]
    scheduled = json.loads(result.payload)
    assert scheduled["data_drift"] == "drifted"
    if RETRAIN_DECLARED:
        assert scheduled["trigger"]["action"] == "skipped"
        assert scheduled["trigger"]["code"] in ("retraining_running", "cooldown")
        machine = stack.deployment.state_machines["retrain"]
        running = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert [e["name"] for e in running] == [decision["execution_name"]]
    status, latest = call(stack, "GET", f"/drift/latest?model={MODEL}")
    assert status == 200 and latest["run_id"] == scheduled["run_id"]
    history = store.list_keys(f"models/{MODEL}/drift/v{latest['model_version']}/history/")
    assert len(history) == 2

    # scores reached CloudWatch through EMF
    cloudwatch = stack.client("cloudwatch")

    def published() -> bool:
        stack.flush_metrics()
        names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="loopml")["Metrics"]}
        return {"DatasetDriftShare", "FeatureDriftScore", "RetrainingStarted"} <= names

    wait_for(published, 15, what="drift metrics in CloudWatch", log=function_log)
    if RETRAIN_DECLARED:
        # the retraining accepted the trigger's input (its Start step validates it), then it is stopped
        arn = decision["execution_arn"]

        def start_step_done() -> bool:
            events = sfn.get_execution_history(executionArn=arn)["events"]
            exited = [e for e in events if (e.get("stateExitedEventDetails") or {}).get("name") == "Start"]
            failed = sfn.describe_execution(executionArn=arn)["status"] == "FAILED"
            assert not failed or exited, f"retraining failed in its Start step: {events}"
            return bool(exited)

        wait_for(start_step_done, 40, what="the retraining's Start step", log=function_log)
        sfn.stop_execution(executionArn=decision["execution_arn"])  # no need to let it train on in the background
    print(f"traffic+capture {traffic_done - started:.1f}s, total {time.monotonic() - started:.1f}s")

"""Uploads under incoming/default/ in the local stack: S3 notification -> uploads queue -> starter ->
a rejection report for the bad file, the retraining state machine started for the good one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from loopml.data import write_csv
from loopml.topology import TOPOLOGY, Topology, physical_name
from loopml_dev import datasets
from loopml_dev.local import LocalStack
from loopml_dev.local.up import MODEL
from tests.e2e.conftest import LogSink, served_stack, wait_for

pytestmark = pytest.mark.e2e

STARTER_TOPOLOGY = Topology(
    buckets=TOPOLOGY.buckets,
    queues=(TOPOLOGY.queue("capture"), TOPOLOGY.queue("uploads")),
    secrets=TOPOLOGY.secrets,
    functions=(TOPOLOGY.function("inference"), TOPOLOGY.function("retrain"), TOPOLOGY.function("starter")),
    state_machines=TOPOLOGY.state_machines,
)


@pytest.fixture(scope="module")
def log() -> LogSink:
    return LogSink()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, log: LogSink) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("starter-state")
    with served_stack(
        state,
        1500,
        topology=STARTER_TOPOLOGY,
        alarm_interval_s=0,
        function_log=log,
        env_overrides={"inference": {"CACHE_DIR": str(state / "model-cache")}},
    ) as local:
        yield local


def test_uploads_are_validated_then_start_the_retraining(stack: LocalStack, log: LogSink) -> None:
    started = time.monotonic()
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    bucket = physical_name(stack.stage, "models")

    def report(key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            return found
        except s3.exceptions.NoSuchKey:
            return None

    bad = datasets.loan_default(300, seed=61)
    bad["income"][11] = "plenty"
    bad["default"][20] = 7
    s3.put_object(Bucket=bucket, Key="incoming/default/bad batch.csv", Body=write_csv(bad))
    good_key = "incoming/default/good batch.csv"
    s3.put_object(Bucket=bucket, Key=good_key, Body=write_csv(datasets.loan_default(800, seed=62)))

    rejected = wait_for(lambda: report("incoming/default/bad batch.csv.rejected.json"), 45, "the rejection report", log)
    assert rejected["status"] == "rejected" and rejected["problems_total"] == 2
    assert {(p["row"], p["column"], p["problem"].split(" (")[0]) for p in rejected["problems"]} == {
        (12, "income", "expected a number"),
        (21, "default", "label is not one of the champion's classes [0, 1]"),
    }
    started_report = wait_for(lambda: report(good_key + ".started.json"), 45, "the retraining start", log)
    arn = started_report["execution_arn"]
    given = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert given == {
        "model": MODEL,
        "reason": f"upload: s3://{bucket}/{good_key}",
        "data_uri": f"s3://{bucket}/{good_key}",
    }
    assert report("incoming/default/bad batch.csv.started.json") is None
    machine = stack.deployment.state_machines["retrain"]
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]]
    assert names == [started_report["execution_name"]]  # the bad file started nothing

    def start_step_done() -> bool:
        events = sfn.get_execution_history(executionArn=arn)["events"]
        return any((e.get("stateExitedEventDetails") or {}).get("name") == "Start" for e in events)

    wait_for(start_step_done, 40, "the retraining's Start step (its input accepted)", log)
    sfn.stop_execution(executionArn=arn)  # no need to train on in the background

    # the weekly schedule (off by default, fired by hand here) is refused: this window already has one
    # (still running, or stopped: moto may not have finished stopping it yet)
    result = stack.trigger_schedule("weekly", "starter")
    assert not result.function_error, result.payload[:2000]
    scheduled = json.loads(result.payload)
    assert scheduled["status"] == "refused", scheduled
    assert "already started in this 15-minute window" in scheduled["reason"] or "already running" in scheduled["reason"]
    print(f"starter e2e {time.monotonic() - started:.1f}s")

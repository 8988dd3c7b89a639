"""The retraining start policy against moto: Step Functions executions and the claims in S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.stepfunctions import RetrainExecutions
from loopml.errors import NotFound, VersionConflict
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import RetrainTrigger, StartPolicy, TriggerAction, start_or_refuse

WAIT = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}
NOW = datetime(2026, 11, 25, 13, 37, 5, tzinfo=UTC)
DRIFT = StartPolicy()  # 6 h cooldown, 2 a day


@pytest.fixture
def aws(aws_env: None) -> Iterator[tuple[Any, S3ObjectStore, str]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="retrain", definition=json.dumps(WAIT), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        yield sfn, S3ObjectStore(s3, "models"), arn


def test_running_lists_only_the_models_own_executions(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, _, arn = aws
    executions = RetrainExecutions(sfn, arn)
    executions.start("default-1", {"model": "default", "reason": "drift: x"})
    executions.start("default-extra-1", {"model": "default-extra", "reason": "drift: x"})
    done = executions.start("default-2", {"model": "default", "reason": "drift: y"})
    sfn.stop_execution(executionArn=done)
    assert executions.running("default") == ["default-1"]
    assert executions.running("default-extra") == ["default-extra-1"]
    with pytest.raises(VersionConflict):
        executions.start("default-1", {"model": "default", "reason": "drift: other"})


def test_a_missing_state_machine_is_not_found(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, store, arn = aws
    executions = RetrainExecutions(sfn, arn + "-gone")
    with pytest.raises(NotFound):
        executions.start("x", {"model": "default", "reason": "r"})
    with pytest.raises(NotFound):
        executions.running("default")
    decision = RetrainTrigger(store, executions, lambda: NOW).start("default", "run", "drift", ["drift: x"], DRIFT, {})
    assert (decision.action, decision.code) == (TriggerAction.failed, "start_failed")
    assert store.list_keys("starts/") == []  # the failed start released its claim


def test_claims_are_conditional_writes_in_s3(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, store, arn = aws
    trigger = RetrainTrigger(store, RetrainExecutions(sfn, arn), lambda: NOW)
    first = trigger.start("default", "r1", "drift", ["drift: x"], DRIFT, {"canary_percent": 20})
    assert first.action is TriggerAction.started
    assert first.execution_name == "default-drift-20261125T120000"
    given = json.loads(sfn.describe_execution(executionArn=first.execution_arn)["input"])
    assert given == {"canary_percent": 20, "model": "default", "reason": "drift: x"}
    [key] = store.list_keys("starts/default/")
    assert key == "starts/default/20261125T120000Z.json"
    record = json.loads(store.get(key))
    assert record["execution_arn"] == first.execution_arn and record["run_id"] == "r1"
    with pytest.raises(VersionConflict):
        store.put(key, b"{}", if_none_match=True)
    sfn.stop_execution(executionArn=first.execution_arn)
    again = trigger.start("default", "r2", "drift", ["drift: x"], DRIFT, {})
    assert again.code == "cooldown"
    zero = trigger.start("default", "r3", "drift", ["x"], StartPolicy(cooldown_hours=0, max_starts_per_day=5), {})
    assert zero.action is TriggerAction.started and zero.execution_name == "default-drift-20261125T133705"


def test_two_uploads_in_one_window_start_one_execution(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, store, arn = aws
    clock = [NOW]
    trigger = RetrainTrigger(store, RetrainExecutions(sfn, arn), lambda: clock[0])
    uploads = StartPolicy(cooldown_hours=0, max_starts_per_day=24, window_minutes=15)
    request = RetrainInput(model="default", reason="upload: s3://models/incoming/default/a.csv")
    first = start_or_refuse(trigger, request, "upload", uploads, "a")
    assert first.endswith(":default-upload-20261125T133000")
    sfn.stop_execution(executionArn=first)  # even once it has ended, the window's start is taken
    clock[0] = NOW.replace(minute=44)
    with pytest.raises(RetrainingInProgress, match="already started in this period"):
        start_or_refuse(trigger, request, "upload", uploads, "b")
    clock[0] = NOW.replace(minute=45)
    assert start_or_refuse(trigger, request, "upload", uploads, "c").endswith(":default-upload-20261125T134500")

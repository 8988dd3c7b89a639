"""Step Functions as the retraining starter, and the trigger's claims in S3, against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.stepfunctions import StepFunctionsStarter
from loopml.drift.models import TriggerAction, TriggerPolicy
from loopml.drift.trigger import RetrainTrigger, execution_name, slot_start
from loopml.errors import NotFound, VersionConflict

WAIT = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}
NOW = datetime(2026, 11, 25, 13, 37, 5, tzinfo=UTC)


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
    starter = StepFunctionsStarter(sfn, arn)
    starter.start("default-1", {"model": "default", "reason": "drift: x"})
    starter.start("default-extra-1", {"model": "default-extra", "reason": "drift: x"})
    done = starter.start("default-2", {"model": "default", "reason": "drift: y"})
    sfn.stop_execution(executionArn=done)
    assert starter.running("default") == ["default-1"]
    assert starter.running("default-extra") == ["default-extra-1"]
    with pytest.raises(VersionConflict):
        starter.start("default-1", {"model": "default", "reason": "drift: other"})


def test_a_missing_state_machine_is_not_found(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, store, arn = aws
    starter = StepFunctionsStarter(sfn, arn + "-gone")
    with pytest.raises(NotFound):
        starter.start("x", {"model": "default", "reason": "r"})
    with pytest.raises(NotFound):
        starter.running("default")
    decision = RetrainTrigger(store, starter, lambda: NOW).decide(
        "default", "run", ["drift: x"], TriggerPolicy(), False
    )
    assert (decision.action, decision.code) == (TriggerAction.failed, "start_failed")


def test_claims_are_conditional_writes_in_s3(aws: tuple[Any, S3ObjectStore, str]) -> None:
    sfn, store, arn = aws
    trigger = RetrainTrigger(store, StepFunctionsStarter(sfn, arn), lambda: NOW)
    first = trigger.decide("default", "r1", ["drift: x"], TriggerPolicy(), False)
    assert first.action is TriggerAction.started
    assert first.execution_name == "default-drift-20261125T120000"
    [key] = store.list_keys("models/default/drift/triggers/")
    assert key == "models/default/drift/triggers/20261125T120000Z.json"
    record = json.loads(store.get(key))
    assert record["execution_arn"] == first.execution_arn and record["run_id"] == "r1"
    with pytest.raises(VersionConflict):
        store.put(key, b"{}", if_none_match=True)
    sfn.stop_execution(executionArn=first.execution_arn)
    again = trigger.decide("default", "r2", ["drift: x"], TriggerPolicy(), False)
    assert again.code == "cooldown"
    zero = trigger.decide("default", "r3", ["drift: x"], TriggerPolicy(cooldown_hours=0, max_starts_per_day=5), False)
    assert zero.action is TriggerAction.started and zero.execution_name == "default-drift-20261125T133705"


def test_slots_and_names() -> None:
    assert slot_start(NOW, timedelta(hours=6)) == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert slot_start(NOW, timedelta(0)) == NOW
    long = "m" * 63
    assert len(execution_name(long, NOW)) == 80

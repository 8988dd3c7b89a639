"""Each step as the state machine runs it: the state grows by one key per step."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from loopml.errors import ConfigurationError, IntegrityError, InvalidInput
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import ApprovalDecision, ExecutionStatusChange, VersionMetrics
from loopml_dev import datasets
from tests.unit.retrain.conftest import BASE_KEY, MODEL, World, captured_rows

LENIENT = {"tolerance": 0.5}


def _actions(world: World, run_id: str) -> list[str]:
    return [e.action for e in world.registry.history(MODEL) if e.details.get("run_id") == run_id]


ENOUGH = VersionMetrics(predictions=500, invocations=500, errors=0, degraded=0, latency_p99_ms=20, mean_confidence=0.8)


def _deployed(world: World, name: str = "run-1", **fields: Any) -> dict:
    state = world.through_evaluate(name, **{**LENIENT, **fields})
    assert state["evaluation"]["passed"], state["evaluation"]["reasons"]
    state = world.step("register", state, "registered")
    return world.step("deploy", state, "canary")


def test_promotion(world: World) -> None:
    world.feedback.rows = captured_rows(datasets.loan_default(200, seed=9), world.clock.now - timedelta(days=1))
    state = _deployed(world)
    assert state["dataset"]["feedback_rows"] == 200
    assert state["dataset"]["train"]["uri"] == "s3://models/datasets/default/retrain/run-1/train.csv"
    version = state["registered"]["version"]
    assert world.registry.alias(MODEL, "challenger").version == version == 2
    canary = state["canary"]
    assert world.alias.routing() == ("1", {canary["lambda_version"]: 0.1})
    assert world.alias.versions[canary["lambda_version"]]["MODEL_VERSION"] == "2"
    assert len(world.metrics.alarms) == 3

    world.metrics.by_version = {1: ENOUGH, 2: ENOUGH}
    state = world.step("check", state, "verdict")
    assert state["verdict"]["decision"] == "promote", state["verdict"]["reasons"]
    state = world.step("promote", state, "outcome")

    assert state["outcome"] == {
        "outcome": "promoted",
        "model": MODEL,
        "version": 2,
        "champion_version": 2,
        "reason": "",
    }
    assert world.alias.routing() == (canary["lambda_version"], {})
    assert world.registry.resolve(MODEL, "champion") == 2
    assert world.registry.metadata(MODEL, 2).parent_version == 1
    assert _actions(world, "run-1") == ["canary_started", "promoted"]
    assert world.metrics.alarms == set()
    assert world.workflow.lock.current(MODEL) is None


def test_gated_out_challenger_is_recorded_and_unlocks(world: World) -> None:
    weak = {"model_type": "random_forest", "n_estimators": 1, "max_depth": 1}
    state = world.through_evaluate(params=weak)
    assert not state["evaluation"]["passed"]
    state = world.step("reject", state, "outcome")
    assert (
        state["outcome"]["outcome"] == "rejected"
        and "roc_auc on the recent holdout regressed" in state["outcome"]["reason"]
    )
    assert _actions(world, "run-1") == ["rejected"]
    assert world.registry.versions(MODEL) == [1]
    assert world.workflow.lock.current(MODEL) is None


def test_unhealthy_canary_is_rolled_back(world: World) -> None:
    state = _deployed(world)
    world.metrics.in_alarm = {state["canary"]["alarms"][0]}
    world.metrics.by_version = {1: ENOUGH, 2: VersionMetrics(predictions=500, invocations=500, degraded=60)}
    state = world.step("check", state, "verdict")
    assert state["verdict"]["decision"] == "rollback"
    state = world.step("rollback", state, "outcome")
    assert world.alias.routing() == ("1", {})
    assert world.registry.resolve(MODEL, "champion") == 1
    assert _actions(world, "run-1") == ["canary_started", "rolled_back", "rejected"]
    rejected = world.registry.history(MODEL)[-1]
    assert rejected.version == 2 and "degraded" in rejected.reason and "alarm" in rejected.reason


def test_online_accuracy_counts_when_enough_labels(world: World) -> None:
    state = _deployed(world)
    started = world.clock.now
    world.feedback.rows = captured_rows(datasets.loan_default(40, seed=12), started)
    world.clock.now += timedelta(minutes=2)
    verdict = world.step("check", state, "verdict")["verdict"]
    assert verdict["online_accuracy"]["labels"] == 40
    assert 0 <= verdict["online_accuracy"]["canary"] <= 1


def test_a_silent_canary_is_extended_then_inconclusive_and_the_champion_serves(world: World) -> None:
    state = _deployed(world, bake_minutes=1)
    assert state["run"]["max_bake_seconds"] == 4 * state["run"]["bake_seconds"] == 240
    verdict = world.step("check", state, "verdict")["verdict"]
    assert verdict["decision"] == "extend"
    world.clock.now += timedelta(seconds=state["run"]["max_bake_seconds"])
    state = world.step("check", state, "verdict")
    assert state["verdict"]["decision"] == "inconclusive"
    state = world.step("inconclusive", state, "outcome")
    assert state["outcome"]["outcome"] == "inconclusive"
    assert world.alias.routing() == ("1", {}) and world.registry.resolve(MODEL, "champion") == 1
    event = world.registry.history(MODEL)[-1]
    assert event.action == "inconclusive" and "the canary served 0 predictions; need 50" in event.reason
    assert world.workflow.lock.current(MODEL) is None


def test_a_run_for_a_model_this_deployment_does_not_serve_touches_nothing(world: World) -> None:
    from loopml.retrain.errors import ModelNotServed

    world.alias.weights = {"7": 0.1}  # another model's canary in flight
    with pytest.raises(ModelNotServed, match="'nope' is not served"):
        world.started("run-x", model="nope")
    assert world.alias.routing() == ("1", {"7": 0.1}) and world.alias.routes == []
    assert world.store.list_keys("models/nope/") == [] and world.store.list_keys("retrain/locks/") == []


def test_cleanup_leaves_weights_it_did_not_set(world: World) -> None:
    state = world.started()
    world.alias.weights = {"7": 0.1}  # a canary that is not this run's
    state["error"] = {"Error": "InsufficientData", "Cause": "too few rows"}
    world.step("cleanup", state, "outcome")
    assert world.alias.routing() == ("1", {"7": 0.1}) and world.alias.routes == []
    world.alias.weights = {}
    deployed = _deployed(world, "run-2")
    world.alias.route("1", "9", 0.2)  # someone moved live to another canary since
    deployed["error"] = {"Error": "TransientError", "Cause": "x"}
    world.step("cleanup", deployed, "outcome")
    assert world.alias.routing() == ("1", {"9": 0.2})


def test_cleanup_after_a_half_done_deploy(world: World) -> None:
    state = _deployed(world)
    del state["canary"]  # the deploy step failed after routing: its result never reached the state
    state["error"] = {"Error": "TransientError", "Cause": '{"errorMessage": "lambda throttled", "errorType": "T"}'}
    state = world.step("cleanup", state, "outcome")
    assert state["outcome"]["outcome"] == "failed"
    assert state["outcome"]["reason"] == "TransientError: lambda throttled"
    assert world.alias.routing() == ("1", {})
    assert world.metrics.alarms == set()
    assert _actions(world, "run-1")[-1] == "failed"
    assert world.workflow.lock.current(MODEL) is None


def test_cleanup_before_anything_was_deployed(world: World) -> None:
    state = world.started()
    state["error"] = {"Error": "InsufficientData", "Cause": "too few rows"}
    state = world.step("cleanup", state, "outcome")
    assert state["outcome"]["reason"] == "InsufficientData: too few rows"
    assert world.alias.routes == []


def test_rejected_approval(world: World) -> None:
    state = world.through_evaluate(approval=True, **LENIENT)
    world.step("request_approval", state, "ignored", task_token="tok-1")
    approval = world.store.get("retrain/default/run-1/approval.json").decode()
    world.workflow.approvals.decide(approval, ApprovalDecision(decision="reject", reason="not this week"), "ops")
    state["approval_error"] = {"Error": "ApprovalRejected", "Cause": None}
    state = world.step("reject", state, "outcome")
    assert state["outcome"]["reason"] == "approval rejected by ops: not this week"
    assert world.responder.calls == [("failure", "tok-1", "ApprovalRejected", "not this week")]


def test_approval_timeout(world: World) -> None:
    state = world.through_evaluate(approval=True, approval_timeout_minutes=1, **LENIENT)
    world.step("request_approval", state, "ignored", task_token="tok-1")
    state["approval_error"] = {"Error": "States.Timeout", "Cause": None}
    assert world.step("reject", state, "outcome")["outcome"]["reason"] == "no approval within 1 minutes"


def test_request_approval_needs_the_token(world: World) -> None:
    state = world.through_evaluate(approval=True)
    with pytest.raises(InvalidInput, match="task token"):
        world.step("request_approval", state, "ignored")


def test_second_run_is_refused(world: World) -> None:
    world.started("run-1")
    with pytest.raises(RetrainingInProgress, match="run-1"):
        world.started("run-2")


def test_deploy_guards(world: World) -> None:
    state = world.through_evaluate(**LENIENT)
    state = world.step("register", state, "registered")
    world.alias.weights = {"9": 0.1}
    with pytest.raises(ConfigurationError, match="already routes"):
        world.step("deploy", state, "canary")
    world.alias.weights = {}
    world.alias.latest["MODEL_NAME"] = "churn"
    with pytest.raises(ConfigurationError, match="serves model 'churn'"):
        world.step("deploy", state, "canary")


def test_register_and_deploy_are_idempotent(world: World) -> None:
    state = _deployed(world)
    again = world.step("register", {k: v for k, v in state.items() if k != "registered"}, "registered")
    assert again["registered"] == state["registered"]
    assert world.registry.versions(MODEL) == [1, 2]
    redeployed = world.step("deploy", {k: v for k, v in state.items() if k != "canary"}, "canary")
    assert redeployed["canary"]["lambda_version"] == state["canary"]["lambda_version"]


def test_prepare_input_errors(world: World) -> None:
    state = world.started(data_uri="s3://elsewhere/data.csv")
    with pytest.raises(InvalidInput, match="model bucket"):
        world.step("prepare", state, "dataset")
    world.workflow.lock.release(MODEL, "run-1")
    state = world.started("run-2", data_uri="s3://models/datasets/missing.csv")
    with pytest.raises(InvalidInput, match="does not exist"):
        world.step("prepare", state, "dataset")
    world.workflow.lock.release(MODEL, "run-2")
    world.store.objects[BASE_KEY] += b"\n"
    with pytest.raises(IntegrityError, match="changed since champion v1"):
        world.step("prepare", world.started("run-3"), "dataset")


def test_tampered_snapshot_is_refused(world: World) -> None:
    state = world.step("prepare", world.started(), "dataset")
    world.store.objects["datasets/default/retrain/run-1/train.csv"] += b"1,2,3\n"
    with pytest.raises(IntegrityError, match="snapshot"):
        world.step("train", state, "challenger")


def test_malformed_state_is_named(world: World) -> None:
    with pytest.raises(InvalidInput, match="step prepare: the execution state is malformed: run"):
        world.step("prepare", {"model": MODEL}, "dataset")


def _status_change(name: str, status: str, given: dict) -> ExecutionStatusChange:
    return ExecutionStatusChange.model_validate(
        {
            "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "detail": {
                "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:retrain:{name}",
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:retrain",
                "name": name,
                "status": status,
                "input": json.dumps(given),
            },
        }
    )


def test_an_aborted_canary_is_cleaned_up_from_its_markers(world: World) -> None:
    state = _deployed(world)
    assert world.alias.routing()[1]  # the canary is taking traffic
    given = {"model": MODEL, "reason": state["run"]["reason"]}
    outcome = world.workflow.cleanup_ended(_status_change("run-1", "ABORTED", given))
    assert outcome is not None and outcome.outcome == "failed"
    assert outcome.reason.startswith("ExecutionAborted")
    assert world.alias.routing() == ("1", {})
    assert world.metrics.alarms == set()
    assert _actions(world, "run-1")[-1] == "failed"
    assert world.workflow.lock.current(MODEL) is None


def test_an_ended_execution_that_is_not_a_retraining_is_ignored(world: World) -> None:
    assert world.workflow.cleanup_ended(_status_change("other", "TIMED_OUT", {"hello": "world"})) is None
    assert world.alias.routes == []

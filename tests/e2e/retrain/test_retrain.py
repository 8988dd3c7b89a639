"""The retrain state machine, executed by moto's interpreter against the local stack's functions."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.feedback.reader import read_captured
from loopml_dev import datasets
from loopml_dev.local.apigw import ADMIN_TOKEN_HEADER
from tests.e2e.conftest import wait_for
from tests.e2e.retrain.conftest import MODEL, Harness, run_name

pytestmark = pytest.mark.e2e

FAST = {"bake_minutes": 0.05, "canary_percent": 50}
# The tests' traffic is tens of requests: margins sized for it (the statistics are unit-tested).
FEW = {
    "min_predictions": 15,
    "max_error_rate_increase": 0.5,
    "max_degraded_rate_increase": 0.5,
    "max_confidence_drop": 0.5,
}
# The champion's validation rows hold the old concept: after a concept shift they cannot judge.
CONCEPT_CHANGED = {"golden_tolerance": 1.0, "log_loss_tolerance": 1.0}
# Drills of the canary, approvals, faults and locks: past the gate whatever the earlier drills left in the
# captured data (the gate's own drills keep it: a worse challenger, a label flood).
GATE_OPEN = {"tolerance": 1.0, "bias_tolerance": 1.0, **CONCEPT_CHANGED}


def _predict(harness: Harness, rows: list[dict[str, Any]]) -> list[int]:
    versions = []
    for row in rows:
        status, body = _post(harness, "/predict", {"instance": row})
        assert status == 200, body
        versions.append(body["model_version"])
    return versions


def test_happy_path_promotes_a_better_challenger(harness: Harness) -> None:
    before = harness.champion()
    champion_lambda, _ = harness.alias()
    shifted = datasets.loan_default(2500, seed=5, concept_shift=1.0)
    uri = harness.upload("shifted", shifted)
    captured = harness.capture_labelled(datasets.loan_default(300, seed=6, concept_shift=1.0), before)
    name = run_name("happy")
    payload = {
        "model": MODEL,
        "reason": "concept drift",
        "data_uri": uri,
        "bake_minutes": 0.15,
        "canary_percent": 50,
        "canary_policy": FEW,
        **CONCEPT_CHANGED,
    }

    arn = harness.start(name, payload)
    _wait_for_canary(harness, arn)
    # Real traffic during the bake: both versions answer, their EMF metrics reach CloudWatch.
    served = _predict(harness, datasets.rows(datasets.loan_default(80, seed=8, concept_shift=1.0)))
    result = harness.wait(arn)

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["outcome"] == "promoted"
    after = harness.champion()
    assert after == output["version"] > before
    assert set(served) == {before, after}
    primary, weights = harness.alias()
    assert weights == {}
    assert primary != champion_lambda
    assert harness.model_version_of(primary) == str(after)
    assert set(_predict(harness, datasets.rows(datasets.loan_default(5, seed=9)))) == {after}
    actions = [e.action for e in harness.history(name)]
    assert actions[0] == "canary_started" and actions[-1] == "promoted"
    lineage = harness.registry.metadata(MODEL, after).training_data
    assert lineage.uri.endswith(f"/retrain/{name}/train.csv")
    assert lineage.sha256 == harness.sha_of(lineage.uri)
    started = next(e for e in harness.history(name) if e.action == "canary_started")
    assert started.details["evaluation"]["passed"] is True
    assert started.details["dataset"]["feedback_rows"] == captured == 300
    verdict = next(e for e in harness.history(name) if e.action == "promoted").details["verdict"]
    assert verdict["canary"]["predictions"] > 0 and verdict["champion"]["predictions"] > 0, verdict
    assert verdict["canary"]["invocations"] > 0 and verdict["canary"]["errors"] == 0, verdict


def test_worse_challenger_is_gated_out(harness: Harness) -> None:
    before, alias_before = harness.champion(), harness.alias()
    weak = {"model_type": "random_forest", "n_estimators": 1, "max_depth": 1}
    name = run_name("worse")

    result = harness.run(name, {"model": MODEL, "reason": "weak params", "params": weak, **FAST})

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["outcome"] == "rejected"
    assert "roc_auc on the recent holdout regressed" in output["reason"]
    assert harness.champion() == before
    assert harness.alias() == alias_before
    (event,) = harness.history(name)
    assert event.action == "rejected" and event.version is None
    assert event.details["evaluation"]["challenger"]["roc_auc"] < event.details["evaluation"]["champion"]["roc_auc"]


def _still_running(harness: Harness, arn: str) -> None:
    """While waiting for a step: an execution that ended without reaching it fails the test with its reason."""
    found = harness.sfn.describe_execution(executionArn=arn)
    if found["status"] != "RUNNING":
        ended = found.get("error") or found.get("output")
        raise AssertionError(f"the execution ended {found['status']} before that: {ended} {found.get('cause', '')}")


def _wait_for_canary(harness: Harness, arn: str, timeout_s: float = 90.0) -> tuple[str, dict[str, float]]:
    def deployed() -> tuple[str, dict[str, float]] | None:
        alias = harness.alias()
        if alias[1]:
            return alias
        _still_running(harness, arn)
        return None

    found: tuple[str, dict[str, float]] = wait_for(deployed, timeout_s, "the canary deployed", interval_s=0.2)
    return found


def test_unhealthy_canary_is_rolled_back(harness: Harness) -> None:
    """A canary whose model artifact was tampered with serves degraded answers: rolled back."""
    before = harness.champion()
    # The drill's premise: the champion has served, so its verified copy is in the cache the canary shares.
    # (Run first on a fresh stack, a canary that cold-started before the champion had nothing to fall back on.)
    assert set(_predict(harness, datasets.rows(datasets.loan_default(1, seed=7)))) == {before}
    name = run_name("canary-fails")
    payload = {"model": MODEL, "reason": "canary drill", "bake_minutes": 0.15, "canary_percent": 50, **GATE_OPEN}
    arn = harness.start(name, payload)
    champion_lambda, weights = _wait_for_canary(harness, arn)
    (canary_lambda,) = weights
    canary_version = int(str(harness.model_version_of(canary_lambda)))
    assert weights[canary_lambda] == pytest.approx(0.5)
    artifact = f"models/{MODEL}/v{canary_version}/model.onnx"
    harness.store.put(artifact, harness.store.get(artifact)[:-100] + b"tampered" * 12)

    served = _predict(harness, datasets.rows(datasets.loan_default(30, seed=8)))
    result = harness.wait(arn)

    assert canary_version not in served  # the canary fell back to its last verified copy: degraded answers
    assert result["status"] == "FAILED", result
    assert result["error"] == "CanaryRolledBack"
    assert harness.alias() == (champion_lambda, {})
    assert harness.champion() == before
    events = {e.action: e for e in harness.history(name)}
    assert {"canary_started", "rolled_back", "rejected"} <= set(events)
    # Its answers name the fallback's version, but its metrics count against the canary's: every one of them
    # degraded, against none of the champion's, which a handful of requests shows beyond doubt.
    assert "degraded_share: canary worse by 1.0000" in events["rolled_back"].reason, events["rolled_back"].reason
    assert events["rejected"].version == canary_version


def test_canary_alarm_rolls_back(harness: Harness) -> None:
    """A canary alarm in ALARM (evaluated locally from the canary's metrics) is enough to roll back."""
    before = harness.champion()
    name = run_name("canary-alarm")
    drill = {"model": MODEL, "reason": "alarm drill", "bake_minutes": 0.1, "canary_percent": 10, **GATE_OPEN}
    arn = harness.start(name, drill)
    champion_lambda, weights = _wait_for_canary(harness, arn)
    (canary_lambda,) = weights
    canary_version = str(harness.model_version_of(canary_lambda))
    dimensions = [
        {"Name": "model", "Value": MODEL},
        {"Name": "model_version", "Value": canary_version},
        {"Name": "service", "Value": "inference"},
    ]
    # What the canary's EMF lines would say if its model failed to load and it served a fallback.
    harness.stack.client("cloudwatch").put_metric_data(
        Namespace="loopml",
        MetricData=[{"MetricName": "Degraded", "Dimensions": dimensions, "Value": 3.0, "Unit": "Count"}],
    )

    result = harness.wait(arn)

    assert result["status"] == "FAILED" and result["error"] == "CanaryRolledBack", result
    assert harness.alias() == (champion_lambda, {})
    assert harness.champion() == before
    rolled_back = next(e for e in harness.history(name) if e.action == "rolled_back")
    assert f"alarm {harness.inference}-canary-{MODEL}-v{canary_version}-degraded is in ALARM" in rolled_back.reason
    alarms = harness.stack.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{harness.inference}-canary-")
    assert alarms["MetricAlarms"] == []  # the canary's alarms go with it


def _post(harness: Harness, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        harness.stack.api_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", ADMIN_TOKEN_HEADER: harness.stack.admin_token},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _approval_id(harness: Harness, run_id: str, arn: str, timeout_s: float = 90.0) -> str:
    key = f"retrain/{MODEL}/{run_id}/approval.json"

    def requested() -> bool:
        if key in harness.store.list_keys(key):
            return True
        _still_running(harness, arn)
        return False

    wait_for(requested, timeout_s, "an approval requested")
    return harness.store.get(key).decode()


def test_rejected_approval_deploys_nothing(harness: Harness) -> None:
    before, alias_before = harness.champion(), harness.alias()
    name = run_name("approval-rejected")
    arn = harness.start(name, {"model": MODEL, "reason": "needs a human", "approval": True, **FAST, **GATE_OPEN})
    approval = _approval_id(harness, name, arn)

    status, body = _post(harness, f"/approvals/{approval}", {"decision": "reject", "reason": "not this week"})
    assert status == 200, body
    assert body["decision"] == "reject"
    result = harness.wait(arn)

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["outcome"] == "rejected"
    assert "not this week" in output["reason"]
    assert harness.champion() == before and harness.alias() == alias_before
    status, body = _post(harness, f"/approvals/{approval}", {"decision": "approve"})
    assert status == 409, body
    status, body = _post(harness, "/approvals/not-an-id", {"decision": "approve"})
    assert status == 422, body


def test_approved_challenger_is_rolled_out(harness: Harness) -> None:
    before = harness.champion()
    name = run_name("approval-granted")
    given = {"model": MODEL, "reason": "approved rollout", "approval": True, "canary_policy": FEW, **FAST, **GATE_OPEN}
    arn = harness.start(name, given | {"bake_minutes": 0.15})
    approval = _approval_id(harness, name, arn)

    status, body = _post(harness, f"/approvals/{approval}", {"decision": "approve", "reason": "looks good"})
    assert status == 200, body
    _wait_for_canary(harness, arn)
    _predict(harness, datasets.rows(datasets.loan_default(80, seed=18)))
    result = harness.wait(arn)

    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["outcome"] == "promoted"
    assert harness.champion() > before
    started = next(e for e in harness.history(name) if e.action == "canary_started")
    assert started.details["approval"]["decision"] == "approve"


def test_approval_timeout_rejects(harness: Harness) -> None:
    before = harness.champion()
    name = run_name("approval-timeout")
    payload = {"model": MODEL, "reason": "nobody answers", "approval": True, "approval_timeout_minutes": 0.05}

    result = harness.run(name, {**payload, **FAST, **GATE_OPEN})

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["outcome"] == "rejected" and "no approval within" in output["reason"]
    assert harness.champion() == before


def test_transient_error_is_retried_and_failures_clean_up(harness: Harness) -> None:
    """train fails once with TransientError (retried); check fails for good: cleanup restores live."""
    before, alias_before = harness.champion(), harness.alias()
    harness.stack.redeploy("retrain", {"FAULT_INJECTION": "train:TransientError:1,check:IntegrityError:1"})
    try:
        name = run_name("faults")
        result = harness.run(name, {"model": MODEL, "reason": "fault drill", **FAST, **GATE_OPEN})
    finally:
        harness.stack.redeploy("retrain", {"FAULT_INJECTION": ""})

    assert result["status"] == "FAILED", result
    assert result["error"] == "RetrainingFailed"
    faults = harness.store.list_keys(f"retrain/{MODEL}/{name}/faults/")
    assert [k.rsplit("/", 1)[1] for k in faults] == ["check-0", "train-0"]
    assert harness.alias() == alias_before
    assert harness.champion() == before
    events = {e.action: e for e in harness.history(name)}
    assert events["failed"].reason.startswith("IntegrityError: injected IntegrityError in step check")
    assert "canary_started" in events
    assert harness.store.list_keys(f"retrain/locks/{MODEL}.json") == []


def test_aborted_run_is_cleaned_up(harness: Harness) -> None:
    """An execution stopped mid-canary runs no Catch: its status-change event restores the champion."""
    before, (primary_before, _) = harness.champion(), harness.alias()
    name = run_name("aborted")
    drill = {"model": MODEL, "reason": "abort drill", "bake_minutes": 2, "canary_percent": 20, **GATE_OPEN}
    arn = harness.start(name, drill)
    try:
        _wait_for_canary(harness, arn)
    except AssertionError:
        raise AssertionError(str(harness.sfn.describe_execution(executionArn=arn))) from None
    harness.sfn.stop_execution(executionArn=arn)

    wait_for(lambda: not harness.alias()[1], 30, "the canary's weights removed", interval_s=0.5)
    assert harness.alias() == (primary_before, {})
    assert harness.champion() == before
    # the watcher restores the routing first, then records the failure and releases the lock
    failed = wait_for(lambda: [e for e in harness.history(name) if e.action == "failed"], 30, "the abort recorded")
    assert failed[-1].reason.startswith("ExecutionAborted"), harness.history(name)
    wait_for(lambda: harness.store.list_keys(f"retrain/locks/{MODEL}.json") == [], 30, "the lock released")


def test_concurrent_triggers_run_once(harness: Harness) -> None:
    from loopml.adapters.stepfunctions import RetrainExecutions
    from loopml.retrain.errors import RetrainingInProgress
    from loopml.retrain.models import RetrainInput
    from loopml.retrain.trigger import RetrainTrigger, StartPolicy, start_or_refuse

    versions_before = harness.registry.versions(MODEL)
    first = harness.start(run_name("concurrent-a"), {"model": MODEL, "reason": "trigger a", **FAST, **GATE_OPEN})
    second = harness.start(run_name("concurrent-b"), {"model": MODEL, "reason": "trigger b", **FAST, **GATE_OPEN})
    results = [harness.wait(first), harness.wait(second)]

    statuses = sorted((r["status"], r.get("error")) for r in results)
    # One run is refused; the other bakes with no traffic at all, so it can only end inconclusive.
    assert statuses == [("FAILED", "CanaryInconclusive"), ("FAILED", "RetrainingInProgress")], results
    assert len(harness.registry.versions(MODEL)) == len(versions_before) + 1
    # Two triggers in the same window: Step Functions starts one execution.
    request = RetrainInput(model=MODEL, reason="drift", bake_minutes=0.05)
    clock = [datetime(2026, 1, 1, 12, 7, tzinfo=UTC)]
    trigger = RetrainTrigger(harness.store, RetrainExecutions(harness.sfn, harness.arn), lambda: clock[0])
    policy = StartPolicy(cooldown_hours=0, window_minutes=15)
    arn = start_or_refuse(trigger, request, "upload", policy, "a")
    clock[0] = clock[0].replace(minute=14)
    with pytest.raises(RetrainingInProgress):
        start_or_refuse(trigger, request, "upload", policy, "b")
    assert harness.wait(arn)["status"] in ("SUCCEEDED", "FAILED")


def test_invalid_input_fails_with_a_clear_error(harness: Harness) -> None:
    result = harness.run(run_name("invalid"), {"model": "Bad Name", "reason": "", "canary_percent": 80, "extra": 1})

    assert result["status"] == "FAILED"
    assert result["error"] == "InvalidInput"
    cause = json.loads(result["cause"])["errorMessage"]
    for field in ("model", "reason", "canary_percent", "extra"):
        assert field in cause


def test_no_traffic_to_the_canary_is_inconclusive_and_the_champion_keeps_serving(harness: Harness) -> None:
    """Drill: a canary nobody calls is never promoted (default policy: 50 predictions per side)."""
    before, (primary, _) = harness.champion(), harness.alias()
    name = run_name("silent-canary")
    result = harness.run(
        name, {"model": MODEL, "reason": "no traffic drill", **FAST, "tolerance": 1.0, "bias_tolerance": 1.0}
    )

    assert result["status"] == "FAILED" and result["error"] == "CanaryInconclusive", result
    assert harness.champion() == before and harness.alias() == (primary, {})
    event = harness.history(name)[-1]
    assert event.action == "inconclusive"
    assert "the canary served 0 predictions; need 50" in event.reason
    assert event.details["verdict"]["canary"]["predictions"] == 0 and event.details["verdict"]["baked_minutes"] >= 0.2


def test_an_unknown_model_is_refused_while_another_models_canary_is_in_flight(harness: Harness) -> None:
    """Drill: `loopml retrain --model nope` and a console run for it touch nothing of `default`."""
    import subprocess
    import sys
    from pathlib import Path
    from urllib.parse import urlsplit

    name = run_name("in-flight")
    drill = {"model": MODEL, "reason": "long canary", "bake_minutes": 1, "canary_percent": 20, **GATE_OPEN}
    arn = harness.start(name, drill)
    try:
        _, weights = _wait_for_canary(harness, arn)
        port = str(urlsplit(harness.stack.aws_endpoint).port)
        cli = str(Path(sys.executable).with_name("loopml"))
        done = subprocess.run(
            [cli, "retrain", "--model", "nope", "--aws-port", port], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "'nope' is not served by this deployment" in done.stderr, (
            done.stdout,
            done.stderr,
        )
        console = harness.run(run_name("nope"), {"model": "nope", "reason": "console run for a model not served"})
        assert console["status"] == "FAILED" and console["error"] == "ModelNotServed", console
        assert harness.alias()[1] == weights  # the canary in flight is untouched
        assert harness.store.list_keys("models/nope/") == []
    finally:
        harness.sfn.stop_execution(executionArn=arn)
    wait_for(lambda: not harness.alias()[1], 30, "the canary's weights removed", interval_s=0.5)


def test_a_flood_of_random_labels_cannot_promote_a_model(harness: Harness) -> None:
    """Drill: 500 random labels posted through /feedback for recent predictions, then a retraining."""
    import random

    before = harness.champion()
    rows = datasets.rows(datasets.loan_default(500, seed=31))
    pids = []
    for start in range(0, 500, 100):
        status, body = _post(harness, "/predict", {"instances": rows[start : start + 100]})
        assert status == 200, body
        pids += [p["prediction_id"] for p in body["predictions"]]
    chance = random.Random(7)
    for start in range(0, 500, 100):
        items = [
            {"prediction_id": p, "label": chance.choice([0, 1]), "source": "user"} for p in pids[start : start + 100]
        ]
        status, body = _post(harness, "/feedback", {"items": items})
        assert status == 202, body

    def labelled() -> bool:
        now = datetime.now(UTC)
        rows = read_captured(harness.store, MODEL, now - timedelta(hours=1), now, labelled_only=True)
        return len([r for r in rows if r.prediction_id in set(pids)]) == 500

    wait_for(labelled, 60, "all 500 labels stored", interval_s=0.5)

    name = run_name("poisoned")
    result = harness.run(name, {"model": MODEL, "reason": "drift after a label flood", **FAST})

    assert harness.champion() == before, result
    assert json.loads(result.get("output") or "{}").get("outcome") != "promoted"
    events = harness.history(name)
    said = " ".join(e.reason + json.dumps(e.details) for e in events)
    assert "rate limit: " in said and "user labels from ip:127.0.0.1 dropped" in said, said[:2000]


def test_a_training_file_sorted_by_its_target_gets_a_holdout_with_every_class(harness: Harness) -> None:
    columns = datasets.loan_default(1500, seed=41)
    order = sorted(range(1500), key=lambda i: columns[datasets.TARGET][i])
    uri = harness.upload("sorted-by-target", {k: [v[i] for i in order] for k, v in columns.items()})
    name = run_name("sorted")
    result = harness.run(name, {"model": MODEL, "reason": "sorted upload", "data_uri": uri, "feedback_days": 0, **FAST})

    events = harness.history(name)
    assert result.get("error") != "RetrainingFailed", (result, [e.reason for e in events])
    dataset = next(e for e in events if "dataset" in e.details).details["dataset"]
    assert dataset["holdout_method"] == "stratified"
    holdout = harness.store.get(dataset["holdout"]["uri"].split("/", 3)[3]).decode().splitlines()
    target = holdout[0].split(",").index(datasets.TARGET)
    assert {line.split(",")[target] for line in holdout[1:]} == {"0", "1"}

"""The retrain function's handler: step dispatch, and the approvals route."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopml.errors import VersionConflict
from loopml.retrain.models import ApprovalOutcome
from loopml_dev.local.context import StubContext
from tests.conftest import load_handler

EVENTS = Path(__file__).resolve().parents[3] / "events" / "retrain"


class FakeApprovals:
    def __init__(self) -> None:
        self.decided: list[tuple[str, str, str]] = []

    def decide(self, approval: str, decision: Any, actor: str) -> ApprovalOutcome:
        if self.decided:
            raise VersionConflict("already answered")
        self.decided.append((approval, decision.decision, actor))
        return ApprovalOutcome(
            approval_id=approval,
            decision=decision.decision,
            reason=decision.reason,
            actor=actor,
            decided_at="2026-11-25T18:00:00Z",
        )


class FakeWorkflow:
    def __init__(self) -> None:
        self.approvals = FakeApprovals()
        self.steps: list[Any] = []

    def run_step(self, request: Any) -> dict[str, Any]:
        self.steps.append(request)
        return {"step": request.step}

    def cleanup_ended(self, change: Any) -> Any:
        self.steps.append(change)
        from loopml.retrain.models import Outcome

        return Outcome(outcome="failed", model="default", reason=f"Execution{change.detail.status}")


Context = partial(StubContext, "retrain", memory_mb=3008, timeout_s=900)


@pytest.fixture
def app(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MODEL_BUCKET", "models")
    monkeypatch.setenv("INFERENCE_FUNCTION", "loopml-test-inference")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    module = load_handler("retrain")
    module.workflow = FakeWorkflow()  # type: ignore[attr-defined]
    return module


def test_steps_are_dispatched(app: ModuleType) -> None:
    event = json.loads((EVENTS / "step_check.json").read_text())
    assert app.handler(event, Context()) == {"step": "check"}
    assert app.workflow.steps[0].state["run"]["run_id"] == "default-20261125T1800"


def test_approval_route(app: ModuleType) -> None:
    event = json.loads((EVENTS / "post_approval.json").read_text())
    response = app.handler(event, Context())
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["decision"] == "approve"
    assert app.workflow.approvals.decided == [
        ("3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c", "approve", "arn:aws:sts::123456789012:assumed-role/loopml-ops/ops")
    ]
    assert app.handler(event, Context())["statusCode"] == 409


def test_approval_body_is_validated(app: ModuleType) -> None:
    event = json.loads((EVENTS / "post_approval.json").read_text())
    event["body"] = json.dumps({"decision": "maybe"})
    response = app.handler(event, Context())
    assert response["statusCode"] == 422
    assert "decision" in response["body"]


def test_an_aborted_execution_goes_to_the_cleanup(app: ModuleType) -> None:
    event = json.loads((EVENTS / "execution_aborted.json").read_text())
    assert app.handler(event, Context()) == {
        "outcome": "failed",
        "model": "default",
        "version": None,
        "champion_version": None,
        "reason": "ExecutionABORTED",
    }
    change = app.workflow.steps[0]
    assert change.detail.name == "default-20261125T1800"
    assert json.loads(change.detail.input)["model"] == "default"


@pytest.mark.parametrize(
    ("wrong", "error", "says"),
    [
        ({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}, "UnsupportedEvent", "task input"),
        ({"Records": [{"eventSource": "aws:sqs"}]}, "UnsupportedEvent", "Records from 'aws:sqs'"),
        ({"step": "nope", "state": {}}, "InvalidInput", "invalid retrain step input: step"),
    ],
)
def test_an_event_of_the_wrong_shape_is_one_named_error(app: ModuleType, wrong: Any, error: str, says: str) -> None:
    with pytest.raises(Exception, match=says) as raised:
        app.handler(wrong, Context())
    assert type(raised.value).__name__ == error

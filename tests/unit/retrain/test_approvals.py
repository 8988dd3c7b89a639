from __future__ import annotations

from datetime import timedelta

import pytest

from loopml.errors import InvalidInput, NotFound, VersionConflict
from loopml.retrain.approvals import Approvals, approval_id
from loopml.retrain.models import ApprovalDecision
from loopml_dev.memory import MemoryObjectStore
from tests.unit.retrain.conftest import Clock, FakeResponder


def _approvals() -> tuple[Approvals, FakeResponder, Clock]:
    responder, clock = FakeResponder(), Clock()
    return Approvals(MemoryObjectStore(), responder, clock), responder, clock


def test_approve_answers_the_task_once() -> None:
    approvals, responder, _ = _approvals()
    request = approvals.request("m", "run-1", "drift", "token-1", 600, {"passed": True})
    assert request.approval_id == approval_id("token-1") and "token-1" not in request.approval_id
    outcome = approvals.decide(request.approval_id, ApprovalDecision(decision="approve", reason="ok"), "ops")
    assert outcome.actor == "ops"
    assert responder.calls == [("success", "token-1", "approve")]
    with pytest.raises(VersionConflict, match="already answered"):
        approvals.decide(request.approval_id, ApprovalDecision(decision="reject"), "ops")
    assert approvals.decision(request.approval_id).decision == "approve"  # type: ignore[union-attr]


def test_reject_fails_the_task_with_its_error_name() -> None:
    approvals, responder, _ = _approvals()
    request = approvals.request("m", "run-1", "drift", "token-2", 600, {})
    approvals.decide(request.approval_id, ApprovalDecision(decision="reject", reason="not now"), "ops")
    assert responder.calls == [("failure", "token-2", "ApprovalRejected", "not now")]


def test_unknown_malformed_expired_and_abandoned() -> None:
    approvals, responder, clock = _approvals()
    with pytest.raises(NotFound):
        approvals.decide("0" * 32, ApprovalDecision(decision="approve"), "ops")
    with pytest.raises(InvalidInput, match="32 lowercase hex"):
        approvals.decide("../../etc", ApprovalDecision(decision="approve"), "ops")
    request = approvals.request("m", "run-1", "drift", "token-3", 60, {})
    clock.now += timedelta(minutes=2)
    with pytest.raises(VersionConflict, match="expired"):
        approvals.decide(request.approval_id, ApprovalDecision(decision="approve"), "ops")
    request = approvals.request("m", "run-2", "drift", "token-4", 600, {})
    responder.gone = True
    with pytest.raises(VersionConflict, match="no longer waits"):
        approvals.decide(request.approval_id, ApprovalDecision(decision="approve"), "ops")

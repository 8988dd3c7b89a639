"""Human approval of a challenger: the paused execution's task token, kept until someone decides.

``request`` stores ``approvals/<id>.json`` (``id`` is the SHA-256 of the task token, so the token itself
never appears in URLs or logs). ``decide`` (``POST /approvals/{token}`` with the id) writes
``approvals/<id>.decision.json`` with a conditional write, so exactly one decision wins, then answers
the execution: success carries the decision, a rejection fails the task with ``ApprovalRejected``.
The reason is read back from the decision object (the task failure's cause may not survive).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from loopml import keys
from loopml.errors import InvalidInput, NotFound, VersionConflict
from loopml.retrain.models import ApprovalDecision, ApprovalOutcome
from loopml.store import ObjectStore

APPROVAL_ID = re.compile(r"^[0-9a-f]{32}$")


class TaskResponder(Protocol):
    """Answers a paused Step Functions task; raises ``NotFound`` when it no longer waits."""

    def succeed(self, token: str, output: dict[str, Any]) -> None: ...

    def fail(self, token: str, error: str, cause: str) -> None: ...


class ApprovalRequest(BaseModel):
    approval_id: str
    model: str
    run_id: str
    reason: str
    task_token: str
    requested_at: datetime
    expires_at: datetime
    evaluation: dict[str, Any]


def approval_id(task_token: str) -> str:
    return hashlib.sha256(task_token.encode()).hexdigest()[:32]


def _key(approval: str, suffix: str = "") -> str:
    if not APPROVAL_ID.match(approval):
        raise InvalidInput(
            f"approval id {approval!r} is invalid: expected 32 lowercase hex characters",
            [{"loc": ["path", "token"], "msg": "expected 32 lowercase hex characters", "type": "value_error"}],
        )
    return keys.approval_key(approval, suffix)


class Approvals:
    def __init__(
        self,
        store: ObjectStore,
        responder: TaskResponder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._responder = responder
        self._clock = clock

    def request(
        self, model: str, run_id: str, reason: str, task_token: str, timeout_s: int, evaluation: dict[str, Any]
    ) -> ApprovalRequest:
        now = self._clock()
        record = ApprovalRequest(
            approval_id=approval_id(task_token),
            model=model,
            run_id=run_id,
            reason=reason,
            task_token=task_token,
            requested_at=now,
            expires_at=now + timedelta(seconds=timeout_s),
            evaluation=evaluation,
        )
        self._store.put(_key(record.approval_id), record.model_dump_json().encode())
        return record

    def pending(self, approval: str) -> ApprovalRequest:
        try:
            return ApprovalRequest.model_validate_json(self._store.get(_key(approval)))
        except NotFound:
            raise NotFound(f"no approval {approval} is waiting") from None

    def decision(self, approval: str) -> ApprovalOutcome | None:
        try:
            return ApprovalOutcome.model_validate_json(self._store.get(_key(approval, ".decision")))
        except NotFound:
            return None

    def decide(self, approval: str, decision: ApprovalDecision, actor: str) -> ApprovalOutcome:
        request = self.pending(approval)
        now = self._clock()
        if now >= request.expires_at:
            raise VersionConflict(f"approval {approval} expired at {request.expires_at.isoformat()}")
        outcome = ApprovalOutcome(
            approval_id=approval, decision=decision.decision, reason=decision.reason, actor=actor, decided_at=now
        )
        try:
            self._store.put(_key(approval, ".decision"), outcome.model_dump_json().encode(), if_none_match=True)
        except VersionConflict:
            earlier = self.decision(approval)
            already = earlier.decision if earlier else "decided"
            raise VersionConflict(f"approval {approval} was already answered ({already})") from None
        try:
            if decision.decision == "approve":
                self._responder.succeed(request.task_token, outcome.model_dump(mode="json"))
            else:
                self._responder.fail(request.task_token, "ApprovalRejected", decision.reason or "rejected")
        except NotFound:
            raise VersionConflict(
                f"approval {approval}: the execution {request.run_id} no longer waits for it"
            ) from None
        return outcome

"""Starting the retraining state machine when drift or a performance regression calls for it, under guards.

Guards, checked in this order, each one a recorded decision when it stops the start:

1. the policy is enabled and a state machine is configured;
2. no retraining of the model is running (Step Functions' running executions, read by the starter);
3. cooldown: the last start for the model is at least ``cooldown_hours`` old;
4. daily budget: fewer than ``max_starts_per_day`` starts in the last 24 hours;
5. a claim: ``models/<model>/drift/triggers/<slot>.json`` is created with a conditional write, where
   the slot is the start of the current cooldown period. Two evaluations racing past 3 and 4 (the
   schedule and an on-demand call) compete for the same object, and only the winner starts. The
   execution name is derived from the same slot, so Step Functions refuses a duplicate too.

The claims double as the ledger the cooldown and the budget are computed from. A start that fails
deletes its claim, so the next evaluation may try again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from loopml import keys
from loopml.drift.models import TriggerAction, TriggerCode, TriggerDecision, TriggerPolicy
from loopml.errors import LoopmlError, NotFound, VersionConflict
from loopml.names import validate_model_name
from loopml.store import ObjectStore

MAX_REASON = 500  # the retraining input's limit
MAX_EXECUTION_NAME = 80
DAY = timedelta(hours=24)


class RetrainStarter(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start an execution; its ARN. VersionConflict when the name is taken."""
        ...

    def running(self, model: str) -> list[str]:
        """Names of running executions retraining ``model``."""
        ...


class StartRecord(BaseModel):
    model: str
    run_id: str
    started_at: datetime
    execution_name: str
    execution_arn: str | None = None
    reason: str


def slot_start(now: datetime, cooldown: timedelta) -> datetime:
    """Start of the cooldown period ``now`` falls in (UTC epoch-aligned); ``now`` itself without cooldown."""
    now = now.astimezone(UTC).replace(microsecond=0)
    seconds = int(cooldown.total_seconds())
    if seconds <= 0:
        return now
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def execution_name(model: str, slot: datetime) -> str:
    suffix = f"-drift-{slot:%Y%m%dT%H%M%S}"
    return validate_model_name(model)[: MAX_EXECUTION_NAME - len(suffix)] + suffix


def reason_text(reasons: list[str]) -> str:
    text = "drift: " + "; ".join(r.removeprefix("drift: ") for r in reasons)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class RetrainTrigger:
    def __init__(
        self,
        store: ObjectStore,
        starter: RetrainStarter | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._starter = starter
        self._clock = clock

    def starts(self, model: str, since: datetime, cooldown: timedelta) -> list[StartRecord]:
        """Recorded starts at or after ``since``, oldest first (claims are keyed by their period's start)."""
        out = []
        for key in sorted(self._store.list_keys(keys.drift_triggers_prefix(model))):
            stamp = key.rsplit("/", 1)[-1].removesuffix(".json").split("-", 1)[0]
            try:
                slot = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            if slot + cooldown < since:  # a claim is made within its period, so it started before since
                continue
            try:
                record = StartRecord.model_validate_json(self._store.get(key))
            except NotFound:
                continue
            if record.started_at >= since:
                out.append(record)
        return sorted(out, key=lambda r: r.started_at)

    def decide(
        self, model: str, run_id: str, reasons: list[str], policy: TriggerPolicy, insufficient: bool
    ) -> TriggerDecision:
        now = self._clock()

        def decision(action: TriggerAction, code: TriggerCode, message: str, **extra: Any) -> TriggerDecision:
            return TriggerDecision(action=action, code=code, message=message, reasons=reasons, decided_at=now, **extra)

        if not reasons:
            if insufficient:
                return decision(TriggerAction.not_needed, "insufficient_data", "too few rows and labels to judge")
            return decision(TriggerAction.not_needed, "no_alert", "nothing crossed a retraining threshold")
        if not policy.enabled:
            return decision(TriggerAction.skipped, "disabled", "retraining on drift is disabled by the config")
        if self._starter is None:
            return decision(
                TriggerAction.skipped, "not_configured", "no retraining state machine is configured for this function"
            )
        try:
            running = self._starter.running(model)
        except LoopmlError as exc:
            return decision(TriggerAction.failed, "start_failed", f"could not list running retrainings: {exc}")
        if running:
            return decision(
                TriggerAction.skipped,
                "retraining_running",
                f"a retraining of {model!r} is already running ({', '.join(running)})",
                execution_name=running[0],
            )
        cooldown = timedelta(hours=policy.cooldown_hours)
        recent = self.starts(model, now - max(cooldown, DAY), cooldown)
        in_day = [r for r in recent if r.started_at > now - DAY]
        last = recent[-1] if recent else None
        if last is not None and cooldown and last.started_at + cooldown > now:
            return decision(
                TriggerAction.skipped,
                "cooldown",
                f"last retraining started {last.started_at.isoformat()} ({last.execution_name}); cooldown of "
                f"{policy.cooldown_hours:g} h until {(last.started_at + cooldown).isoformat()}",
                cooldown_until=last.started_at + cooldown,
                starts_last_24h=len(in_day),
            )
        if len(in_day) >= policy.max_starts_per_day:
            return decision(
                TriggerAction.skipped,
                "daily_budget",
                f"{len(in_day)} retrainings started in the last 24 h; the budget is {policy.max_starts_per_day}",
                starts_last_24h=len(in_day),
            )
        slot = slot_start(now, cooldown)
        name = execution_name(model, slot)
        reason = reason_text(reasons)
        key = f"{keys.drift_triggers_prefix(model)}{slot:%Y%m%dT%H%M%SZ}" + ("" if cooldown else f"-{run_id}") + ".json"
        record = StartRecord(model=model, run_id=run_id, started_at=now, execution_name=name, reason=reason)
        try:
            self._store.put(key, record.model_dump_json().encode(), if_none_match=True)
        except VersionConflict:
            return decision(
                TriggerAction.skipped,
                "already_started",
                f"another evaluation claimed this period's retraining first ({key})",
                execution_name=name,
                starts_last_24h=len(in_day),
            )
        payload: dict[str, Any] = {"model": model, "reason": reason}
        payload.update(policy.retrain.model_dump(exclude_none=True))
        try:
            arn = self._starter.start(name, payload)
        except VersionConflict:
            return decision(
                TriggerAction.skipped,
                "already_started",
                f"an execution named {name} exists already",
                execution_name=name,
                starts_last_24h=len(in_day),
            )
        except LoopmlError as exc:
            self._store.delete(key)
            return decision(TriggerAction.failed, "start_failed", f"starting {name} failed: {exc}", execution_name=name)
        self._store.put(key, record.model_copy(update={"execution_arn": arn}).model_dump_json().encode())
        return decision(
            TriggerAction.started,
            "started",
            f"started retraining {name}",
            execution_name=name,
            execution_arn=arn,
            cooldown_until=now + cooldown if cooldown else None,
            starts_last_24h=len(in_day) + 1,
        )

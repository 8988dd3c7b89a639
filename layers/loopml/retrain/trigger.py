"""Starting a retraining: one policy for every trigger (drift, uploads, the schedule, the CLI).

Guards, checked in this order, each one a recorded decision when it stops the start:

1. no retraining of the model is running (Step Functions' running executions, whoever started them);
2. cooldown: the last start for the model is at least ``cooldown_hours`` old;
3. daily budget: fewer than ``max_starts_per_day`` starts in the last 24 hours;
4. a claim: ``starts/<model>/<slot>.json`` is created with a conditional write, where the slot is the
   start of the period ``now`` falls in (the cooldown, or ``window_minutes`` when longer). Two triggers
   racing past 2 and 3 (the schedule and an on-demand call, a double upload) compete for the same
   object and only the winner starts. The execution name is derived from the same slot
   (``<model>-<trigger>-<slot>``), so Step Functions refuses a duplicate too.

The claims are the ledger the cooldown and the budget are computed from, across triggers: a start
from an upload counts against drift's cooldown. A start that fails deletes its claim, so the next
attempt may try again. Inside the workflow the model's lock (``loopml.retrain.lock``) stops any
overlap that slips through.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from loopml import keys
from loopml.errors import LoopmlError, NotFound, TransientError, VersionConflict
from loopml.names import validate_model_name
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.store import ObjectStore

MAX_REASON = 500  # the retraining input's limit
MAX_EXECUTION_NAME = 80
DAY = timedelta(hours=24)
Trigger = Literal["drift", "upload", "schedule", "cli"]


class StartPolicy(BaseModel, extra="forbid"):
    cooldown_hours: float = Field(default=6.0, ge=0, le=30 * 24, description="minimum time between two starts")
    max_starts_per_day: int = Field(default=2, ge=0, le=100, description="starts per model in any 24 hours")
    window_minutes: float = Field(
        default=0, ge=0, le=1440, description="starts in one window share a name: a double trigger starts once"
    )


class TriggerAction(StrEnum):
    started = "started"
    skipped = "skipped"
    not_needed = "not_needed"
    failed = "failed"


TriggerCode = Literal[
    "no_alert",
    "insufficient_data",
    "disabled",
    "not_configured",
    "retraining_running",
    "cooldown",
    "daily_budget",
    "already_started",
    "started",
    "start_failed",
]


class TriggerDecision(BaseModel):
    action: TriggerAction
    code: TriggerCode
    message: str
    reasons: list[str] = Field(default_factory=list, description="what crossed its threshold")
    decided_at: datetime
    execution_name: str | None = None
    execution_arn: str | None = None
    cooldown_until: datetime | None = None
    starts_last_24h: int | None = None


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
    trigger: Trigger = "drift"
    started_at: datetime
    execution_name: str
    execution_arn: str | None = None
    reason: str


def slot_start(now: datetime, period: timedelta) -> datetime:
    """Start of the period ``now`` falls in (UTC epoch-aligned); ``now`` itself without a period."""
    now = now.astimezone(UTC).replace(microsecond=0)
    seconds = int(period.total_seconds())
    if seconds <= 0:
        return now
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def execution_name(model: str, trigger: Trigger, slot: datetime) -> str:
    suffix = f"-{trigger}-{slot:%Y%m%dT%H%M%S}"
    return validate_model_name(model)[: MAX_EXECUTION_NAME - len(suffix)] + suffix


def reason_text(text: str) -> str:
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

    def starts(self, model: str, since: datetime, period: timedelta) -> list[StartRecord]:
        """Recorded starts at or after ``since``, oldest first (claims are keyed by their period's start)."""
        out = []
        for key in sorted(self._store.list_keys(keys.starts_prefix(model))):
            stamp = key.rsplit("/", 1)[-1].removesuffix(".json").split("-", 1)[0]
            try:
                slot = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            if slot + period < since:  # a claim is made within its period, so it started before since
                continue
            try:
                record = StartRecord.model_validate_json(self._store.get(key))
            except (NotFound, ValueError):
                continue
            if record.started_at >= since:
                out.append(record)
        return sorted(out, key=lambda r: r.started_at)

    def start(
        self,
        model: str,
        run_id: str,
        trigger: Trigger,
        reasons: list[str],
        policy: StartPolicy,
        payload: dict[str, Any],
    ) -> TriggerDecision:
        """Start a retraining of ``model`` with ``payload`` (the state machine's input) if the guards allow.

        ``reasons`` are what called for it (recorded in the decision); the payload's ``reason`` defaults
        to them."""
        now = self._clock()

        def decision(action: TriggerAction, code: TriggerCode, message: str, **extra: Any) -> TriggerDecision:
            return TriggerDecision(action=action, code=code, message=message, reasons=reasons, decided_at=now, **extra)

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
        period = max(cooldown, timedelta(minutes=policy.window_minutes))
        recent = self.starts(model, now - max(period, DAY), period)
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
        slot = slot_start(now, period)
        name = execution_name(model, trigger, slot)
        reason = reason_text(str(payload.get("reason") or "; ".join(reasons)))
        key = keys.start_claim_key(model, f"{slot:%Y%m%dT%H%M%SZ}" + ("" if period else f"-{run_id}"))
        record = StartRecord(
            model=model, run_id=run_id, trigger=trigger, started_at=now, execution_name=name, reason=reason
        )
        try:
            self._store.put(key, record.model_dump_json().encode(), if_none_match=True)
        except VersionConflict:
            return decision(
                TriggerAction.skipped,
                "already_started",
                f"a retraining of {model!r} was already started in this period ({key})",
                execution_name=name,
                starts_last_24h=len(in_day),
            )
        try:
            arn = self._starter.start(name, {**payload, "model": model, "reason": reason})
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


def start_or_refuse(
    trigger: RetrainTrigger, request: RetrainInput, kind: Trigger, policy: StartPolicy, run_id: str
) -> str:
    """The started execution's ARN, for callers that answer a person (uploads, the schedule, the CLI):
    ``RetrainingInProgress`` naming the guard that refused, ``TransientError`` when starting failed."""
    payload = request.model_dump(mode="json", exclude_defaults=True)
    payload["reason"] = request.reason
    decision = trigger.start(request.model, run_id, kind, [request.reason], policy, payload)
    if decision.action is TriggerAction.started and decision.execution_arn:
        return decision.execution_arn
    if decision.action is TriggerAction.failed:
        raise TransientError(decision.message)
    raise RetrainingInProgress(decision.message)

"""The one retraining-start policy every trigger goes through: names, guards, the shared ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.errors import TransientError
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import (
    RetrainTrigger,
    StartPolicy,
    TriggerAction,
    execution_name,
    slot_start,
    start_or_refuse,
)
from loopml_dev.memory import MemoryExecutions, MemoryObjectStore

NOW = datetime(2026, 11, 25, 13, 37, 5, tzinfo=UTC)
UPLOADS = StartPolicy(cooldown_hours=0, max_starts_per_day=3, window_minutes=15)
REQUEST = RetrainInput(model="default", reason="upload: s3://models/incoming/default/a.csv", canary_percent=20)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world() -> tuple[RetrainTrigger, MemoryExecutions, MemoryObjectStore, Clock]:
    store, executions, clock = MemoryObjectStore(), MemoryExecutions(), Clock()
    return RetrainTrigger(store, executions, clock), executions, store, clock


def test_names_carry_the_model_the_trigger_and_the_slot() -> None:
    assert slot_start(NOW, timedelta(hours=6)) == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert slot_start(NOW, timedelta(minutes=15)) == datetime(2026, 11, 25, 13, 30, tzinfo=UTC)
    assert slot_start(NOW, timedelta(0)) == NOW
    assert execution_name("default", "upload", slot_start(NOW, timedelta(minutes=15))) == (
        "default-upload-20261125T133000"
    )
    assert len(execution_name("m" * 63, "schedule", NOW)) == 80


def test_an_upload_starts_with_only_the_given_fields(world: Any) -> None:
    trigger, executions, _, _ = world
    arn = start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r1")
    assert arn.endswith(":default-upload-20261125T133000")
    [(_, payload)] = executions.started
    assert payload == {"model": "default", "reason": REQUEST.reason, "canary_percent": 20.0}


@pytest.mark.parametrize("guard", ["running", "same window", "budget"])
def test_every_guard_refuses_with_its_reason(world: Any, guard: str) -> None:
    trigger, executions, _, clock = world
    if guard == "running":
        executions.running_names = ["default-drift-20261125T120000"]
        expected = "already running (default-drift-20261125T120000)"
    elif guard == "same window":
        start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r1")
        clock.now += timedelta(minutes=5)
        expected = "already started in this period"
    else:
        for minutes in (0, 15, 30):
            clock.now = NOW + timedelta(minutes=minutes)
            start_or_refuse(trigger, REQUEST, "upload", UPLOADS, f"r{minutes}")
        clock.now += timedelta(minutes=15)
        expected = "3 retrainings started in the last 24 h; the budget is 3"
    before = len(executions.started)
    with pytest.raises(RetrainingInProgress, match=expected.replace("(", r"\(").replace(")", r"\)")):
        start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "again")
    assert len(executions.started) == before


def test_the_ledger_is_shared_an_upload_counts_against_drifts_cooldown(world: Any) -> None:
    trigger, executions, _, clock = world
    start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r1")
    clock.now += timedelta(hours=1)
    decision = trigger.start("default", "d1", "drift", ["drift: share 0.8"], StartPolicy(cooldown_hours=6), {})
    assert (decision.action, decision.code) == (TriggerAction.skipped, "cooldown")
    assert "default-upload-20261125T133000" in decision.message
    assert len(executions.started) == 1


def test_a_failed_start_releases_its_claim_and_is_transient(world: Any) -> None:
    trigger, executions, store, _ = world
    executions.fail_with = TransientError("ThrottlingException")
    with pytest.raises(TransientError, match="ThrottlingException"):
        start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r1")
    assert store.list_keys("starts/") == []
    executions.fail_with = None
    assert start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r2")  # the same window may try again


def test_a_racing_trigger_that_claimed_first_wins(world: Any) -> None:
    trigger, executions, store, _ = world
    store.objects["starts/default/20261125T133000Z.json"] = b"{}"
    store.hidden_prefix = "starts/default/"  # the rival's claim is not listed yet
    with pytest.raises(RetrainingInProgress, match="already started"):
        start_or_refuse(trigger, REQUEST, "upload", UPLOADS, "r1")
    assert executions.started == []

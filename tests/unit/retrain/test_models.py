from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml.errors import InvalidInput
from loopml.retrain.models import RetrainInput, RetrainState, RunConfig

EVENTS = Path(__file__).resolve().parents[3] / "events" / "retrain"
NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize("path", sorted(EVENTS.glob("input_*.json")), ids=lambda p: p.name)
def test_sample_inputs_are_valid(path: Path) -> None:
    run = RunConfig.from_input(json.loads(path.read_text()), "console-run", NOW)
    assert run.run_id == "console-run"
    assert run.bake_seconds == round(run.bake_minutes * 60)


def test_defaults() -> None:
    run = RunConfig.from_input({"model": "default", "reason": "weekly"}, "r", NOW)
    assert (run.canary_percent, run.bake_seconds, run.approval, run.primary_metric) == (
        10,
        300,
        False,
        None,
    )  # the gate picks the task's
    assert run.approval_timeout_seconds == 86400


def test_invalid_input_names_every_field() -> None:
    raw = {"model": "Not Valid", "reason": "", "canary_percent": 90, "params": {"depth": 3}, "surprise": 1}
    with pytest.raises(InvalidInput) as caught:
        RunConfig.from_input(raw, "r", NOW)
    message = str(caught.value)
    for field in ("model", "reason", "canary_percent", "params", "surprise"):
        assert field in message
    assert {e["loc"][0] for e in caught.value.errors} == {"model", "reason", "canary_percent", "params", "surprise"}


def test_input_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        RunConfig.from_input(["default"], "r", NOW)


def test_step_results_never_collide_with_input_fields() -> None:
    assert not set(RetrainInput.model_fields) & set(RetrainState.model_fields)

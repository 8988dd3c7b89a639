from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import execution_name, start_retraining


def test_execution_name_is_the_window() -> None:
    at = datetime(2026, 11, 25, 18, 7, 59, tzinfo=UTC)
    assert execution_name("default", at) == "default-20261125T1800"
    assert execution_name("default", at.replace(minute=14)) == "default-20261125T1800"
    assert execution_name("default", at.replace(minute=15)) == "default-20261125T1815"
    assert execution_name("churn", at, window_minutes=60) == "churn-20261125T1800"


class FakeSfn:
    """Running executions by name, with the model their input names."""

    def __init__(self, running: dict[str, str], exists: bool = False) -> None:
        self.running = running
        self.exists = exists
        self.started: list[dict[str, Any]] = []

    def get_paginator(self, name: str) -> Any:
        running = self.running

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"executions": [{"name": n, "executionArn": f"arn:{n}"} for n in running]}]

        return Pages()

    def describe_execution(self, executionArn: str) -> dict[str, str]:
        name = executionArn.removeprefix("arn:")
        return {"input": json.dumps({"model": self.running[name], "reason": "x"})}

    def start_execution(self, **kwargs: Any) -> dict[str, str]:
        if self.exists:
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": "x"}}, "StartExecution")
        self.started.append(kwargs)
        return {"executionArn": f"arn:{kwargs['name']}"}


NOW = datetime(2026, 11, 25, 18, 7, tzinfo=UTC)
REQUEST = RetrainInput(model="default", reason="drift", canary_percent=20)


def test_starts_with_the_window_name_and_only_given_fields() -> None:
    sfn = FakeSfn(running={"defaultish-20261125T1745": "defaultish", "other-drift-1": "other"})
    assert start_retraining(sfn, "arn:sm", REQUEST, NOW) == "arn:default-20261125T1800"
    assert json.loads(sfn.started[0]["input"]) == {"model": "default", "reason": "drift", "canary_percent": 20.0}


@pytest.mark.parametrize(
    "sfn",
    [
        FakeSfn(running={"default-20261125T1745": "default"}),
        FakeSfn(running={"default-drift-20261125T1200": "default"}),  # started by the drift function
        FakeSfn(running={}, exists=True),
    ],
    ids=["running", "running-drift", "same"],
)
def test_refuses_a_second_run(sfn: FakeSfn) -> None:
    with pytest.raises(RetrainingInProgress):
        start_retraining(sfn, "arn:sm", REQUEST, NOW)

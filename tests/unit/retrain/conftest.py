"""Fakes for the retraining steps: an object store with delete, the inference alias, metrics, Step Functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml.capture import CapturedRow
from loopml.data import sha256_hex, write_csv
from loopml.errors import NotFound
from loopml.registry import DataLineage, ModelRegistry
from loopml.retrain.adapters import Lane
from loopml.retrain.approvals import Approvals
from loopml.retrain.models import CanaryPolicy, VersionMetrics
from loopml.retrain.workflow import RetrainWorkflow
from loopml.schema import infer_schema
from loopml.training import TrainingParams, train_and_register
from loopml_dev import datasets
from loopml_dev.memory import MemoryObjectStore
from tests.conftest import SENSITIVE_CONFIG

MODEL = "default"
BASE_KEY = "datasets/default/base/loan.csv"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class FakeAlias:
    function = "loopml-test-inference"
    alias = "live"

    def __init__(self) -> None:
        self.primary = "1"
        self.weights: dict[str, float] = {}
        self.versions: dict[str, dict[str, str]] = {"1": {"MODEL_NAME": MODEL, "MODEL_VERSION": "champion"}}
        self.latest = dict(self.versions["1"])
        self.routes: list[tuple[str, str | None, float]] = []

    def routing(self) -> tuple[str, dict[str, float]]:
        return self.primary, dict(self.weights)

    def environment(self, qualifier: str = "$LATEST") -> dict[str, str]:
        return dict(self.latest)

    def publish(self, variables: dict[str, str], description: str) -> str:
        self.latest.update(variables)
        version = str(len(self.versions) + 1)
        self.versions[version] = dict(self.latest)
        return version

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
        self.routes.append((primary, canary, weight))
        self.primary, self.weights = primary, ({canary: weight} if canary else {})


class FakeMetrics:
    def __init__(self) -> None:
        self.by_version: dict[int, VersionMetrics] = {}
        self.alarms: set[str] = set()
        self.in_alarm: set[str] = set()

    def summary(self, model: str, version: int, lambda_version: str, start: Any, end: Any) -> VersionMetrics:
        return self.by_version.get(version, VersionMetrics())

    def alarm_names(self, model: str, version: int) -> list[str]:
        return [f"canary-{model}-v{version}-{kind}" for kind in ("degraded", "latency", "errors")]

    def create_canary_alarms(self, model: str, version: int, lambda_version: str, policy: CanaryPolicy) -> list[str]:
        names = self.alarm_names(model, version)
        self.alarms.update(names)
        return names

    def firing(self, names: Sequence[str]) -> list[str]:
        return sorted(set(names) & self.in_alarm)

    def delete_alarms(self, names: Sequence[str]) -> None:
        self.alarms.difference_update(names)


class FakeResponder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.gone = False

    def succeed(self, token: str, output: dict[str, Any]) -> None:
        if self.gone:
            raise NotFound("TaskTimedOut")
        self.calls.append(("success", token, output["decision"]))

    def fail(self, token: str, error: str, cause: str) -> None:
        if self.gone:
            raise NotFound("TaskTimedOut")
        self.calls.append(("failure", token, error, cause))


class Feedback:
    def __init__(self) -> None:
        self.rows: list[CapturedRow] = []

    def __call__(self, model: str, start: datetime, end: datetime) -> list[CapturedRow]:
        return [r for r in self.rows if start <= r.timestamp < end]


def captured_rows(
    columns: dict[str, list[Any]], at: datetime, source: str = "system", caller: str | None = None
) -> list[CapturedRow]:
    rows = datasets.rows(columns)
    return [
        CapturedRow(
            prediction_id=f"{i:032x}",
            timestamp=at + timedelta(seconds=i),
            model=MODEL,
            model_version=1,
            lambda_version="1",
            features=row,
            prediction=0,
            probabilities={"0": 0.5, "1": 0.5},
            confidence=0.5,
            label=label,
            label_source=source,
            label_caller=caller,
        )
        for i, (row, label) in enumerate(zip(rows, columns[datasets.TARGET], strict=True))
    ]


class World:
    """A registry with a champion trained on ``BASE_KEY``, and a workflow wired to fakes."""

    def __init__(self) -> None:
        self.store = MemoryObjectStore()
        self.clock = Clock()
        self.alias = FakeAlias()
        self.metrics = FakeMetrics()
        self.responder = FakeResponder()
        self.feedback = Feedback()
        columns = datasets.loan_default(800, seed=3)
        data = write_csv(columns)
        self.store.put(BASE_KEY, data)
        self.registry = ModelRegistry(self.store, self.clock)
        schema = infer_schema(columns, datasets.TARGET, SENSITIVE_CONFIG)
        meta = train_and_register(
            self.registry,
            columns,
            schema,
            TrainingParams(),
            MODEL,
            DataLineage(uri=self.store.uri(BASE_KEY), sha256=sha256_hex(data), rows=800),
            actor="test",
        )
        self.registry.set_alias(MODEL, "champion", meta.version, actor="test", reason="first")
        lane = Lane(self.alias, self.metrics)  # type: ignore[arg-type]
        self.workflow = RetrainWorkflow(
            self.store,
            lambda model: lane,
            Approvals(self.store, self.responder, self.clock),
            self.feedback,
            clock=self.clock,
        )

    def step(self, step: str, state: dict[str, Any], result: str, **extra: Any) -> dict[str, Any]:
        """Run one step and store its result where the state machine's ResultPath puts it."""
        from loopml.retrain.models import StepRequest

        output = self.workflow.run_step(StepRequest(step=step, state=state, **extra))  # type: ignore[arg-type]
        return {**state, result: output}

    def started(self, name: str = "run-1", **fields: Any) -> dict[str, Any]:
        state: dict[str, Any] = {"model": MODEL, "reason": "test", "bake_minutes": 0, **fields}
        return self.step("start", state, "run", execution=name)

    def through_evaluate(self, name: str = "run-1", **fields: Any) -> dict[str, Any]:
        state = self.started(name, **fields)
        for step, result in (("prepare", "dataset"), ("train", "challenger"), ("evaluate", "evaluation")):
            state = self.step(step, state, result)
        return state


@pytest.fixture
def world() -> World:
    return World()

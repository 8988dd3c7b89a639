"""Builders and in-memory fakes for the drift service: a model version, captured rows, the ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from loopml.capture import CapturedRow
from loopml.drift.models import DriftRunReport, DriftSettings
from loopml.drift.reports import ReportStore
from loopml.drift.service import DriftMonitor
from loopml.errors import ModelNotFound, TransientError
from loopml.feedback import layout
from loopml.registry import DataLineage, ModelMetadata
from loopml.retrain.trigger import RetrainTrigger
from loopml.schema import to_matrix
from loopml.training import TrainedModel, metadata_for
from loopml_dev import datasets
from loopml_dev.memory import MemoryExecutions, MemoryObjectStore

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = DriftSettings(model_bucket="bucket", retrain_state_machine_arn="arn:aws:states:::stateMachine:retrain")


def version_metadata(trained: TrainedModel, version: int = 1) -> ModelMetadata:
    meta = metadata_for(trained, "default", DataLineage(uri="memory://loan", sha256="0" * 64, rows=3000), "test")
    return meta.model_copy(update={"version": version})


def captured_rows(
    trained: TrainedModel,
    n: int,
    *,
    seed: int = 1,
    covariate_shift: float = 0.0,
    concept_shift: float = 0.0,
    labelled: float = 0.0,
    flip_labels: bool = False,
    start: datetime = T0 - timedelta(hours=2),
    version: int = 1,
) -> list[CapturedRow]:
    """Rows as the reader returns them, predicted by the trained pipeline, a share of them labelled."""
    columns = datasets.loan_default(n, seed=seed, covariate_shift=covariate_shift, concept_shift=concept_shift)
    matrix = to_matrix(columns, trained.schema)
    proba = trained.bundle["pipeline"].predict_proba(matrix)
    classes = trained.schema.classes
    rng = np.random.default_rng(seed)
    out = []
    for i, row in enumerate(datasets.rows(columns)):
        moment = start + timedelta(seconds=i)
        k = int(proba[i].argmax())
        truth = columns[datasets.TARGET][i]
        label = (1 - truth if flip_labels else truth) if rng.random() < labelled else None
        out.append(
            CapturedRow(
                prediction_id=layout.prediction_id(moment, f"{i:024x}"),
                timestamp=moment,
                model="default",
                model_version=version,
                lambda_version="1",
                features=row,
                prediction=classes[k],
                probabilities={str(c): float(p) for c, p in zip(classes, proba[i], strict=True)},
                confidence=float(proba[i].max()),
                label=label,
                label_source="user" if label is not None else None,
            )
        )
    return out


class FakeRegistry:
    def __init__(self, *metas: ModelMetadata, champion: int = 1) -> None:
        self.metas = {m.version: m for m in metas}
        self.champion = champion

    def resolve(self, model: str, ref: str | int) -> int:
        if model != "default" or not self.metas:
            raise ModelNotFound(f"model {model!r} has no alias {ref!r}")
        return self.champion

    def metadata(self, model: str, version: int) -> ModelMetadata:
        if model != "default" or version not in self.metas:
            raise ModelNotFound(f"model {model!r} has no version {version}")
        return self.metas[version]


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class LogSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.records.append(("info", str(msg), kwargs.get("extra", {})))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.records.append(("warning", str(msg), kwargs.get("extra", {})))


@dataclass
class Harness:
    monitor: DriftMonitor
    store: MemoryObjectStore
    starter: MemoryExecutions
    clock: Clock
    published: list[DriftRunReport]
    rows: dict[int, list[CapturedRow]]
    log: LogSink
    reads: list[tuple[str, datetime, datetime, int]] = field(default_factory=list)


def harness(
    trained: TrainedModel,
    rows: list[CapturedRow] | None = None,
    *,
    starter: MemoryExecutions | None = None,
    **settings: Any,
) -> Harness:
    store = MemoryObjectStore()
    starter = starter if starter is not None else MemoryExecutions()
    clock = Clock()
    published: list[DriftRunReport] = []
    by_version = {1: rows or []}
    log = LogSink()
    reads: list[tuple[str, datetime, datetime, int]] = []

    def read_rows(model: str, start: datetime, end: datetime, version: int) -> list[CapturedRow]:
        reads.append((model, start, end, version))
        if store.objects.get("__fail_reads__"):
            raise TransientError("SlowDown")
        return [r for r in by_version.get(version, []) if start <= r.timestamp < end]

    monitor = DriftMonitor(
        SETTINGS.model_copy(update=settings),
        FakeRegistry(version_metadata(trained)),
        read_rows,
        ReportStore(store),
        RetrainTrigger(store, starter if settings.get("retrain_state_machine_arn", "x") else None, clock),
        published.append,
        log,
        clock,
    )
    return Harness(monitor, store, starter, clock, published, by_version, log, reads)

"""The canary's evidence from captured data: both pipelines on the same labels, and confidence spread."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from loopml.capture import CapturedRow
from loopml.retrain.evidence import online_accuracy, with_confidences
from loopml.retrain.models import VersionMetrics
from loopml.schema import FeatureSchema, FeatureSpec

SCHEMA = FeatureSchema(features=[FeatureSpec(name="x", kind="numeric")], target="y", classes=[0, 1])
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def row(i: int, x: float, label: int | None, lambda_version: str = "1", confidence: float = 0.5) -> CapturedRow:
    return CapturedRow(
        prediction_id=f"{i:032x}",
        timestamp=T0,
        model="default",
        model_version=1,
        lambda_version=lambda_version,
        features={"x": x},
        prediction=0,
        probabilities={"0": 1 - confidence, "1": confidence},
        confidence=confidence,
        label=label,
    )


class Threshold:
    """A stand-in pipeline: predicts 1 above ``cut``."""

    def __init__(self, cut: float) -> None:
        self.cut = cut

    def predict(self, matrix: Any) -> Any:
        return (np.asarray(matrix, dtype=float)[:, 0] > self.cut).astype(int)


def test_discordant_pairs_count_each_sides_wins() -> None:
    # truth: 1 above 5. The canary cuts at 5 (always right), the champion at 7 (wrong on 6 and 7).
    rows = [row(i, float(x), int(x > 5)) for i, x in enumerate(range(10))]
    loads: list[int] = []

    def pipelines() -> tuple[FeatureSchema, Any, Any, float | None]:
        loads.append(1)
        return SCHEMA, Threshold(5), Threshold(7), None

    found = online_accuracy(rows, 5, pipelines)
    assert found is not None
    assert (found.labels, found.canary, found.champion, found.discordant) == (10, 1.0, 0.8, (0, 2))
    assert loads == [1]


def test_too_few_labels_load_no_model() -> None:
    def never() -> tuple[FeatureSchema, Any, Any, float | None]:
        raise AssertionError("models loaded for too few labels")

    assert online_accuracy([], 5, never) is None
    few = online_accuracy([row(0, 1.0, 0)], 5, never)
    assert few is not None and (few.labels, few.canary, few.champion) == (1, None, None)


def test_confidences_are_taken_from_the_versions_own_predictions() -> None:
    rows = [row(0, 1, None, "2", 0.9), row(1, 1, None, "2", 0.7), row(2, 1, None, "1", 0.1)]
    base = VersionMetrics(predictions=3, degraded=0, invocations=3, errors=0, latency_p99_ms=None, mean_confidence=None)
    canary = with_confidences(base, rows, "2")
    assert canary.captured == 2 and abs(canary.mean_confidence - 0.8) < 1e-9
    assert abs(canary.confidence_std - float(np.std([0.9, 0.7], ddof=1))) < 1e-9
    assert with_confidences(base, rows, "1") == base  # one prediction has no spread

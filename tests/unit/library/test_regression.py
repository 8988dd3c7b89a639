"""Regression through the library: the task inferred, intervals that cover, and every consumer (serving,
feedback, drift, gate, canary evidence, batch output, review order) reading values instead of classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from loopml.batch.scoring import OutputWriter
from loopml.capture import CapturedRow
from loopml.errors import InvalidInput
from loopml.feedback.models import ReviewItem
from loopml.feedback.service import _match
from loopml.inference.predictor import Predictor
from loopml.registry import DataLineage
from loopml.retrain.evidence import online_accuracy
from loopml.retrain.gate import gate, primary_for
from loopml.schema import FeatureSchema, infer_schema, infer_task
from loopml.statistics.engine import evaluate_value_drift
from loopml.statistics.performance import evaluate_regression_performance
from loopml.statistics.profile import ReferenceProfile
from loopml.training import TrainedModel, TrainingParams, metadata_for, train

TARGET = "progression"


@pytest.fixture(scope="module")
def diabetes() -> dict[str, list[Any]]:
    data = load_diabetes()
    columns: dict[str, list[Any]] = {n: data.data[:, j].tolist() for j, n in enumerate(data.feature_names)}
    columns[TARGET] = data.target.tolist()
    return columns


@pytest.fixture(scope="module")
def schema(diabetes: dict[str, list[Any]]) -> FeatureSchema:
    return infer_schema(diabetes, TARGET)


@pytest.fixture(scope="module")
def ridge(diabetes: dict[str, list[Any]], schema: FeatureSchema) -> TrainedModel:
    return train(diabetes, schema, TrainingParams(model_type="ridge"))


def test_the_task_is_told_from_the_target() -> None:
    assert infer_task([0, 1, 1, 0], "y") == "classification"
    assert infer_task(["a", "b"], "y") == "classification"
    assert infer_task([0.5, 1.25, 3.0], "y") == "regression"  # fractions
    assert infer_task(list(range(30)), "y") == "regression"  # many whole numbers: a quantity
    assert infer_task(list(range(30)), "y", "classification") == "classification"  # under MAX_CLASSES
    with pytest.raises(InvalidInput, match=r"target column 'y' has non-numeric values \['a'\]: regression needs"):
        infer_task(["a", 1], "y", "regression")


def test_a_regression_recipe_measures_its_errors_and_its_interval(schema: FeatureSchema, ridge: TrainedModel) -> None:
    assert schema.regression and schema.classes == []
    metrics = ridge.metrics.model_dump()
    assert set(metrics) == {"n", "rmse", "mae", "r2", "interval_coverage", "interval_halfwidth"}
    assert metrics["rmse"] >= metrics["mae"] > 0 and metrics["r2"] > 0.3
    assert metrics["interval_coverage"] >= 0.9  # split-conformal: at least the nominal coverage on its rows
    assert ridge.bundle["interval"] == {"halfwidth": metrics["interval_halfwidth"], "coverage": 0.9}


def test_serving_returns_the_value_its_interval_and_an_exact_linear_explanation(
    diabetes: dict[str, list[Any]], schema: FeatureSchema, ridge: TrainedModel
) -> None:
    meta = metadata_for(ridge, "diabetes", DataLineage(uri="memory://d", sha256="0" * 64, rows=442), "test")
    predictor = Predictor(ridge.bundle, meta)
    rows = [{n: diabetes[n][i] for n in schema.names} for i in range(3)]
    out = predictor.predict(rows, explain=True)
    pipeline = ridge.bundle["pipeline"]
    expected = pipeline.predict(np.array([[r[n] for n in schema.names] for r in rows], dtype=object))
    half = ridge.bundle["interval"]["halfwidth"]
    for p, value in zip(out, expected, strict=True):
        assert p.label == pytest.approx(value) and p.probabilities == {} and p.confidence is None
        assert p.interval == pytest.approx([value - half, value + half])
        # the terms add up to the value minus the value at the training mean
        baseline = float(pipeline.named_steps["model"].intercept_) + float(
            pipeline.named_steps["model"].coef_ @ ridge.bundle["background"]
        )
        assert sum((p.explanation or {}).values()) == pytest.approx(value - baseline, abs=1e-3)
    assert meta.explainer == "linear"


def test_a_regression_feedback_label_is_a_finite_number() -> None:
    assert _match("151.5", []) == 151.5 and _match(3, []) == 3.0
    assert _match("high", []) is None and _match("inf", []) is None and _match(True, []) is None
    assert _match("1", [0, 1]) == 1  # a classifier's labels are still its classes


def test_the_review_list_orders_by_uncertainty() -> None:
    def item(pid: str, confidence: float | None, interval: list[float] | None) -> ReviewItem:
        return ReviewItem(
            prediction_id=pid, model="m", model_version=1, timestamp="t", prediction=1, probabilities={},
            confidence=confidence, interval=interval, features={}, reason="sample",
        )  # fmt: skip

    wide, narrow = item("a", None, [0.0, 10.0]), item("b", None, [4.0, 6.0])
    assert wide.uncertainty > narrow.uncertainty
    assert item("c", 0.55, None).uncertainty > item("d", 0.95, None).uncertainty


def _rows(values: list[float], labels: list[float | None], interval: float) -> list[CapturedRow]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        CapturedRow(
            prediction_id=f"{i:032x}",
            model="diabetes",
            model_version=1,
            features={"bmi": 0.01},
            prediction=v,
            probabilities={},
            confidence=None,
            interval=[v - interval, v + interval],
            timestamp=start + timedelta(seconds=i),
            label=y,
        )
        for i, (v, y) in enumerate(zip(values, labels, strict=True))
    ]


def test_live_errors_against_validation_name_a_regression() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(150, 50, 200)
    good = evaluate_regression_performance(truth, truth + rng.normal(0, 20, 200), reference_metrics={"rmse": 20.0})
    assert good.verdict.value == "ok" and {m.name for m in good.metrics} == {"rmse", "mae"}
    bad = evaluate_regression_performance(
        truth,
        truth + rng.normal(0, 60, 200),
        intervals=np.column_stack([truth - 40, truth + 40]) + rng.normal(0, 60, (200, 1)),
        reference_metrics={"rmse": 20.0, "interval_coverage": 0.9},
    )
    assert bad.verdict.value == "regressed"
    assert {m.name for m in bad.metrics if m.regressed} == {"rmse", "interval_coverage"}


def test_predicted_values_drift_against_the_reference(schema: FeatureSchema, ridge: TrainedModel) -> None:
    meta = metadata_for(ridge, "diabetes", DataLineage(uri="memory://d", sha256="0" * 64, rows=442), "test")
    profile = ReferenceProfile.model_validate(meta.reference_profile)
    assert profile.predicted_values is not None and profile.target_values is not None and profile.predictions is None
    same = evaluate_value_drift(profile, ridge.reference_proba)
    shifted = evaluate_value_drift(profile, ridge.reference_proba + 80)
    assert same.verdict.value == "no_drift" and shifted.verdict.value == "drifted"
    assert shifted.headline is shifted.predicted_value


def test_the_gate_compares_rmse_with_a_relative_tolerance(
    diabetes: dict[str, list[Any]], schema: FeatureSchema, ridge: TrainedModel
) -> None:
    weak = train(diabetes, schema, TrainingParams(model_type="random_forest", n_estimators=2, max_depth=1))
    new, old = weak.bundle, ridge.bundle
    evaluation = gate(new["pipeline"], old["pipeline"], diabetes, schema, None, 0.05, 0.1,
                      intervals=(new["interval"], old["interval"]))  # fmt: skip
    assert evaluation.primary_metric == "rmse" and not evaluation.passed
    assert evaluation.reasons[0].startswith("rmse on the recent holdout regressed by"), evaluation.reasons
    assert "log_loss" not in " ".join(evaluation.reasons) and "interval_coverage" in evaluation.challenger
    same = gate(old["pipeline"], old["pipeline"], diabetes, schema, None, 0.05, 0.1, intervals=(old["interval"],) * 2)
    assert same.passed, same.reasons
    with pytest.raises(InvalidInput, match="primary_metric roc_auc does not fit this model: it is a regressor"):
        primary_for(schema, "roc_auc")


def test_the_canary_counts_a_prediction_right_within_the_champions_interval(schema: FeatureSchema) -> None:
    class Offset:
        def __init__(self, by: float) -> None:
            self.by = by

        def predict(self, matrix: Any) -> Any:
            return np.full(len(matrix), 100.0 + self.by)

    rows = _rows([100.0] * 30, [100.0] * 30, 10.0)
    rows = [r.model_copy(update={"features": dict.fromkeys(schema.names, 0.0)}) for r in rows]
    found = online_accuracy(rows, 20, lambda: (schema, Offset(25.0), Offset(5.0), 10.0))
    assert found is not None and (found.canary, found.champion, found.discordant) == (0.0, 1.0, (30, 0))


def test_batch_output_writes_the_value_and_its_interval() -> None:
    from loopml.batch.scoring import InputRow
    from loopml.inference.predictor import Prediction
    from loopml.schema import RowFlags

    writer = OutputWriter("csv", ["bmi"], [], model_version=3)
    p = Prediction(label=151.23456789, probabilities={}, confidence=None, flags=RowFlags(), explanation=None,
                   interval=[100.0, 202.5])  # fmt: skip
    text = writer.encode([(InputRow(row=1, line=2, values={"bmi": 0.05}), p)]).decode()
    assert text.splitlines() == [
        "bmi,row_number,model_version,prediction,lower,upper",
        "0.05,1,3,151.234568,100.0,202.5",
    ]
    jsonl = OutputWriter("jsonl", ["bmi"], [], model_version=3).encode(
        [(InputRow(row=1, line=2, values={"bmi": 0.05}), p)]
    )
    assert b'"prediction": 151.234568, "lower": 100.0, "upper": 202.5' in jsonl


def test_regression_bias_compares_groups_mean_prediction_and_error() -> None:
    from loopml.statistics.bias import evaluate_regression_bias

    groups = {"sex": ["f"] * 50 + ["m"] * 50}
    truth = [100.0] * 100
    fair = evaluate_regression_bias(groups, [100.0] * 100, 0.1, y_true=truth)
    assert not fair.flagged and fair.attributes[0].mean_prediction_difference == 0.0
    skewed = evaluate_regression_bias(groups, [100.0] * 50 + [130.0] * 50, 0.1, y_true=truth)
    gap = skewed.attributes[0]
    assert skewed.flagged and gap.prediction_flagged and gap.error_flagged
    assert gap.mean_prediction_difference == pytest.approx(30 / 115) and gap.error_difference == pytest.approx(2.0)
    few = evaluate_regression_bias({"sex": ["f"] * 5 + ["m"] * 95}, [100.0] * 100, 0.1)
    assert few.attributes[0].insufficient_data and not few.flagged


def test_the_drift_window_audits_a_regressions_bias(ridge: TrainedModel, diabetes: dict[str, list[Any]]) -> None:
    from loopml.drift.evaluation import alerts, evaluate_window
    from loopml.drift.models import MonitoringConfig

    schema = ridge.schema.model_copy(deep=True)
    schema.feature("sex").sensitive = True
    meta = metadata_for(ridge, "diabetes", DataLineage(uri="memory://d", sha256="0" * 64, rows=442), "test")
    meta = meta.model_copy(update={"feature_schema": schema})
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        CapturedRow(
            prediction_id=f"{i:032x}", model="diabetes", model_version=1,
            features={n: diabetes[n][i] for n in schema.names},
            prediction=(80.0 if diabetes["sex"][i] > 0 else 220.0), probabilities={}, confidence=None,
            interval=[0.0, 400.0], timestamp=start + timedelta(seconds=i), label=diabetes[TARGET][i],
        )
        for i in range(300)
    ]  # fmt: skip
    result = evaluate_window(meta, rows, MonitoringConfig())
    assert result.regression_bias is not None and result.bias_flagged is True
    assert any(a.startswith("bias: sex mean prediction difference") for a in alerts(result)["bias"])
    assert result.performance.metric("rmse").value is not None and result.n_labelled == 300

"""Performance with confidence intervals, and the bias audit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from loopml.errors import InvalidInput
from loopml.statistics.bias import BiasConfig, evaluate_bias
from loopml.statistics.performance import (
    PerformanceConfig,
    PerformanceVerdict,
    evaluate_performance,
    expected_calibration_error,
    macro_f1,
    roc_auc,
    wilson_interval,
)

CLASSES = ["no", "yes"]


def labelled(rng, n, accuracy):
    """Binary labels, predictions right with probability ``accuracy``, and matching probabilities."""
    y = rng.integers(0, 2, n)
    right = rng.random(n) < accuracy
    pred = np.where(right, y, 1 - y)
    conf = rng.uniform(0.55, 0.95, n)
    p_yes = np.where(pred == 1, conf, 1 - conf)
    proba = np.column_stack([1 - p_yes, p_yes])
    names = np.array(CLASSES)
    return names[y], names[pred], proba


REFERENCE = {"accuracy": 0.90, "macro_f1": 0.90, "auc": 0.93}


def test_small_drop_on_30_labels_is_not_a_regression():
    rng = np.random.default_rng(0)
    y, pred, proba = labelled(rng, 30, 0.84)
    report = evaluate_performance(y, pred, CLASSES, proba, REFERENCE)
    acc = report.metric("accuracy")
    assert acc.value < 0.90  # the point estimate did drop
    assert acc.upper > 0.90
    assert report.verdict is PerformanceVerdict.ok
    assert report.metric("f1_macro").reference == 0.90  # alias resolved


def test_large_drop_on_5000_labels_is_a_regression():
    rng = np.random.default_rng(1)
    y, pred, proba = labelled(rng, 5000, 0.75)
    report = evaluate_performance(y, pred, CLASSES, proba, REFERENCE, PerformanceConfig(bootstrap_samples=100))
    assert report.verdict is PerformanceVerdict.regressed
    assert report.metric("accuracy").regressed
    assert report.metric("f1_macro").regressed
    assert report.metric("accuracy").upper < 0.80


def test_too_few_labels_and_bad_labels():
    rng = np.random.default_rng(2)
    y, pred, proba = labelled(rng, 10, 0.9)
    assert evaluate_performance(y, pred, CLASSES).verdict is PerformanceVerdict.insufficient_data
    with pytest.raises(InvalidInput, match="not model classes"):
        evaluate_performance(["maybe"] * 40, ["no"] * 40, CLASSES)
    y, pred, proba = labelled(rng, 40, 0.9)
    with pytest.raises(InvalidInput, match="proba must have shape"):
        evaluate_performance(y, pred, CLASSES, proba[:, :1])


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    y, pred, proba = labelled(rng, 200, 0.8)
    a = evaluate_performance(y, pred, CLASSES, proba, REFERENCE)
    b = evaluate_performance(y, pred, CLASSES, proba, REFERENCE)
    assert a == b


def test_wilson_interval_formula():
    lo, hi = wilson_interval(0, 10)
    z = 1.959963984540054
    assert lo == 0.0
    assert hi == pytest.approx(z * z / 10 / (1 + z * z / 10), abs=1e-12)
    lo, hi = wilson_interval(27, 30)
    assert lo < 0.9 < hi


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    proba[np.arange(400), y] += 0.3
    proba /= proba.sum(1, keepdims=True)
    pred = proba.argmax(1)
    assert macro_f1(y, pred, 3) == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"), abs=1e-12)
    yb = (y == 1).astype(int)
    pb = np.column_stack([1 - proba[:, 1], proba[:, 1]])
    assert roc_auc(yb, pb) == pytest.approx(roc_auc_score(yb, pb[:, 1]), abs=1e-12)


def test_expected_calibration_error_by_hand():
    # bin 0.6-0.7: two rows with confidence 0.6, one right -> |0.5 - 0.6| ; bin 0.9-1.0: one right at 0.9
    proba = np.array([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1]])
    y = np.array([0, 0, 0])
    expected = (2 * abs(0.5 - 0.6) + 1 * abs(1.0 - 0.9)) / 3
    assert expected_calibration_error(y, proba) == pytest.approx(expected, abs=1e-12)


def test_bias_metrics_hand_computed():
    #            group a (4 rows)         group b (4 rows)         group c (1 row)
    group = ["a", "a", "a", "a", "b", "b", "b", "b", "c"]
    y_true = [1, 1, 0, 0, 1, 1, 1, 0, 1]
    y_pred = [1, 1, 1, 0, 1, 0, 0, 0, 1]
    report = evaluate_bias(
        {"sex": np.array(group, dtype=object)},
        y_pred,
        BiasConfig(positive_class=1, min_group_size=2),
        y_true=y_true,
    )
    attr = report.attributes[0]
    groups = {g.group: g for g in attr.groups}
    assert groups["a"].selection_rate == pytest.approx(3 / 4)
    assert groups["b"].selection_rate == pytest.approx(1 / 4)
    assert groups["a"].true_positive_rate == pytest.approx(1.0)
    assert groups["b"].true_positive_rate == pytest.approx(1 / 3)
    assert groups["a"].accuracy == pytest.approx(3 / 4)
    assert groups["b"].accuracy == pytest.approx(2 / 4)
    assert not groups["c"].sufficient
    assert attr.demographic_parity_difference == pytest.approx(0.5)
    assert attr.equal_opportunity_difference == pytest.approx(2 / 3)
    assert attr.parity_flagged
    assert attr.opportunity_flagged
    assert report.flagged


def test_bias_small_groups_are_insufficient_not_fair():
    report = evaluate_bias({"region": ["x"] * 5 + ["y"] * 5}, [1] * 5 + [0] * 5, BiasConfig(positive_class=1))
    attr = report.attributes[0]
    assert attr.insufficient_data
    assert attr.demographic_parity_difference is None
    assert not report.flagged
    with pytest.raises(InvalidInput, match="'region' has 3 values"):
        evaluate_bias({"region": ["x"] * 3}, [1] * 10, BiasConfig(positive_class=1))


def test_bias_parity_within_threshold():
    rng = np.random.default_rng(5)
    group = rng.choice(["a", "b"], 4000)
    pred = (rng.random(4000) < 0.3).astype(int)
    report = evaluate_bias({"g": group}, pred, BiasConfig(positive_class=1))
    assert report.attributes[0].demographic_parity_difference < 0.1
    assert not report.flagged
    assert math.isclose(sum(g.n for g in report.attributes[0].groups), 4000)


def test_reference_metric_aliases_and_missing_values():
    rng = np.random.default_rng(6)
    y, pred, proba = labelled(rng, 300, 0.9)
    report = evaluate_performance(y, pred, CLASSES, proba, {"calibration_error": 0.0, "roc_auc": None, "log_loss": 0.3})
    assert report.metric("ece").reference == 0.0
    assert report.metric("ece").regressed  # uniform confidences 0.55-0.95 at 90 % accuracy: miscalibrated
    assert report.metric("roc_auc").reference is None
    assert not report.metric("roc_auc").regressed

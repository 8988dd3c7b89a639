from __future__ import annotations

import numpy as np
import pytest

from loopml.errors import InsufficientData, InvalidInput
from loopml.schema import infer_schema
from loopml.training import TrainingParams, expected_calibration_error, train
from loopml_dev import datasets


def test_binary_model_learns_the_signal(trained):
    metrics = trained.metrics
    assert metrics.n == 600
    assert metrics.accuracy > 0.75
    assert metrics.roc_auc is not None and metrics.roc_auc > 0.8
    assert 0 <= metrics.calibration_error < 0.1
    assert metrics.log_loss < 0.55


def test_training_is_deterministic(loan_columns, loan_schema, trained):
    again = train(loan_columns, loan_schema, TrainingParams())
    first = trained.bundle["pipeline"].named_steps["model"].coef_
    second = again.bundle["pipeline"].named_steps["model"].coef_
    np.testing.assert_array_equal(first, second)
    assert again.metrics == trained.metrics


def test_multiclass_and_string_labels():
    columns = datasets.loan_default(1500, seed=3)
    score = np.asarray(columns["credit_score"], dtype=float)
    columns["band"] = np.where(score < 650, "low", np.where(score < 730, "mid", "high")).tolist()
    del columns["default"]
    schema = infer_schema(columns, "band")
    assert schema.classes == ["high", "low", "mid"]
    result = train(columns, schema, TrainingParams(model_type="hist_gradient_boosting", n_estimators=50))
    assert result.metrics.accuracy > 0.9
    assert result.metrics.roc_auc is not None and result.metrics.roc_auc > 0.95
    assert result.reference_proba.shape[1] == 3


def test_too_few_rows_or_a_thin_class_is_refused(loan_schema):
    columns = datasets.loan_default(30, seed=1)
    with pytest.raises(InsufficientData, match="need at least 50"):
        train(columns, loan_schema, TrainingParams())
    columns = datasets.loan_default(400, seed=1)
    columns["default"] = [0] * 397 + [1] * 3
    with pytest.raises(InsufficientData, match="fewer than 5"):
        train(columns, loan_schema, TrainingParams())


def test_labels_outside_the_schema_are_named(loan_schema):
    columns = datasets.loan_default(200, seed=1)
    columns["default"][0] = 7
    with pytest.raises(InvalidInput, match=r"\['7'\]"):
        train(columns, loan_schema, TrainingParams())


def test_params_reject_unknown_and_out_of_range_values():
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainingParams(validation_fraction=0.9)
    with pytest.raises(ValueError, match="extra"):
        TrainingParams.model_validate({"learning_rat": 0.1})


def test_calibration_error_matches_the_definition():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    truth = [0, 1, 1, 0]
    # bins: 0.9 -> (0.8,0.9], 0.8 -> (0.7,0.8], 0.7 -> (0.6,0.7], 0.55 -> (0.5,0.6]; one row per bin
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.55)) / 4
    assert expected_calibration_error(proba, truth) == pytest.approx(expected)


def test_forests_grow_leaves_of_the_recipes_size_unless_told(loan_columns, loan_schema):
    """Fully grown trees (one row per leaf) are what every cold start would load: the recipe's are smaller."""
    from loopml.params import FOREST_LEAF
    from loopml.training import build_pipeline

    regression = infer_schema({k: v for k, v in loan_columns.items() if k != "default"}, "loan_amount")
    for schema, task in ((loan_schema, "classification"), (regression, "regression")):
        forest = build_pipeline(schema, TrainingParams(model_type="random_forest")).named_steps["model"]
        assert forest.min_samples_leaf == FOREST_LEAF[task] > 1
        told = build_pipeline(schema, TrainingParams(model_type="random_forest", min_samples_leaf=1))
        assert told.named_steps["model"].min_samples_leaf == 1
    with pytest.raises(ValueError, match="min_samples_leaf"):
        TrainingParams(min_samples_leaf=0)

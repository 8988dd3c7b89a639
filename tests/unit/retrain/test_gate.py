from __future__ import annotations

from typing import Any

import pytest

from loopml.errors import InsufficientData
from loopml.retrain.gate import gate
from loopml.schema import FeatureSchema
from loopml.training import TrainedModel, TrainingParams, train
from loopml_dev import datasets


@pytest.fixture(scope="module")
def holdout() -> dict[str, Any]:
    return datasets.loan_default(800, seed=11)


def test_equal_models_pass(trained: TrainedModel, loan_schema: FeatureSchema, holdout: dict[str, Any]) -> None:
    pipeline = trained.bundle["pipeline"]
    evaluation = gate(pipeline, pipeline, holdout, loan_schema, "roc_auc", 0.01, 0.5)
    assert evaluation.passed, evaluation.reasons
    assert evaluation.improvement == 0
    assert evaluation.holdout_rows == 800
    assert "gender" in evaluation.challenger_bias.parity_difference


def test_worse_challenger_is_held_back(
    trained: TrainedModel, loan_columns: dict[str, Any], loan_schema: FeatureSchema, holdout: dict[str, Any]
) -> None:
    weak = train(loan_columns, loan_schema, TrainingParams(model_type="random_forest", n_estimators=1, max_depth=1))
    evaluation = gate(weak.bundle["pipeline"], trained.bundle["pipeline"], holdout, loan_schema, "roc_auc", 0.01, 0.5)
    assert not evaluation.passed
    assert evaluation.improvement < -0.01
    assert "roc_auc on the recent holdout regressed" in evaluation.reasons[0]


def test_lower_is_better_metric(
    trained: TrainedModel, loan_columns: dict[str, Any], loan_schema: FeatureSchema, holdout: dict[str, Any]
) -> None:
    weak = train(loan_columns, loan_schema, TrainingParams(model_type="random_forest", n_estimators=1, max_depth=1))
    evaluation = gate(trained.bundle["pipeline"], weak.bundle["pipeline"], holdout, loan_schema, "log_loss", 0.0, 0.5)
    assert evaluation.passed and evaluation.improvement > 0


def test_bias_gap_blocks(trained: TrainedModel, loan_schema: FeatureSchema, holdout: dict[str, Any]) -> None:
    # Women get the positive class far more often: a selection-rate gap well above the threshold.
    skewed = dict(holdout)
    pipeline = trained.bundle["pipeline"]

    class Skewed:
        classes_ = pipeline.classes_

        def predict_proba(self, matrix: Any) -> Any:
            return pipeline.predict_proba(matrix)

        def predict(self, matrix: Any) -> Any:
            gender = loan_schema.names.index("gender")
            return [1 if row[gender] == "female" else 0 for row in matrix]

    evaluation = gate(Skewed(), pipeline, skewed, loan_schema, "roc_auc", 0.01, 0.1)
    assert not evaluation.passed
    assert evaluation.challenger_bias.flagged and not evaluation.champion_bias.flagged
    assert evaluation.reasons[0].startswith("gender: parity difference")
    # A champion just as biased does not freeze its own replacement: the gap did not get worse.
    same = gate(Skewed(), Skewed(), skewed, loan_schema, "roc_auc", 0.01, 0.1)
    assert same.passed and same.challenger_bias.flagged


def test_metric_undefined_on_holdout(trained: TrainedModel, loan_schema: FeatureSchema) -> None:
    holdout = datasets.loan_default(50, seed=2)
    holdout[datasets.TARGET] = [0] * 50
    pipeline = trained.bundle["pipeline"]
    with pytest.raises(InsufficientData, match="roc_auc"):
        gate(pipeline, pipeline, holdout, loan_schema, "roc_auc", 0.01, 0.1)


def test_a_collapsed_model_with_a_good_ranking_is_stopped_by_log_loss_on_the_golden_set(
    trained: TrainedModel, loan_columns: dict[str, Any], loan_schema: FeatureSchema, holdout: dict[str, Any]
) -> None:
    """make demo's round 2: heavy regularisation keeps the ranking (ROC AUC) but flattens the probabilities."""
    flat = train(loan_columns, loan_schema, TrainingParams(regularization_c=0.00001))
    golden = datasets.loan_default(600, seed=21)
    evaluation = gate(
        flat.bundle["pipeline"],
        trained.bundle["pipeline"],
        holdout,
        loan_schema,
        "roc_auc",
        1.0,
        0.5,
        bias_tolerance=1.0,
        golden=golden,
    )
    assert not evaluation.passed
    assert any(r.startswith("log_loss on the golden set rose by") for r in evaluation.reasons), evaluation.reasons
    assert (
        evaluation.golden_rows == 600
        and evaluation.golden_champion["log_loss"] < evaluation.golden_challenger["log_loss"]
    )

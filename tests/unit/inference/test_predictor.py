from __future__ import annotations

import numpy as np
import pytest

from loopml.errors import InvalidInput
from loopml.inference.predictor import Predictor
from loopml.registry import DataLineage, ModelMetadata
from loopml.training import TrainingParams, train
from loopml_dev import datasets


def _metadata(trained) -> ModelMetadata:
    return ModelMetadata(
        model="default",
        version=1,
        created_at="2026-11-25T00:00:00Z",
        created_by="test",
        library_versions={},
        training_data=DataLineage(uri="memory://", sha256="0" * 64, rows=1),
        params={},
        metrics={},
        feature_schema=trained.schema,
        artifact_sha256="0" * 64,
        artifact_key="k",
        explainer="linear",
    )


def test_predictions_match_the_pipeline(trained, loan_columns):
    predictor = Predictor(trained.bundle, _metadata(trained))
    rows = datasets.rows(loan_columns)[:20]
    out = predictor.predict(rows)
    matrix, _ = predictor.validator.validate(rows)
    expected = trained.bundle["pipeline"].predict_proba(matrix)
    for p, e in zip(out, expected, strict=True):
        assert p.probabilities == pytest.approx({"0": e[0], "1": e[1]})
        assert p.label == int(np.argmax(e))
        assert p.confidence == pytest.approx(e.max())


def test_linear_explanations_sum_to_the_log_odds_difference(trained, loan_columns):
    predictor = Predictor(trained.bundle, _metadata(trained))
    row = datasets.rows(loan_columns)[5]
    (p,) = predictor.predict([row], explain=True)
    pipeline = trained.bundle["pipeline"]
    matrix, _ = predictor.validator.validate([row])
    model = pipeline.named_steps["model"]
    logit_x = model.decision_function(pipeline.named_steps["prep"].transform(matrix))[0]
    logit_mean = model.decision_function(trained.bundle["background"][None, :])[0]
    sign = 1 if p.label == 1 else -1
    assert sum(p.explanation.values()) == pytest.approx(sign * (logit_x - logit_mean), abs=1e-4)
    assert set(p.explanation) == set(trained.schema.names)


def test_occlusion_explanations_for_tree_models(loan_columns, loan_schema):
    result = train(loan_columns, loan_schema, TrainingParams(model_type="hist_gradient_boosting", n_estimators=30))
    predictor = Predictor(result.bundle, _metadata(result))
    assert predictor.explainer == "occlusion"
    (p,) = predictor.predict([datasets.rows(loan_columns)[0]], explain=True)
    assert set(p.explanation) == set(loan_schema.names)
    assert any(abs(v) > 1e-6 for v in p.explanation.values())


def test_invalid_rows_raise_with_field_names(trained):
    predictor = Predictor(trained.bundle, _metadata(trained))
    with pytest.raises(InvalidInput) as info:
        predictor.predict([{"age": 30}])
    missing = {e["loc"][-1] for e in info.value.errors if e["type"] == "missing"}
    assert missing == set(trained.schema.names) - {"age"}

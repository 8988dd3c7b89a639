"""The compiled form: made at registration, verified against scikit-learn, refused when it differs or is tampered with."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from loopml import keys
from loopml.compilation import NotCompilable, compile_model
from loopml.compiled import CompiledModel
from loopml.data import write_csv
from loopml.errors import IntegrityError, Unservable
from loopml.inference.predictor import Predictor
from loopml.promotion import Promotion
from loopml.registration import columns_of, prepare
from loopml.registry import ModelRegistry
from loopml.schema import infer_schema
from loopml.training import RECIPES, TrainedModel, TrainingParams, train
from loopml_dev import datasets
from loopml_dev.memory import MemoryObjectStore
from tests.conftest import make_metadata

LOOPML = str(Path(sys.executable).with_name("loopml"))


@pytest.fixture(scope="module")
def loans() -> dict[str, list[Any]]:
    return datasets.loan_default(1200, seed=21, missing_rate=0.08)


@pytest.fixture(scope="module")
def recipes(loans: dict[str, list[Any]]) -> dict[str, TrainedModel]:
    schema = infer_schema(loans, datasets.TARGET)
    return {m: train(loans, schema, TrainingParams(model_type=m)) for m in RECIPES["classification"]}


def _frame(loans: dict[str, list[Any]]) -> tuple[pd.DataFrame, pd.Series]:
    x = pd.read_csv(io.BytesIO(write_csv(loans)))
    return x.drop(columns=[datasets.TARGET]), x[datasets.TARGET]


def test_every_recipe_compiles_within_its_familys_tolerance_and_the_registry_keeps_it_with_its_own_sha(
    recipes: dict[str, TrainedModel],
) -> None:
    store = MemoryObjectStore()
    registry = ModelRegistry(store)
    for model_type, trained in recipes.items():
        assert trained.compiled is not None, trained.not_compiled
        parity = trained.compiled.parity
        assert parity.family == ("linear" if model_type == "logistic_regression" else "trees")
        assert parity.label_mismatches == 0 and parity.max_abs_diff <= parity.tolerance
        assert parity.rows == len(trained.reference_labels)
        meta = trained.register(registry, make_metadata(trained, model=model_type.replace("_", "-")))
        assert meta.compiled is not None and meta.compiled.parity == parity
        data = store.objects[meta.compiled.key]
        assert meta.compiled.key.endswith(keys.COMPILED) and hashlib.sha256(data).hexdigest() == meta.compiled.sha256
        assert store.objects[meta.compiled.key + ".sha256"].decode().startswith(meta.compiled.sha256)


def test_compiled_predictions_and_explanations_are_the_pipelines(
    recipes: dict[str, TrainedModel], loans: dict[str, list[Any]]
) -> None:
    rows = datasets.rows(datasets.loan_default(40, seed=22, missing_rate=0.2))
    rows[0]["purpose"] = "a purpose never seen"  # unknown categories are all-zero in both forms
    for trained in recipes.values():
        assert trained.compiled is not None
        meta = make_metadata(trained)
        compiled = Predictor(CompiledModel(trained.compiled.onnx, _sha(trained.compiled.onnx), "test"), meta)
        reference = Predictor(trained.bundle, meta)
        assert compiled.explainer == reference.explainer
        for ours, theirs in zip(
            compiled.predict(rows, explain=True), reference.predict(rows, explain=True), strict=True
        ):
            assert ours.label == theirs.label
            assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-5)
            assert ours.explanation == pytest.approx(theirs.explanation, abs=1e-4)


def test_a_tampered_onnx_file_is_refused_before_onnxruntime_parses_it(
    recipes: dict[str, TrainedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    data = recipes["random_forest"].compiled.onnx  # type: ignore[union-attr]
    parsed: list[bytes] = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda raw, *a, **k: parsed.append(raw) or real(raw, *a, **k))
    tampered = data[:-64] + bytes(64)
    with pytest.raises(IntegrityError, match="does not match the registered"):
        CompiledModel(tampered, _sha(data), "models/x/v1/model.onnx")
    assert parsed == []
    # and bytes that match their hash but are not a loopml compiled model are refused, named
    with pytest.raises(IntegrityError, match="not a loopml compiled model"):
        CompiledModel(b"not onnx", _sha(b"not onnx"), "models/x/v1/model.onnx")


def test_a_compiled_form_that_scores_differently_is_not_registered_as_compiled(
    recipes: dict[str, TrainedModel],
) -> None:
    """The parity gate, attacked: scikit-learn's reference scores moved by 0.01 on one row."""
    trained = recipes["hist_gradient_boosting"]
    expected = np.array(trained.reference_proba, copy=True)
    expected[3] = expected[3][::-1]
    pipeline = trained.bundle["pipeline"]
    with pytest.raises(NotCompilable, match=r"scores differently .* 1 rows with another label"):
        compile_model(pipeline, trained.schema, trained.bundle, trained.reference_matrix, expected)


def test_user_pipelines_compile_whole_with_missing_categories(loans: dict[str, list[Any]]) -> None:
    x, y = _frame(loans)
    numeric = [c for c in x.columns if x[c].dtype.kind in "fi"]
    text = [c for c in x.columns if c not in numeric]
    assert x[text].isna().to_numpy().any()  # the drill's premise: the imputer sees NaN categories
    features = ColumnTransformer(
        [
            ("n", Pipeline([("fill", SimpleImputer(strategy="median")), ("z", StandardScaler())]), numeric),
            ("c", Pipeline([("fill", SimpleImputer(strategy="most_frequent")), ("hot", OneHotEncoder())]), text),
        ]
    )
    model = Pipeline([("features", features), ("lr", LogisticRegression(max_iter=3000))]).fit(x, y)
    # and an encoder that learned NaN as a category itself (the README's example)
    encoded = ColumnTransformer([("n", SimpleImputer(), numeric), ("c", OneHotEncoder(handle_unknown="ignore"), text)])
    learned = Pipeline([("features", encoded), ("gbm", GradientBoostingClassifier(n_estimators=30))]).fit(x, y)
    assert any(isinstance(c, float) for cats in learned[0].named_transformers_["c"].categories_ for c in cats)
    for fitted in (model, learned):
        trained = prepare(fitted, *columns_of(x, y))
        assert trained.compiled is not None, trained.not_compiled
        assert trained.compiled.parity.label_mismatches == 0


def _tree_attributes(data: bytes) -> set[str]:
    import onnx

    graph = onnx.load_from_string(data).graph
    return {a.name for n in graph.node if n.op_type.startswith("TreeEnsemble") for a in n.attribute}


def test_tree_attributes_at_their_defaults_are_dropped_and_others_kept(
    recipes: dict[str, TrainedModel], loans: dict[str, list[Any]]
) -> None:
    """A forest's hit rates and missing-value tracks are all defaults: dropped (parity measured after). A
    HistGradientBoosting fitted on NaN routes missing values: its tracks are kept, and still score the same."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    forest = recipes["random_forest"].compiled
    assert forest is not None and forest.parity.max_abs_diff <= forest.parity.tolerance
    attributes = _tree_attributes(forest.onnx)
    assert "nodes_values" in attributes
    assert not attributes & {"nodes_hitrates", "nodes_missing_value_tracks_true"}
    x, y = _frame(loans)
    numeric = x.select_dtypes("number")
    assert numeric.isna().to_numpy().any()
    gaps = prepare(HistGradientBoostingClassifier(max_iter=30).fit(numeric, y), *columns_of(numeric, y)).compiled
    assert gaps is not None and gaps.parity.label_mismatches == 0
    assert "nodes_missing_value_tracks_true" in _tree_attributes(gaps.onnx)


def _unconvertible(x: pd.DataFrame, y: pd.Series) -> Any:
    numeric = x.select_dtypes("number").columns.tolist()
    return Pipeline(
        [("fill", SimpleImputer()), ("log", FunctionTransformer(np.log1p)), ("lr", LogisticRegression(max_iter=500))]
    ).fit(x[numeric].abs(), y)


def test_a_model_that_does_not_convert_is_served_by_scikit_learn_and_refused_by_the_compiled_runtime(
    loans: dict[str, list[Any]],
) -> None:
    x, y = _frame(loans)
    model = _unconvertible(x, y)
    numeric = x.select_dtypes("number").columns.tolist()
    trained = prepare(model, *columns_of(x[numeric].abs(), y))
    assert trained.compiled is None
    assert trained.not_compiled and "FunctionTransformer" in trained.not_compiled
    store = MemoryObjectStore()
    meta = trained.register(ModelRegistry(store), make_metadata(trained))
    assert meta.compiled is None and not any(k.endswith(keys.COMPILED) for k in store.objects)

    class Lane:
        def __init__(self, runtime: str) -> None:
            self.runtime = runtime

        def environment(self, qualifier: str = "$LATEST") -> dict[str, str]:
            return {"MODEL_RUNTIME": self.runtime}

        def routing(self) -> tuple[str, dict[str, float]]:
            return "1", {}

        def publish(self, variables: dict[str, str], description: str) -> str:
            return "2"

        def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
            return None

    with pytest.raises(Unservable, match=r"no compiled form .*FunctionTransformer.*runtime='sklearn'"):
        Promotion(ModelRegistry(store), Lane("compiled")).promote("default", 1, "t", "t")
    served = Promotion(ModelRegistry(store), Lane("sklearn")).promote("default", 1, "t", "t")
    assert served.version == 1


def test_loopml_register_refuses_what_the_declared_compiled_runtime_cannot_serve(
    loans: dict[str, list[Any]], tmp_path: Path
) -> None:
    """As typed: `loopml register --model default ...` (declared compiled) of a model that does not convert."""
    x, y = _frame(loans)
    numeric = x.select_dtypes("number").columns.tolist()
    joblib.dump(_unconvertible(x, y), tmp_path / "model.joblib")
    frame = x[numeric].abs().assign(default=y)
    frame.to_csv(tmp_path / "data.csv", index=False)
    registry = tmp_path / "registry"
    argv = ["register", "--model", "default", "--estimator", "model.joblib", "--data", "data.csv"]
    done = subprocess.run(
        [LOOPML, *argv, "--target", "default", "--folder", str(registry)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert "served by the compiled runtime, which cannot serve this model" in done.stderr
    assert "FunctionTransformer" in done.stderr and "runtime='sklearn'" in done.stderr
    assert "Traceback" not in done.stderr and not list(registry.rglob("metadata.json"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Bring your own model: a user's fitted pipeline registers, serves and refits as it is; every refusal is one
line naming its cause."""

from __future__ import annotations

import io
import warnings
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn.base
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import loopml
from loopml.data import read_table, write_csv
from loopml.errors import IntegrityError, InvalidInput
from loopml.inference.predictor import Predictor
from loopml.registration import prepare
from loopml.registry import ModelRegistry
from loopml.training import TrainingParams, train
from loopml_dev import datasets
from loopml_dev.memory import MemoryObjectStore

TARGET = datasets.TARGET


@pytest.fixture(scope="module")
def loan_csv() -> bytes:
    return write_csv(datasets.loan_default(1200, seed=11))


@pytest.fixture(scope="module")
def frame(loan_csv: bytes) -> tuple[pd.DataFrame, pd.Series]:
    x = pd.read_csv(io.BytesIO(loan_csv))
    return x.drop(columns=[TARGET]), x[TARGET]


def user_pipeline(x: pd.DataFrame) -> Pipeline:
    """What a notebook has: named columns, its own step names, gradient boosting."""
    numeric = [c for c in x.columns if x[c].dtype.kind in "fi"]
    categorical = [c for c in x.columns if c not in numeric]
    features = ColumnTransformer(
        [
            ("nums", Pipeline([("fill", SimpleImputer()), ("z", StandardScaler())]), numeric),
            ("cats", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline(
        [("features", features), ("classifier", GradientBoostingClassifier(n_estimators=25, random_state=0))]
    )


@pytest.fixture(scope="module")
def fitted(frame: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    x, y = frame
    return user_pipeline(x).fit(x, y)


def test_a_dataframe_pipeline_serves_what_it_predicts_on_the_dataframe_without_pandas(
    fitted: Pipeline, frame: tuple[pd.DataFrame, pd.Series], loan_csv: bytes
) -> None:
    trained = prepare(fitted, read_table(loan_csv, "loans.csv"), TARGET)
    assert trained.params.model_type == "user_estimator"
    assert trained.params.estimator == "Pipeline(features=ColumnTransformer, classifier=GradientBoostingClassifier)"
    served = trained.bundle["pipeline"]
    columns = served.estimator.steps[0][1].transformers_
    assert all(isinstance(c, int) for _, _, cols in columns for c in cols)  # by position: no DataFrame needed
    x, _ = frame
    rows = x.head(40).to_dict("records")
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    meta = loopml_metadata(trained)
    predictions = Predictor(trained.bundle, meta).predict(rows, explain=True)
    expected = fitted.predict_proba(x.head(40))
    got = np.array([[p.probabilities[str(c)] for c in fitted.classes_] for p in predictions])
    assert np.abs(got - expected).max() < 1e-9
    assert set(predictions[0].explanation or {}) == set(x.columns)  # occlusion, per the user's feature


def test_retraining_refits_the_same_estimator_with_its_hyper_parameters_and_overrides(
    fitted: Pipeline, loan_csv: bytes
) -> None:
    columns = read_table(loan_csv, "loans.csv")
    trained = prepare(fitted, columns, TARGET)
    params = trained.params.model_copy(update={"estimator_params": {"classifier__n_estimators": 7}})
    again = train(columns, trained.schema, params, estimator=trained.bundle["pipeline"])
    refit = again.bundle["pipeline"].estimator
    assert type(refit.named_steps["classifier"]) is GradientBoostingClassifier
    assert refit.named_steps["classifier"].n_estimators == 7 and refit.named_steps["classifier"].learning_rate == 0.1
    assert refit is not trained.bundle["pipeline"].estimator  # a clone: the champion is untouched
    assert fitted.named_steps["classifier"].n_estimators == 25
    with pytest.raises(InvalidInput, match=r"has no parameter\(s\) \['classifier__nope'\]"):
        train(
            columns,
            trained.schema,
            params.model_copy(update={"estimator_params": {"classifier__nope": 1}}),
            estimator=trained.bundle["pipeline"],
        )


def test_a_numpy_pipeline_takes_the_data_columns_in_order(loan_csv: bytes) -> None:
    columns = read_table(loan_csv, "loans.csv")
    numeric = ["age", "income", "credit_score"]
    matrix = np.array([[float(v) if v else np.nan for v in columns[n]] for n in numeric]).T
    model = Pipeline([("fill", SimpleImputer()), ("lr", LogisticRegression(max_iter=500))]).fit(
        matrix, [int(v) for v in columns[TARGET]]
    )
    trained = prepare(model, {**{n: columns[n] for n in numeric}, TARGET: columns[TARGET]}, TARGET)
    assert trained.schema.names == numeric and trained.metrics.roc_auc is not None


def test_columns_the_data_has_and_the_estimator_does_not_take_are_left_out_and_said(
    fitted: Pipeline, loan_csv: bytes
) -> None:
    columns = {**read_table(loan_csv, "loans.csv"), "customer_id": [str(i) for i in range(1200)]}
    trained = prepare(fitted, columns, TARGET)
    assert "customer_id" not in trained.schema.names
    assert trained.notes == ["not features (the estimator does not take them): ['customer_id']"]


def test_the_python_api_registers_into_a_folder(
    fitted: Pipeline, frame: tuple[pd.DataFrame, pd.Series], tmp_path: Any
) -> None:
    x, y = frame
    meta: Any = loopml.register(fitted, x, y, model="churn", to=tmp_path / "registry", champion=True)
    assert meta.version == 1 and meta.params["estimator"].startswith("Pipeline(features=")
    from loopml.adapters.folder import FolderObjectStore

    registry = ModelRegistry(FolderObjectStore(tmp_path / "registry"))
    bundle, stored, _ = registry.load_bundle("churn", registry.alias("churn", "champion").version)
    assert bundle["pipeline"].estimator.named_steps["classifier"].n_estimators == 25
    assert stored.training_data.rows == len(y) and stored.training_data.uri.startswith("file://")
    assert stored.feature_schema.target == TARGET


# Each refusal: what a user gets wrong, and the one line that names it.
def _unfitted(x: pd.DataFrame, y: pd.Series) -> Any:
    return user_pipeline(x)


def _not_an_estimator(x: pd.DataFrame, y: pd.Series) -> Any:
    return {"model": "pickle"}


def _regressor(x: pd.DataFrame, y: pd.Series) -> Any:
    return Pipeline([("fill", SimpleImputer()), ("gbr", GradientBoostingRegressor(n_estimators=5))]).fit(
        x[["age", "income"]], y
    )


def _no_probabilities(x: pd.DataFrame, y: pd.Series) -> Any:
    return Pipeline([("fill", SimpleImputer()), ("svc", SVC())]).fit(x[["age", "income"]], y)


def _other_columns(x: pd.DataFrame, y: pd.Series) -> Any:
    renamed = x[["age", "income"]].rename(columns={"income": "salary"})
    return Pipeline([("fill", SimpleImputer()), ("lr", LogisticRegression())]).fit(renamed, y)


def _other_classes(x: pd.DataFrame, y: pd.Series) -> Any:
    labels = np.where(y == 1, "bad", "good")
    return Pipeline([("fill", SimpleImputer()), ("lr", LogisticRegression())]).fit(x[["age", "income"]], labels)


def _text_into_numbers(x: pd.DataFrame, y: pd.Series) -> Any:
    numbers = np.nan_to_num(x[["age", "income", "loan_amount", "credit_score"]].to_numpy(float))
    return LogisticRegression(max_iter=1000).fit(np.hstack([numbers] * 4)[:, :13], y)  # 13 numbers, no text


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_unfitted, r"is not fitted: call fit\(X, y\) before registering it"),
        (_not_an_estimator, r"not a scikit-learn estimator: got builtins\.dict"),
        (_no_probabilities, r"has no predict_proba: .*probability=True"),
        (_other_columns, r"takes columns the data does not have: \['salary'\]"),
        (_other_classes, r"predicts classes \['bad', 'good'\] but the target 'default' has \['0', '1'\] besides"),
        (_text_into_numbers, r"LogisticRegression does not accept the data's columns as they are: could not convert"),
    ],
)
def test_refusals_name_their_cause(
    make: Any, needle: str, frame: tuple[pd.DataFrame, pd.Series], loan_csv: bytes
) -> None:
    x, y = frame
    estimator = make(x, y)
    with pytest.raises(InvalidInput, match=needle) as caught:
        prepare(estimator, read_table(loan_csv, "loans.csv"), TARGET)
    assert "\n" not in str(caught.value)


def test_a_regressor_of_a_text_target_is_refused(frame: tuple[pd.DataFrame, pd.Series], loan_csv: bytes) -> None:
    x, y = frame
    columns = read_table(loan_csv, "loans.csv")
    columns = {"age": columns["age"], "income": columns["income"], "region": columns["region"]}
    model = _regressor(x, y)
    with pytest.raises(
        InvalidInput, match=r"GradientBoostingRegressor\) is a regressor but the target 'region' is not"
    ):
        prepare(model, columns, "region")


def test_a_classifier_of_a_continuous_target_is_refused(frame: tuple[pd.DataFrame, pd.Series]) -> None:
    x, _ = frame
    income = x["income"].fillna(0).round(-2)
    model = Pipeline([("fill", SimpleImputer()), ("lr", LogisticRegression(max_iter=50))]).fit(x[["age"]], income)
    columns = {"age": x["age"].tolist(), "income": income.tolist()}
    with pytest.raises(InvalidInput, match=r"is a classifier but the target 'income' is continuous"):
        prepare(model, columns, "income")


def test_a_wrong_number_of_columns_is_refused_with_the_counts(loan_csv: bytes) -> None:
    model = LogisticRegression().fit(np.random.default_rng(0).normal(size=(60, 3)), [0, 1] * 30)
    with pytest.raises(InvalidInput, match=r"LogisticRegression takes 3 columns; the data has 13 besides the target"):
        prepare(model, read_table(loan_csv, "loans.csv"), TARGET)


def test_a_pipeline_that_predicts_otherwise_by_position_is_refused(
    frame: tuple[pd.DataFrame, pd.Series], loan_csv: bytes
) -> None:
    """A column selected by a callable on the DataFrame itself (not by name): position cannot reproduce it."""
    x, y = frame

    class Reorder(sklearn.base.BaseEstimator, sklearn.base.TransformerMixin):
        def fit(self, data: Any, y: Any = None) -> Any:
            self.n_features_in_ = data.shape[1]
            self.feature_names_in_ = np.asarray(list(data.columns), dtype=object)
            return self

        def transform(self, data: Any) -> Any:  # a DataFrame: by name; an array: the wrong columns
            return data[["income", "age"]].to_numpy(float) if hasattr(data, "columns") else data[:, :2]

    model = Pipeline([("pick", Reorder()), ("fill", SimpleImputer()), ("lr", LogisticRegression())]).fit(x, y)
    with pytest.raises(InvalidInput, match=r"cannot serve without pandas: by position it predicts differently"):
        prepare(model, read_table(loan_csv, "loans.csv"), TARGET)


def test_a_pickle_from_another_scikit_learn_is_refused_at_load(
    fitted: Pipeline, loan_csv: bytes, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At load: the version's recorded scikit-learn is not the runtime's (registration's check is the CLI's)."""
    trained = prepare(fitted, read_table(loan_csv, "loans.csv"), TARGET)
    store = MemoryObjectStore()
    from loopml.registration import publish

    meta = publish(store, trained, "churn", loan_csv, "loans.csv", "test")
    registry = ModelRegistry(store)
    stored = registry.metadata("churn", meta.version)
    old = stored.model_copy(update={"library_versions": {**stored.library_versions, "scikit-learn": "1.5.2"}})
    store.put(f"models/churn/v{meta.version}/metadata.json", old.model_dump_json().encode())
    with pytest.raises(IntegrityError, match=r"was saved with scikit-learn 1\.5\.2; this runtime has 1\.\d+"):
        registry.load_bundle("churn", meta.version)


def test_joblib_records_the_scikit_learn_that_saved_it(fitted: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI's registration check relies on: an old pickle warns with its version when loaded."""
    monkeypatch.setattr(sklearn.base, "__version__", "1.5.2")
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    monkeypatch.undo()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        joblib.load(io.BytesIO(buffer.getvalue()))
    assert any(getattr(w.message, "original_sklearn_version", None) == "1.5.2" for w in seen)


def loopml_metadata(trained: Any) -> Any:
    from loopml.registry import DataLineage
    from loopml.training import metadata_for

    return metadata_for(trained, "churn", DataLineage(uri="memory://x", sha256="0" * 64, rows=1), "test")


def test_recipes_stay_what_loopml_train_builds(loan_csv: bytes) -> None:
    columns = read_table(loan_csv, "loans.csv")
    from loopml.schema import infer_schema

    with pytest.raises(InvalidInput, match="refitted from its registered version"):
        train(columns, infer_schema(columns, TARGET), TrainingParams(model_type="user_estimator"))

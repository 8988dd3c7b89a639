"""`loopml train` on scikit-learn's bundled data sets and `loopml register` of a user's joblib file, as typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pytest
import sklearn.base
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from loopml.adapters.folder import FolderObjectStore
from loopml.registry import ModelRegistry
from loopml_dev.cli import main


def export(loader: Any, path: Path, target: str = "target") -> Path:
    """A bundled data set as the CSV a user would have: its feature names, the target last."""
    frame = loader(as_frame=True).frame.rename(columns={"target": target})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("loader", "task", "metric"),
    [
        (load_breast_cancer, "classification", "roc_auc"),
        (load_wine, "classification", "f1_macro"),
        (load_diabetes, "regression", "rmse"),
    ],
)
def test_train_tells_the_task_from_the_target_and_registers(
    loader: Any, task: str, metric: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = export(loader, tmp_path / "data.csv")
    assert main(["train", "--data", str(data), "--target", "target", "--folder", str(tmp_path / "reg")]) == 0
    out = capsys.readouterr().out
    assert f"training default ({task}," in out and metric in out and "registered default v1" in out
    meta = ModelRegistry(FolderObjectStore(tmp_path / "reg")).metadata("default", 1)
    assert meta.feature_schema.task == task
    if task == "regression":
        assert meta.feature_schema.classes == [] and meta.metrics["interval_coverage"] >= 0.89
        assert meta.metrics["r2"] is not None and meta.metrics["r2"] > 0.3


def test_a_numeric_target_with_many_values_is_not_trained_as_hundreds_of_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = export(load_diabetes, tmp_path / "diabetes.csv", target="progression")
    argv = ["train", "--data", str(data), "--target", "progression", "--task", "classification"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loopml: error: target column 'progression' has 214 distinct numeric values: as")
    assert "use --task regression" in err and len(err) < 300 and "\n" not in err
    assert main([*argv[:-1], "regression", "--model-type", "logistic_regression"]) == 2
    assert "model_type logistic_regression does not do regression" in capsys.readouterr().err


def test_register_a_joblib_regressor_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = export(load_diabetes, tmp_path / "diabetes.csv", target="progression")
    frame = load_diabetes(as_frame=True).frame
    model = Pipeline([("scale", StandardScaler()), ("gbr", GradientBoostingRegressor(random_state=0))])
    model.fit(frame.drop(columns=["target"]), frame["target"])
    joblib.dump(model, tmp_path / "model.joblib")
    argv = ["register", "--model", "diabetes", "--estimator", str(tmp_path / "model.joblib"), "--data", str(data)]
    assert main([*argv, "--target", "progression", "--folder", str(tmp_path / "reg"), "--champion"]) == 0
    out = capsys.readouterr().out
    assert "registering diabetes: Pipeline(scale=StandardScaler, gbr=GradientBoostingRegressor)" in out
    assert "registered diabetes v1" in out and "rmse" in out and "validation on a split of --data" in out
    registry = ModelRegistry(FolderObjectStore(tmp_path / "reg"))
    meta = registry.metadata("diabetes", registry.alias("diabetes", "champion").version)
    assert meta.params["model_type"] == "user_estimator" and meta.feature_schema.regression


def test_register_refuses_a_pickle_from_another_scikit_learn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = export(load_diabetes, tmp_path / "diabetes.csv")
    frame = load_diabetes(as_frame=True).frame
    model = GradientBoostingRegressor(n_estimators=5).fit(frame.drop(columns=["target"]), frame["target"])
    monkeypatch.setattr(sklearn.base, "__version__", "1.5.2")  # what an older scikit-learn writes into the pickle
    joblib.dump(model, tmp_path / "old.joblib")
    monkeypatch.undo()
    argv = ["register", "--model", "m", "--estimator", str(tmp_path / "old.joblib"), "--data", str(data)]
    assert main([*argv, "--target", "target"]) == 2
    err = capsys.readouterr().err
    assert "old.joblib was saved with scikit-learn 1.5.2; this runtime has" in err and "not safe to load" in err


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"not a pickle", "not a joblib file of a fitted estimator"), (None, "no such file")],
)
def test_register_names_a_bad_estimator_file(
    content: bytes | None, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = export(load_wine, tmp_path / "wine.csv")
    path = tmp_path / "model.joblib"
    if content is not None:
        path.write_bytes(content)
    argv = ["register", "--model", "m", "--estimator", str(path), "--data", str(data), "--target", "target"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_register_with_a_holdout_measures_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = load_diabetes(as_frame=True).frame
    fit, held = frame.iloc[:350], frame.iloc[350:]
    fit.to_csv(tmp_path / "fit.csv", index=False)
    held.to_csv(tmp_path / "held.csv", index=False)
    model = GradientBoostingRegressor(random_state=0).fit(fit.drop(columns=["target"]), fit["target"])
    joblib.dump(model, tmp_path / "m.joblib")
    argv = ["register", "--model", "m", "--estimator", str(tmp_path / "m.joblib"), "--data", str(tmp_path / "fit.csv")]
    assert main([*argv, "--target", "target", "--holdout", str(tmp_path / "held.csv")]) == 0
    out = capsys.readouterr().out
    assert "validation on a split" not in out and "n 92" in out

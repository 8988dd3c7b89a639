"""Bring your own model, end to end on the local stack: (a) a user's DataFrame Pipeline with its own step
names around GradientBoostingClassifier, (b) a GradientBoostingRegressor pipeline on scikit-learn's
diabetes data. Each is registered with `loopml register`, served on its own lane, given feedback,
evaluated for drift, and retrained by the real state machine: the challenger is the same estimator
class refitted, rolled out as a canary under real traffic, and promoted.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.adapters.s3 import S3ObjectStore
from loopml.data import write_csv
from loopml.registry import ModelRegistry
from loopml.topology import ModelSpec, declaration, physical_name
from loopml_dev import datasets
from loopml_dev.local import LocalStack
from loopml_dev.local.stack import free_port
from loopml_dev.local.up import http_json
from tests.e2e.conftest import LogSink, wait_for

pytestmark = pytest.mark.e2e
LOOPML = str(Path(sys.executable).with_name("loopml"))
USER_MODELS = declaration((ModelSpec(name="churn"), ModelSpec(name="diabetes")))
# Tens of requests in the tests: the canary's margins are sized for them (the statistics are unit-tested).
FEW = {"min_predictions": 10, "max_error_rate_increase": 0.5, "max_degraded_rate_increase": 0.5}
# Both champions were fitted on all their reference rows, so they look better than they are on any
# holdout drawn from them: the gate is opened here; its rules are the recipes' (tested elsewhere).
OPEN_GATE = {"tolerance": 1.0, "golden_tolerance": 1.0, "log_loss_tolerance": 10.0, "bias_tolerance": 1.0}


def _loopml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOPML, *args], capture_output=True, text=True, timeout=240, check=False)


def _churn(folder: Path) -> tuple[Path, Path, pd.DataFrame, Pipeline]:
    """A notebook's model: read_csv, named columns, its own step names."""
    data = folder / "loans.csv"
    data.write_bytes(write_csv(datasets.loan_default(1500, seed=21)))
    frame = pd.read_csv(data)
    x, y = frame.drop(columns=[datasets.TARGET]), frame[datasets.TARGET]
    numeric = [c for c in x.columns if x[c].dtype.kind in "fi"]
    categorical = [c for c in x.columns if c not in numeric]
    features = ColumnTransformer(
        [
            ("nums", Pipeline([("fill", SimpleImputer(strategy="median")), ("z", StandardScaler())]), numeric),
            ("cats", Pipeline([("fill", SimpleImputer(strategy="most_frequent")), ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
        ]
    )  # fmt: skip
    model = Pipeline(
        [("features", features), ("classifier", GradientBoostingClassifier(n_estimators=40, random_state=0))]
    )
    model.fit(x, y)
    joblib.dump(model, folder / "churn.joblib")
    return data, folder / "churn.joblib", x, model


def _diabetes(folder: Path) -> tuple[Path, Path, pd.DataFrame, Pipeline]:
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    data = folder / "diabetes.csv"
    frame.to_csv(data, index=False)
    x, y = frame.drop(columns=["progression"]), frame["progression"]
    model = Pipeline([("scale", StandardScaler()), ("gbr", GradientBoostingRegressor(n_estimators=60, random_state=0))])
    model.fit(x, y)
    joblib.dump(model, folder / "diabetes.joblib")
    return data, folder / "diabetes.joblib", x, model


def _rows(x: pd.DataFrame, n: int, offset: int = 0) -> list[dict[str, Any]]:
    """DataFrame rows as JSON instances: NaN is null, numpy scalars plain numbers."""
    out = []
    for record in x.iloc[offset : offset + n].to_dict("records"):
        out.append({k: None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v)
                    for k, v in record.items()})  # fmt: skip
    return out


LOG = LogSink()


def _predict(api: str, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    status, body = http_json("POST", f"{api}/models/{model}/predict", {"instances": rows})
    assert status == 200, (body, LOG.lines[-40:])
    return list(body["predictions"])


class Traffic(threading.Thread):
    """Requests to one lane until stopped: the canary needs answers to judge by."""

    def __init__(self, api: str, model: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.api, self.model, self.rows = api, model, rows
        self.versions: set[int] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            status, body = http_json(
                "POST", f"{self.api}/models/{self.model}/predict", {"instance": self.rows[i % len(self.rows)]}
            )
            if status == 200:
                self.versions.add(body["model_version"])
            i += 1
            time.sleep(0.05)


def _retrain(stack: LocalStack, model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A Step Functions console run: the same JSON a user pastes, followed to its end under traffic."""
    sfn = stack.client("stepfunctions")
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    payload = {"model": model, "reason": "user model refit", "bake_minutes": 0.15, "canary_percent": 50,
               "canary_policy": FEW, **OPEN_GATE}  # fmt: skip
    execution = sfn.start_execution(
        stateMachineArn=arn, name=f"{model}-console-{int(time.time())}", input=json.dumps(payload)
    )
    traffic = Traffic(stack.api_url, model, rows)
    traffic.start()
    try:
        ended = wait_for(
            lambda: (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d,
            240,
            f"{model} retraining ended",
        )
    finally:
        traffic.halt.set()
        traffic.join(10)
    ended["served"] = sorted(traffic.versions)
    return dict(ended)


def test_users_own_classifier_and_regressor_go_round_the_whole_loop(tmp_path: Path) -> None:
    aws_port = free_port()
    port = ("--aws-port", str(aws_port))
    churn_data, churn_file, churn_x, churn_model = _churn(tmp_path)
    diabetes_data, diabetes_file, diabetes_x, diabetes_model = _diabetes(tmp_path)
    with LocalStack(
        tmp_path / "state",
        stage="local",
        api_port=0,
        aws_port=aws_port,
        topology=USER_MODELS,
        snapshot_interval_s=0,
        alarm_interval_s=0.5,
        function_log=LOG,
    ) as stack:
        registry = ModelRegistry(S3ObjectStore(stack.client("s3"), physical_name("local", "models")))
        # register: each user's file, as the README prints it
        for model, file, data, target in (
            ("churn", churn_file, churn_data, datasets.TARGET),
            ("diabetes", diabetes_file, diabetes_data, "progression"),
        ):
            done = _loopml("register", "--model", model, "--estimator", str(file), "--data", str(data),
                           "--target", target, "--local", "--champion", *port)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"{model} now serves v1" in done.stdout, done.stdout

        # serve: what the user's own estimator predicts on its DataFrame, from the compiled form (float32 ONNX,
        # so to 1e-5 rather than bit for bit; labels exactly)
        churn_rows, diabetes_rows = _rows(churn_x, 60), _rows(diabetes_x, 60)
        churn_out = _predict(stack.api_url, "churn", churn_rows)
        expected = churn_model.predict_proba(churn_x.iloc[:60])
        got = np.array([[p["probabilities"][str(c)] for c in churn_model.classes_] for p in churn_out])
        assert np.abs(got - expected).max() < 1e-5
        assert [p["prediction"] for p in churn_out] == churn_model.predict(churn_x.iloc[:60]).tolist()
        diabetes_out = _predict(stack.api_url, "diabetes", diabetes_rows)
        values = np.array([p["prediction"] for p in diabetes_out])
        truth = diabetes_model.predict(diabetes_x.iloc[:60])
        assert np.abs(values - truth).max() / max(1.0, np.abs(truth).max()) < 1e-5
        first = diabetes_out[0]
        assert first["probabilities"] == {} and first["confidence"] is None
        assert first["interval"][0] < first["prediction"] < first["interval"][1]
        status, explained = http_json(
            "POST", f"{stack.api_url}/models/diabetes/predict?explain=true", {"instance": diabetes_rows[0]}
        )
        assert status == 200 and set(explained["predictions"][0]["explanation"]) == set(diabetes_x.columns), explained

        # feedback: the true values, as the product would send them
        frame = load_diabetes(as_frame=True).frame
        for model, out, truth in (
            ("churn", churn_out, pd.read_csv(churn_data)[datasets.TARGET].iloc[:60].tolist()),
            ("diabetes", diabetes_out, frame["target"].iloc[:60].tolist()),
        ):
            items = [{"prediction_id": p["prediction_id"], "label": label} for p, label in zip(out, truth, strict=True)]
            status, body = http_json("POST", f"{stack.api_url}/models/{model}/feedback", {"items": items})
            assert status in (200, 202) and body["accepted"] == 60, body
        status, refused = http_json("POST", f"{stack.api_url}/models/diabetes/feedback",
                                    {"prediction_id": diabetes_out[0]["prediction_id"], "label": "high"})  # fmt: skip
        assert status == 422 and "not a finite number" in json.dumps(refused), refused

        # drift: the regression is judged on its values and its live errors
        def evaluated() -> dict[str, Any] | None:
            status, summary = http_json("POST", f"{stack.api_url}/drift/evaluate", {"model": "diabetes"})
            assert status == 200, summary
            return summary if summary["n_labelled"] >= 60 else None

        summary = wait_for(evaluated, 60, "diabetes's labels stored and evaluated")
        assert summary["n_rows"] == 61 and summary["prediction_drift"] is not None  # the 60 and the explained one
        assert {"rmse", "mae", "interval_coverage"} <= set(summary["live_metrics"]), summary
        assert summary["live_metrics"]["rmse"] == pytest.approx(
            float(np.sqrt(np.mean((values - frame["target"].iloc[:60].to_numpy()) ** 2))), rel=1e-6
        )

        # batch scoring: an uploaded file of each, scored by its own model (values and intervals for the regressor)
        s3, bucket = stack.client("s3"), physical_name("local", "models")
        visits = frame.drop(columns=["target"]).iloc[:50]
        s3.put_object(Bucket=bucket, Key="batch/input/diabetes/visits.csv", Body=visits.to_csv(index=False).encode())
        applications = pd.read_csv(churn_data).drop(columns=[datasets.TARGET]).iloc[:50]
        s3.put_object(Bucket=bucket, Key="batch/input/churn/apps.csv", Body=applications.to_csv(index=False).encode())

        def scored(model: str, name: str) -> tuple[pd.DataFrame] | None:
            try:
                body = s3.get_object(Bucket=bucket, Key=f"batch/output/{model}/{name}.scored.csv")["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
            return (pd.read_csv(io.BytesIO(body)),)

        (values_out,) = wait_for(lambda: scored("diabetes", "visits"), 60, "the diabetes file scored", LOG)
        assert list(values_out.columns[-5:]) == ["row_number", "model_version", "prediction", "lower", "upper"]
        batch_truth = diabetes_model.predict(visits)  # the compiled form, float32: relative to the values' size
        assert np.abs(values_out["prediction"] - batch_truth).max() / max(1.0, np.abs(batch_truth).max()) < 1e-5
        assert (values_out["lower"] < values_out["prediction"]).all() and (
            values_out["prediction"] < values_out["upper"]
        ).all()
        (classes_out,) = wait_for(lambda: scored("churn", "apps"), 60, "the churn file scored", LOG)
        expected = churn_model.predict_proba(applications)[:, 1]
        assert np.abs(classes_out["probability_1"] - expected).max() < 1e-5

        # retraining: the same estimator class refitted, a canary under traffic, promoted on evidence
        for model, rows, step, cls in (
            ("churn", churn_rows, "classifier", GradientBoostingClassifier),
            ("diabetes", diabetes_rows, "gbr", GradientBoostingRegressor),
        ):
            ended = _retrain(stack, model, rows)
            assert ended["status"] == "SUCCEEDED", ended
            output = json.loads(ended["output"])
            assert output["outcome"] == "promoted", output
            assert ended["served"] == [1, 2], ended["served"]  # both versions answered during the bake
            champion = registry.resolve(model, "champion")
            assert champion == 2
            bundle, meta, _ = registry.load_bundle(model, champion)
            refit = bundle["pipeline"].estimator
            assert type(refit.named_steps[step]) is cls and meta.params["model_type"] == "user_estimator"
            assert meta.parent_version == 1 and meta.training_data.uri.endswith("/train.csv")
            served = _predict(stack.api_url, model, rows[:3])
            assert {p["model_version"] for p in served} == {2}

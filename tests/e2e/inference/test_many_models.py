"""Two models in one deployment, each in its own lane: the loan model and scikit-learn's wine data set.

A second model is a declaration change (``ModelSpec(name="wine")``) plus ``loopml train --model wine``:
it gets its own inference function and alias ``live``, its routes under ``/models/wine/``, its own drift
schedule. A canary, a promotion and a rollback of wine leave the loan model's alias, versions and
answers as they were.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_wine

from loopml.retrain.adapters import InferenceAlias
from loopml.topology import ModelSpec, declaration
from loopml_dev.local import LocalStack
from loopml_dev.local.stack import free_port
from loopml_dev.local.up import Progress, ensure_first_model, example_instance, http_json
from tests.e2e.conftest import LogSink

pytestmark = pytest.mark.e2e
LOOPML = str(Path(sys.executable).with_name("loopml"))
TWO_MODELS = declaration((ModelSpec(name="default"), ModelSpec(name="wine", drift_every_minutes=30)))


@pytest.fixture
def log() -> LogSink:
    return LogSink()


def _loopml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOPML, *args], capture_output=True, text=True, timeout=180, check=False)


def _wine_csv(path: Path) -> dict[str, Any]:
    data = load_wine()
    names = [n.replace("/", "_") for n in data.feature_names]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*names, "cultivar"])
        for row, label in zip(data.data, data.target, strict=True):
            writer.writerow([*(float(v) for v in row), f"c{label}"])
    return dict(zip(names, (float(v) for v in data.data[0]), strict=True))


def _live(stack: LocalStack, function: str) -> dict[str, Any]:
    alias = stack.client("lambda").get_alias(FunctionName=stack.function_name(function), Name="live")
    return {"version": alias["FunctionVersion"], "weights": alias.get("RoutingConfig", {})}


def test_two_models_are_served_side_by_side_and_one_lanes_rollout_leaves_the_other_alone(
    tmp_path: Path, log: LogSink
) -> None:
    aws_port = free_port()
    port = ("--aws-port", str(aws_port))
    wine_row = _wine_csv(tmp_path / "wine.csv")
    with LocalStack(
        tmp_path / "state",
        stage="local",
        api_port=0,
        aws_port=aws_port,
        topology=TWO_MODELS,
        snapshot_interval_s=0,
        alarm_interval_s=0,
        function_log=log,
    ) as stack:
        ensure_first_model(stack, Progress(io.StringIO()), rows=1000)
        trained = _loopml("train", "--data", str(tmp_path / "wine.csv"), "--target", "cultivar", "--model", "wine",
                          "--local", "--champion", *port)  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        assert "wine now serves v1" in trained.stdout, trained.stdout

        loan_before = http_json("POST", f"{stack.api_url}/predict", {"instance": example_instance()})
        assert loan_before[0] == 200 and loan_before[1]["model"] == "default", loan_before
        status, wine = http_json("POST", f"{stack.api_url}/models/wine/predict", {"instance": wine_row})
        assert status == 200 and wine["model"] == "wine" and wine["predictions"][0]["prediction"] in ("c0", "c1", "c2")
        status, same = http_json("POST", f"{stack.api_url}/models/default/predict", {"instance": example_instance()})
        assert status == 200 and same["model"] == "default"
        status, refused = http_json("POST", f"{stack.api_url}/models/wine/predict", {"instance": example_instance()})
        assert status == 422, refused  # the loan features are not wine's: each lane validates its own schema
        status, health = http_json("GET", f"{stack.api_url}/models/wine/health")
        assert status == 200 and health["model"] == "wine"
        status, doc = http_json("GET", f"{stack.api_url}/models/wine/openapi.json")
        assert status == 200 and doc["servers"][0]["url"].endswith("/models/wine"), doc["servers"]

        loan_alias = _live(stack, "inference")
        # wine's lane: a second version, a canary at 50 %, then a rollback, all on inference-wine
        again = _loopml("train", "--data", str(tmp_path / "wine.csv"), "--target", "cultivar", "--model", "wine",
                        "--model-type", "random_forest", "--local", *port)  # fmt: skip
        assert again.returncode == 0 and "registered wine v2" in again.stdout, again
        promoted = _loopml("promote", "wine", "2", *port)
        assert promoted.returncode == 0 and "wine now serves v2 (was v1)" in promoted.stdout, promoted
        wine_alias = InferenceAlias(stack.client("lambda"), stack.function_name("inference-wine"), "live")
        primary, _ = wine_alias.routing()
        v1_lambda = str(int(primary) - 1)
        wine_alias.route(primary, v1_lambda, 0.5)
        served = {http_json("POST", f"{stack.api_url}/models/wine/predict", {"instance": wine_row})[1]["model_version"]
                  for _ in range(30)}  # fmt: skip
        assert served == {1, 2}, served  # the canary split is wine's alone
        assert _live(stack, "inference") == loan_alias
        wine_alias.route(primary)
        rolled = _loopml("rollback", "wine", *port)
        assert rolled.returncode == 0 and "wine rolled back to v1 (was v2)" in rolled.stdout, rolled

        assert _live(stack, "inference") == loan_alias  # the loan model's alias, versions and answers: as before
        loan_after = http_json("POST", f"{stack.api_url}/predict", {"instance": example_instance()})
        assert loan_after[1]["model_version"] == loan_before[1]["model_version"]
        assert loan_after[1]["predictions"][0]["probabilities"] == loan_before[1]["predictions"][0]["probabilities"]
        status, wine = http_json("POST", f"{stack.api_url}/models/wine/predict", {"instance": wine_row})
        assert status == 200 and wine["model_version"] == 1

        # and a canary rollout of wine through the retraining state machine: wine's lane only
        run = _loopml("retrain", "--model", "wine", "--bake-minutes", "0.05", "--canary-percent", "20", "--wait",
                      "--timeout-minutes", "4", *port)  # fmt: skip
        assert "  DeployCanary" in run.stdout and "  CheckCanary" in run.stdout, run.stdout + run.stderr
        assert "CanaryInconclusive" in run.stderr, run.stderr  # no traffic to judge by: never promoted
        assert wine_alias.routing()[1] == {}  # the canary's weight removed again
        assert _live(stack, "inference") == loan_alias

        listed = _loopml("models", "list", *port)
        rows = {line.split()[0]: line.split()[1:5] for line in listed.stdout.splitlines()[1:]}
        assert rows == {"default": ["1", "v1", "v1", "v1"], "wine": ["3", "v1", "v3", "v1"]}, listed.stdout
        assert _loopml("promote", "nope", "1", *port).stderr.strip().endswith("then `make up`"), (
            "a model without a lane is refused by name"
        )
        evaluated = stack.trigger_schedule("evaluate-wine", "drift")  # wine's own drift schedule
        assert evaluated.function_error is None and b'"model": "wine"' in evaluated.payload.replace(b'":"', b'": "')

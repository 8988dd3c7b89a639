"""The local stack with the inference, feedback and retrain functions and the real retrain state machine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopml import keys
from loopml.adapters.s3 import S3ObjectStore
from loopml.data import sha256_hex, write_csv
from loopml.feedback import layout
from loopml.registry import ModelRegistry
from loopml.topology import TOPOLOGY, Topology
from loopml_dev import datasets
from loopml_dev.local import LocalStack
from loopml_dev.local.up import MODEL
from tests.e2e.conftest import served_stack, wait_for

pytestmark = pytest.mark.e2e

RETRAIN_TOPOLOGY = Topology(
    buckets=TOPOLOGY.buckets,
    queues=(TOPOLOGY.queue("capture"), TOPOLOGY.queue("feedback")),
    tables=TOPOLOGY.tables,
    secrets=TOPOLOGY.secrets,
    functions=(TOPOLOGY.function("inference"), TOPOLOGY.function("feedback"), TOPOLOGY.function("retrain")),
    state_machines=tuple(m for m in TOPOLOGY.state_machines if m.name == "retrain"),
)
FIRST_MODEL_ROWS = 1500


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("retrain-state")
    # One model cache shared by every inference worker of this stack: a canary whose own artifact fails
    # verification then falls back to the champion's verified copy and serves degraded answers.
    shared_cache = {"inference": {"CACHE_DIR": str(state / "model-cache")}}
    with served_stack(  # stage "local": the `loopml` CLI (retrain, promote) talks to this stack as to `make up`
        state,
        FIRST_MODEL_ROWS,
        stage="local",
        topology=RETRAIN_TOPOLOGY,
        alarm_interval_s=0.5,
        env_overrides=shared_cache,
    ) as local:
        yield local


class Harness:
    """Runs executions of the retrain state machine and reads what they left behind."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.store = S3ObjectStore(stack.client("s3"), _bucket(stack))
        self.registry = ModelRegistry(self.store)
        self.sfn = stack.client("stepfunctions")
        self.lam = stack.client("lambda")
        self.arn = self.sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
        self.inference = stack.function_name("inference")

    def start(self, name: str, payload: dict[str, Any]) -> str:
        return str(
            self.sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(payload))["executionArn"]
        )

    def wait(self, arn: str, timeout_s: float = 150.0) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            return described if described["status"] != "RUNNING" else None

        found: dict[str, Any] = wait_for(ended, timeout_s, f"execution {arn} ended")
        return found

    def run(self, name: str, payload: dict[str, Any], timeout_s: float = 150.0) -> dict[str, Any]:
        return self.wait(self.start(name, payload), timeout_s)

    def champion(self) -> int:
        return self.registry.resolve(MODEL, "champion")

    def alias(self) -> tuple[str, dict[str, float]]:
        alias = self.lam.get_alias(FunctionName=self.inference, Name="live")
        return alias["FunctionVersion"], alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})

    def model_version_of(self, lambda_version: str) -> str | None:
        config = self.lam.get_function_configuration(FunctionName=self.inference, Qualifier=lambda_version)
        return config["Environment"]["Variables"].get("MODEL_VERSION")

    def history(self, run_id: str) -> list[Any]:
        return [e for e in self.registry.history(MODEL) if e.details.get("run_id") == run_id]

    def sha_of(self, uri: str) -> str:
        return sha256_hex(self.store.get(uri.split("/", 3)[3]))

    def upload(self, name: str, columns: dict[str, list[Any]]) -> str:
        key = f"datasets/{MODEL}/uploads/{name}.csv"
        self.store.put(key, write_csv(columns))
        return self.store.uri(key)

    def capture_labelled(self, columns: dict[str, list[Any]], model_version: int, source: str = "system") -> int:
        """Labelled predictions in the captured dataset, as the capture and feedback functions store them."""
        now = datetime.now(UTC) - timedelta(minutes=5)
        rows = datasets.rows(columns)
        labels = columns[datasets.TARGET]
        predictions, feedback = [], []
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            moment = now + timedelta(milliseconds=i)
            pid = layout.prediction_id(moment, f"{i:024x}")
            predictions.append(
                {
                    "kind": "prediction",
                    "schema_version": 1,
                    "prediction_id": pid,
                    "model": MODEL,
                    "model_version": model_version,
                    "lambda_version": "1",
                    "request_id": f"r{i}",
                    "timestamp": moment.isoformat(),
                    "features": row,
                    "prediction": 0,
                    "probabilities": {"0": 0.5, "1": 0.5},
                    "confidence": 0.5,
                    "latency_ms": 1.0,
                }
            )
            feedback.append(
                {
                    "prediction_id": pid,
                    "feedback_id": f"f{i:08d}",
                    "label": label,
                    "source": source,
                    "received_at": (moment + timedelta(seconds=1)).isoformat(),
                }
            )
        ids = [p["prediction_id"] for p in predictions]
        self.store.put(keys.captured_key(MODEL, "predictions", now, ids), layout.encode(predictions))
        self.store.put(keys.captured_key(MODEL, "feedback", now, ids), layout.encode(feedback))
        return len(rows)


def _bucket(stack: LocalStack) -> str:
    from loopml.topology import physical_name

    return physical_name(stack.stage, "models")


@pytest.fixture(scope="module")
def harness(stack: LocalStack) -> Harness:
    return Harness(stack)


def run_name(prefix: str) -> str:
    return f"{prefix}-{int(time.time() * 1000)}"

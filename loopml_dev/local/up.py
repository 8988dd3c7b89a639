"""``loopml local up``: the whole system on one machine, from an empty folder to a served model.

Starts the local stack, trains and registers the first model from the bundled data set when the
registry is empty (state persists, so later runs reuse it), warms the inference function, prints one
screen saying what runs where and how to call it, and serves until Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from loopml import keys
from loopml.adapters.s3 import S3ObjectStore
from loopml.data import sha256_hex, write_csv
from loopml.errors import LoopmlError
from loopml.registry import DataLineage, ModelMetadata, ModelRegistry
from loopml.schema import SchemaConfig, infer_schema
from loopml.topology import dlq_name, physical_name
from loopml_dev import datasets
from loopml_dev.local.apigw import ADMIN_TOKEN_HEADER
from loopml_dev.local.stack import ADMIN_TOKEN_FILE, LocalStack

STAGE = "local"
MODEL = "default"
FIRST_MODEL_ROWS = 5000
SENSITIVE = SchemaConfig.model_validate({"features": {name: {"sensitive": True} for name in datasets.SENSITIVE}})


class Progress:
    """One line per step with its duration: visible progress without a terminal UI dependency."""

    def __init__(self, out: Any = sys.stdout) -> None:
        self._out = out
        self._t0 = time.perf_counter()
        self._last = self._t0

    def step(self, message: str) -> None:
        now = time.perf_counter()
        print(f"  [{now - self._t0:6.1f}s] {message}", file=self._out, flush=True)
        self._last = now

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


def registry_for(stack: LocalStack) -> tuple[ModelRegistry, S3ObjectStore]:
    store = S3ObjectStore(stack.client("s3"), physical_name(stack.stage, "models"))
    return ModelRegistry(store), store


def ensure_first_model(stack: LocalStack, progress: Progress, rows: int = FIRST_MODEL_ROWS) -> ModelMetadata:
    """Version 1 from the bundled data set, unless the persisted registry already has a champion."""
    from loopml.training import TrainingParams, train_and_register

    registry, store = registry_for(stack)
    if registry.versions(MODEL):
        version = registry.resolve(MODEL, "champion")
        progress.step(f"model {MODEL} v{version} found in the persisted registry (champion)")
        return registry.metadata(MODEL, version)
    progress.step(f"training the first model on the bundled loan-default data ({rows} rows)")
    columns = datasets.loan_default(rows, seed=42)
    data = write_csv(columns)
    key = keys.dataset_key(MODEL, "base", "loan_default.csv")
    store.put(key, data)
    schema = infer_schema(columns, datasets.TARGET, SENSITIVE)
    meta = train_and_register(
        registry,
        columns,
        schema,
        TrainingParams(),
        MODEL,
        DataLineage(uri=store.uri(key), sha256=sha256_hex(data), rows=rows),
        actor="loopml local up",
    )
    registry.set_alias(MODEL, "champion", meta.version, actor="loopml local up", reason="first model")
    progress.step(f"registered {MODEL} v{meta.version} as champion (accuracy {meta.metrics['accuracy']:.3f})")
    return meta


def http_json(
    method: str, url: str, body: Any = None, timeout_s: float = 60, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One JSON request to the local API: status and decoded body, 4xx/5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def warm(api_url: str) -> tuple[int, Any]:
    return http_json("GET", f"{api_url}/health")


def example_instance() -> dict[str, Any]:
    return datasets.rows(datasets.loan_default(1, seed=11))[0]


def summary(stack: LocalStack, meta: ModelMetadata, progress: Progress, health: dict[str, Any]) -> str:
    lam = stack.client("lambda")
    lines = [
        "",
        f"loopml local stack is up ({progress.elapsed:.1f}s)",
        f"  API            {stack.api_url}   (API Gateway emulator: REST proxy events -> alias live)",
        f"  AWS endpoint   {stack.aws_endpoint}   (moto behind our Lambda front door)",
        f"  model          {meta.model} v{meta.version} champion; validation accuracy "
        f"{meta.metrics['accuracy']:.3f}, ROC AUC {meta.metrics.get('roc_auc') or 0:.3f}; "
        f"serving: {health.get('status')}",
    ]
    cold = {
        s.function.removeprefix(physical_name(stack.stage, "")): s.cold_start_ms
        for s in stack.cold_starts()
        if s.cold_start_ms
    }
    for spec in stack.topology.functions:
        alias = lam.get_alias(FunctionName=stack.function_name(spec.name), Name=spec.alias)
        weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        split = "".join(f" + v{v} {w:.0%}" for v, w in weights.items())
        started = f", cold start {cold[spec.name] / 1000:.2f}s" if spec.name in cold else ""
        lines.append(f"  function       {spec.name}:{spec.alias} -> v{alias['FunctionVersion']}{split}{started}")
    queues = ", ".join(
        f"{physical_name(stack.stage, q.name)} (+{physical_name(stack.stage, dlq_name(q.name))})"
        for q in stack.topology.queues
    )
    lines += [
        f"  queues         {queues}",
        f"  state          {stack.state_dir} (kept across restarts; `loopml local reset` clears it)",
        f"  logs           {stack.logs.folder}/<function>.log: `loopml logs inference [--follow]`; "
        "below, one line per API request",
        f"  admin token    {stack.admin_token}   (header {ADMIN_TOKEN_HEADER} on DELETE /subjects/..., "
        f"POST /approvals/...; kept in {stack.state_dir / ADMIN_TOKEN_FILE})",
        "",
        "Try:",
        f"  curl -s {stack.api_url}/health",
        f"  curl -s -X POST '{stack.api_url}/predict?explain=true' -H 'content-type: application/json' \\",
        f"       -d '{json.dumps({'instance': example_instance()})}'",
        f"  curl -s {stack.api_url}/model",
        f"  open {stack.api_url}/swagger",
        f"  AWS_ENDPOINT_URL={stack.aws_endpoint} aws s3 ls s3://{physical_name(stack.stage, 'models')}/models/",
        "",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def run(
    state_dir: Path,
    api_port: int,
    aws_port: int,
    api_key: str | None,
    stop: threading.Event,
    admin_token: str | None = None,
    exit_after_start: bool = False,
) -> int:
    progress = Progress()
    print("loopml: starting the local stack", flush=True)
    stack = LocalStack(
        state_dir,
        stage=STAGE,
        api_port=api_port,
        aws_port=aws_port,
        api_key=api_key,
        admin_token=admin_token,
        on_progress=progress.step,
    )
    try:
        stack.start()
    except OSError as exc:
        raise LoopmlError(
            f"could not start the local stack ({exc}); is another `make up` running? "
            "Choose other ports with --api-port / --aws-port"
        ) from None
    try:
        meta = ensure_first_model(stack, progress)
        progress.step("warming the inference function (cold start)")
        status, health = warm(stack.api_url)
        if status == 503 and isinstance(health, dict):
            # The stack stays up: the API says why (503 + Retry-After) and the model can be rolled back.
            progress.step(f"WARNING: model {meta.model} cannot be served: {health.get('detail')}")
        elif status != 200:
            raise LoopmlError(f"inference function is not healthy: HTTP {status} {health}")
        print(summary(stack, meta, progress, health), flush=True)
        if not exit_after_start:
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nloopml: stopping (state saved)", flush=True)
        stack.stop()
    return 0

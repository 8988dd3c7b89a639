"""Inference benchmark: the handler next to bare ``predict_proba``, cold start next to the import floor.

Absolute times on a shared machine mean little, so each figure is printed beside a baseline measured
in the same run, and the ratio is what we track:

- warm in-handler latency (the Lambda handler called in-process with a real API Gateway event, capture
  flushed after the response as the post-invoke extension does) vs ``pipeline.predict_proba`` on the
  same rows, for one row and for a batch: for loopml's recipe, and for a registered user model (a
  DataFrame ``Pipeline`` around ``GradientBoostingClassifier``), whose baseline is the user's own call,
  ``model.predict_proba`` on a DataFrame of the same rows (its call on an array is shown too), the two
  measured in alternating blocks;
- cold start: a fresh process that imports the handler, loads the model from S3 (moto server) and
  answers one request, vs a fresh process running ``import sklearn, boto3``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopml_dev import datasets
from loopml_dev.bench.common import moto_server
from loopml_dev.local import unshipped
from loopml_dev.local.context import StubContext

REPO = Path(__file__).resolve().parents[2]  # loopml_dev/bench/x.py -> the repository
EVENT = REPO / "events" / "inference" / "predict_single.json"
BUCKET = "loopml-bench-models"
WARM_CALLS = 2000
BATCH_ROWS = 100


def _blocks(
    ours: Callable[[], Any], bare: Callable[[], Any], calls: int, after: Callable[[], None], rounds: int = 4
) -> tuple[list[float], list[float]]:
    """``calls`` samples of each, taken in alternating blocks: a shared machine's slow spells fall on both
    figures alike, while each block runs warm, as a Lambda environment answering request after request does
    (alternating single calls would have scikit-learn evict our code from the CPU's caches, and us theirs)."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        _time(ours, 20, after)  # re-warm, discarded
        mine += _time(ours, calls // rounds, after)
        _time(bare, 20)
        theirs += _time(bare, calls // rounds)
    return mine, theirs


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _time(fn: Callable[[], Any], calls: int, after: Callable[[], None] | None = None) -> list[float]:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
        if after:
            after()
    return samples


# Every built-in recipe (classification on the loan data, regression of ``loan_amount`` from the same columns)
# and a user's pipeline, each registered as its own model and served by the compiled runtime.
RECIPE_MODELS = {
    "logistic-regression": ("logistic_regression", datasets.TARGET),
    "hist-gradient-boosting": ("hist_gradient_boosting", datasets.TARGET),
    "random-forest": ("random_forest", datasets.TARGET),
    "ridge": ("ridge", "loan_amount"),
    "hgb-regressor": ("hist_gradient_boosting", "loan_amount"),
    "forest-regressor": ("random_forest", "loan_amount"),
}


def _prepare(endpoint: str, cache: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Train each recipe and register it and a user's pipeline in the moto server; return the function's
    environment and, per model, the fitted scikit-learn model the baseline calls."""
    import boto3

    from loopml.adapters.s3 import S3ObjectStore
    from loopml.registry import DataLineage, ModelRegistry
    from loopml.schema import infer_schema
    from loopml.training import TrainingParams, metadata_for, train

    creds: dict[str, Any] = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=endpoint, **creds)
    s3.create_bucket(Bucket=BUCKET)
    queue = boto3.client("sqs", endpoint_url=endpoint, **creds).create_queue(QueueName="bench-capture")["QueueUrl"]
    columns = datasets.loan_default(5000, seed=42)
    registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
    baselines: dict[str, Any] = {}
    for model, (model_type, target) in RECIPE_MODELS.items():
        data = columns if target == datasets.TARGET else {k: v for k, v in columns.items() if k != datasets.TARGET}
        trained = train(data, infer_schema(data, target), TrainingParams(model_type=model_type))
        if trained.compiled is None:
            raise RuntimeError(f"recipe {model_type} did not compile: {trained.not_compiled}")
        lineage = DataLineage(uri="bench://loan", sha256="0" * 64, rows=5000)
        trained.register(registry, metadata_for(trained, model, lineage, "bench"))
        registry.set_alias(model, "champion", 1, actor="bench", reason="bench")
        baselines[model] = trained.bundle["pipeline"]
    baselines[USER_MODEL] = _register_user_model(S3ObjectStore(s3, BUCKET), columns)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODEL_BUCKET": BUCKET,
        "CAPTURE_QUEUE_URL": queue,
        "MODEL_NAME": "default",
        "MODEL_VERSION": "champion",
        "MODEL_RUNTIME": "compiled",
        "CACHE_DIR": str(cache),
        "POWERTOOLS_SERVICE_NAME": "inference",
        "POWERTOOLS_METRICS_NAMESPACE": "loopml",
        "LOOPML_LOCAL_RUNTIME": "1",
    }, baselines


USER_MODEL = "user"


def user_pipeline(columns: dict[str, list[Any]]) -> Any:
    """What a notebook has: read_csv's DataFrame, columns picked by name, its own step names."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from loopml.data import write_csv
    from loopml_dev import datasets

    frame = pd.read_csv(io.BytesIO(write_csv(columns)))
    x, y = frame.drop(columns=[datasets.TARGET]), frame[datasets.TARGET]
    features = ColumnTransformer(
        [
            ("numbers", SimpleImputer(strategy="median"), x.select_dtypes(include="number").columns.tolist()),
            ("text", OneHotEncoder(handle_unknown="ignore"), x.select_dtypes(exclude="number").columns.tolist()),
        ]
    )
    return Pipeline([("features", features), ("gbm", GradientBoostingClassifier(random_state=0))]).fit(x, y)


def _register_user_model(store: Any, columns: dict[str, list[Any]]) -> Any:
    from loopml.data import write_csv
    from loopml.registration import prepare, publish
    from loopml.registry import ModelRegistry
    from loopml_dev import datasets

    model = user_pipeline(columns)
    trained = prepare(model, columns, datasets.TARGET)
    if trained.compiled is None:
        raise RuntimeError(f"the user pipeline did not compile: {trained.not_compiled}")
    meta = publish(store, trained, USER_MODEL, write_csv(columns), "loans.csv", "bench")
    ModelRegistry(store).set_alias(USER_MODEL, "champion", meta.version, actor="bench", reason="bench")
    return model, trained.bundle["pipeline"]


def _frame_call(matrix: Any, predictor: Any, estimator: Any, wrapped: Any) -> Callable[[], Any]:
    """``model.predict_proba(frame)`` on the same rows, as the user calls it (the frame built once)."""
    import pandas as pd

    from loopml.schema import FeatureKind

    schema = predictor.metadata.feature_schema
    frame = pd.DataFrame(wrapped.values(matrix), columns=schema.names)
    for spec in schema.features:
        if spec.kind is FeatureKind.numeric:
            frame[spec.name] = frame[spec.name].astype(float)

    def call() -> Any:
        return estimator.predict_proba(frame)

    return call


def _warm(env: dict[str, str], model: str, baseline: Any) -> dict[str, Any]:
    """``baseline``: the fitted scikit-learn model (a user model: the user's own pipeline and loopml's
    wrapper of it; the user's DataFrame call is its baseline)."""
    import importlib.util

    os.environ.update({**env, "MODEL_NAME": model})
    spec = importlib.util.spec_from_file_location(
        f"loopml_bench_inference_{model}", REPO / "functions/inference/app.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from loopml.lifecycle import run_post_invoke

    predictor = module.service.current().predictor
    if predictor.metadata.model != model or type(predictor.scorer).__name__ != "CompiledModel":
        raise RuntimeError(f"{model}: the handler does not serve the compiled form")
    event = json.loads(EVENT.read_text())
    names = set(predictor.metadata.feature_schema.names)
    instance = {k: v for k, v in json.loads(event["body"])["instance"].items() if k in names}
    single = dict(event, body=json.dumps({"instance": instance}))
    batch = dict(event, body=json.dumps({"instances": [instance] * BATCH_ROWS}))
    matrix, _ = predictor.validator.validate([instance])
    batch_matrix, _ = predictor.validator.validate([instance] * BATCH_ROWS)
    user = model == USER_MODEL
    estimator, pipeline = baseline if user else (None, baseline)
    score = pipeline.predict if predictor.regression else pipeline.predict_proba
    ctx = StubContext("inference", memory_mb=512)
    # One real capture flush to SQS proves the path; after it, flushes (post-invoke, never timed) are counted
    # instead of sent: moto's queue slows down with every message held, and this loop sends thousands.
    with contextlib.redirect_stdout(io.StringIO()):
        module.handler(single, ctx)
    send, failed = module.capture._sender, []

    def checked(bodies: list[str]) -> int:
        failed.append(send(bodies))
        return failed[-1]

    module.capture._sender = checked
    run_post_invoke()
    if failed != [0]:
        raise RuntimeError(f"{model}: the capture was not sent to SQS ({failed})")
    module.capture._sender = lambda bodies: 0  # none failed
    results: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()) as sink:
        for label, event, rows_matrix, calls in (
            ("single", single, matrix, WARM_CALLS),
            (f"batch{BATCH_ROWS}", batch, batch_matrix, WARM_CALLS // 10),
        ):

            def ours_call(e: dict[str, Any] = event) -> Any:
                return module.handler(e, ctx)

            def array_call(m: Any = rows_matrix) -> Any:
                return score(m)

            # a user model's baseline is the user's own call on a DataFrame; the array call is shown beside it
            bare_call = _frame_call(rows_matrix, predictor, estimator, pipeline) if user else array_call
            _time(ours_call, 100, run_post_invoke)  # warm up
            _time(bare_call, 100)
            ours, bare = _blocks(ours_call, bare_call, calls, run_post_invoke)
            sink.seek(0)
            sink.truncate()
            results[label] = {"handler_us": _percentiles(ours), "bare_us": _percentiles(bare)}
            if user:
                results[label]["bare_array_us"] = _percentiles(_time(array_call, calls))
    status = module.handler(single, ctx)["statusCode"]
    if status != 200:
        raise RuntimeError(f"benchmark request failed with HTTP {status}")
    return results


# Both children see what a Lambda sees: no pandas (the dev venv has it; scikit-learn would import it).
AS_IN_LAMBDA = f"""
import importlib.util, os
_spec = importlib.util.spec_from_file_location("_unshipped", {str(Path(unshipped.__file__))!r})
_hidden = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(_hidden)
_hidden.hide(os.environ.get(_hidden.ENV, "").split(","))
"""
COLD_CHILD = (
    AS_IN_LAMBDA
    + """
import json, sys, time, importlib.util
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
class C:
    function_name = "bench"; function_version = "1"; memory_limit_in_mb = 2048; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench:live"
    def get_remaining_time_in_millis(self): return 29000
out = module.handler(json.load(open(sys.argv[2])), C())
print("ANSWERED %d" % out["statusCode"], flush=True)
# VmHWM: this process's own peak (ru_maxrss would report the parent's, inherited across fork and exec)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK_RSS_MB %.1f" % (int(peak.split()[1]) / 1024), flush=True)
"""
)
FLOOR_CHILD = AS_IN_LAMBDA + "import sklearn, boto3; print('ANSWERED 200', flush=True)"


def _spawn(argv: list[str], env: dict[str, str], peaks: list[float] | None = None) -> float:
    """Process start to the child's answer line: interpreter teardown is not part of a cold start.
    ``peaks`` collects the child's peak RSS (MB) when it reports one."""
    t0 = time.perf_counter()
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        while line and not line.startswith("ANSWERED"):  # the handler's own output (EMF metrics) comes first
            line = child.stdout.readline()
        elapsed = time.perf_counter() - t0
        rest, errors = child.communicate()
    for extra in rest.splitlines():
        if extra.startswith("PEAK_RSS_MB") and peaks is not None:
            peaks.append(float(extra.split()[1]))
    if child.returncode != 0 or line.strip() != "ANSWERED 200":
        raise RuntimeError(f"{argv[:3]} failed ({line.strip()!r}): {errors[-2000:]}")
    return elapsed


def _bytecode_as_in_the_layer() -> None:
    """The loopml layer ships ``.pyc`` (``layers/build.py``), as pip installed scikit-learn and boto3 with
    theirs; a machine that writes none (``PYTHONDONTWRITEBYTECODE``) would have every cold child compile
    loopml from source, which no Lambda does. Written to ``__pycache__`` (ignored by git)."""
    import compileall

    compileall.compile_dir(str(REPO / "layers" / "loopml"), quiet=1)
    compileall.compile_file(str(REPO / "functions" / "inference" / "app.py"), quiet=1)


def _cold(env: dict[str, str], cache: Path, model: str, runs: int = 5) -> dict[str, float]:
    """The compiled-runtime handler sees what its slim layer holds: no scikit-learn, scipy or joblib."""
    _bytecode_as_in_the_layer()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "CAPTURE_"))}
    base.pop(unshipped.ENV, None)
    child_env = {**base, **env, "MODEL_NAME": model, unshipped.ENV: ",".join(unshipped.NOT_IN_SLIM)}
    event = cache / "cold-event.json"
    body = json.loads(json.loads(EVENT.read_text())["body"])["instance"]
    if model in RECIPE_MODELS and RECIPE_MODELS[model][1] != datasets.TARGET:
        body.pop(RECIPE_MODELS[model][1])
    event.parent.mkdir(parents=True, exist_ok=True)
    event.write_text(json.dumps({**json.loads(EVENT.read_text()), "body": json.dumps({"instance": body})}))
    ours: list[float] = []
    floor: list[float] = []
    peaks: list[float] = []
    for i in range(runs):
        child_env["CACHE_DIR"] = str(cache / f"cold-{model}-{i}")  # a new environment has an empty /tmp
        ours.append(
            _spawn(
                [sys.executable, "-c", COLD_CHILD, str(REPO / "functions/inference/app.py"), str(event)],
                child_env,
                peaks,
            )
        )
        floor.append(_spawn([sys.executable, "-c", FLOOR_CHILD], base))
    return {"handler_s": statistics.median(ours), "floor_s": statistics.median(floor), "peak_rss_mb": max(peaks)}


def run() -> dict[str, Any]:
    print("\n== inference (compiled runtime): handler vs bare scikit-learn (warm), cold start vs import floor ==")
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        env, baselines = _prepare(endpoint, Path(tmp) / "warm")
        for model, baseline in baselines.items():
            models[model] = {**_warm(env, model, baseline), "cold": _cold(env, Path(tmp), model)}
    header = (
        f"{'case':<32}{'handler p50':>14}{'bare p50':>11}{'ratio':>8}{'handler p99':>14}{'bare p99':>11}{'ratio':>8}"
    )
    print(header)
    for model, results in models.items():
        for label in ("single", f"batch{BATCH_ROWS}"):
            r = results[label]
            (h50, h99), (b50, b99) = r["handler_us"], r["bare_us"]
            r["ratio_p50"], r["ratio_p99"] = h50 / b50, h99 / b99
            print(
                f"{model + ' ' + label:<32}{h50:>11.0f} µs{b50:>8.0f} µs{h50 / b50:>7.2f}x"
                f"{h99:>11.0f} µs{b99:>8.0f} µs{h99 / b99:>7.2f}x"
            )
            if "bare_array_us" in r:
                a50 = r["bare_array_us"][0]
                print(f"{'':<32}  (bare on an array instead of the user's DataFrame: {a50:.0f} µs, {h50 / a50:.2f}x)")
        cold = results["cold"]
        cold["ratio"] = cold["handler_s"] / cold["floor_s"]
        print(
            f"{model + ' cold start':<32}{cold['handler_s']:>12.2f} s{cold['floor_s']:>9.2f} s{cold['ratio']:>7.2f}x"
            f"   (process start -> first answer, model from S3; floor: `import sklearn, boto3`; "
            f"peak RSS {cold['peak_rss_mb']:.0f} MB of the 512 MB the function runs with)"
        )
    return {"runtime": "compiled", "models": models}

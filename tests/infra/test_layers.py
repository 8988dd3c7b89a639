"""The layers as Lambda sees them: built for cp312/manylinux, imported by CPython 3.12 in isolation.

Builds into ``build/layers`` (reused when the stamps match, so only the first run downloads wheels),
then runs ``python3.12 -I -S`` whose only import roots besides the standard library are the built
layers, a stand-in for the runtime's boto3, and the function's folder, exactly like ``/opt/python`` and
``/var/task`` on Lambda.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "layers"
FUNCTIONS = ROOT / "functions"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loopml_layer_build_test", ROOT / "layers" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _builder()


# --- the recipe, without building ---------------------------------------------------------------


def test_pins_are_the_dev_environment_versions_without_boto3() -> None:
    pins = dict(p.split("==") for p in build.pinned_requirements("x86_64"))
    for name in ("scikit-learn", "numpy", "scipy", "joblib", "pydantic", "pydantic-core", "aws-lambda-powertools"):
        assert pins[name] == metadata.version(name), name
    assert "aws-xray-sdk" in pins  # the [tracer] extra
    assert not {"boto3", "botocore", "s3transfer", "pandas"} & set(pins)
    with_boto3 = dict(p.split("==") for p in build.pinned_requirements("x86_64", with_boto3=True))
    assert with_boto3["botocore"] == metadata.version("botocore")


def test_digest_changes_with_architecture_and_pins() -> None:
    assert build.deps_plan("x86_64").digest != build.deps_plan("arm64").digest
    assert build.deps_plan("x86_64").digest == build.deps_plan("x86_64").digest


def test_loopml_layer_is_the_package_whole_and_imports_no_dev_code() -> None:
    files = {p.relative_to(build.LOOPML_SRC).as_posix() for p in build._loopml_files()}
    on_disk = {
        p.relative_to(build.LOOPML_SRC).as_posix()
        for p in build.LOOPML_SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert files == on_disk and "topology.py" in files
    for name in sorted(f for f in files if f.endswith(".py")):
        tree = ast.parse((build.LOOPML_SRC / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] == "loopml_dev"}, f"layers/loopml/{name} imports dev code"


def test_trim_removes_sources_and_tests_but_keeps_modules(tmp_path: Path) -> None:
    for rel in (
        "pkg/__init__.py",
        "pkg/_testing.py",
        "pkg/tests/test_x.py",
        "pkg/__pycache__/x.cpython-311.pyc",
        "pkg/core.pyx",
        "pkg/core.pxd",
        "pkg/core.c",
        "pkg/include/x.h",
        "pkg/stubs.pyi",
        "bin/f2py",
        "pkg.libs/libgfortran.so.5",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    build._trim(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["pkg.libs/libgfortran.so.5", "pkg/__init__.py", "pkg/_testing.py"]


# --- the built layers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layers() -> dict[str, Path]:
    """Build (or reuse) the x86_64 layers; the first run downloads wheels once."""
    subprocess.run([sys.executable, str(ROOT / "layers" / "build.py"), "--arch", "x86_64"], check=True)
    built = {
        "loopml": OUT / "loopml" / "python",
        "deps": OUT / "deps-x86_64" / "python",
        "serving": OUT / "serving-x86_64" / "python",
        "compile": OUT / "compile-x86_64" / "python",
        "runtime": build.build_runtime_stand_in(OUT, "x86_64") / "python",
    }
    for kind in build.DEPS_LAYERS:
        assert build.is_current(OUT, build.deps_plan("x86_64", kind=kind)), kind
    assert build.is_current(OUT, build.loopml_plan())
    return built


# Each declared layer set (FunctionSpec.layer_set) as the import roots Lambda gives the function.
LAYER_SETS = {"full": ("deps", "loopml"), "slim": ("serving", "loopml"), "compile": ("deps", "compile", "loopml")}


def test_layer_contents_follow_the_recipe(layers: dict[str, Path]) -> None:
    deps, loopml = layers["deps"], layers["loopml"]
    assert not (loopml / "loopml" / "local").exists() and not (loopml / "loopml" / "cli.py").exists()
    assert (loopml / "loopml" / "__pycache__" / "topology.cpython-312.pyc").is_file()
    assert not (deps / "boto3").exists() and not (deps / "botocore").exists() and not (deps / "pandas").exists()
    assert not list(deps.glob("*/tests"))
    assert not list(deps.rglob("*.pyx")) and not list(deps.rglob("*.pyi"))
    assert (deps / "sklearn" / "__pycache__").is_dir()
    assert not [p for p in deps.rglob("*.pyc") if "cpython-312" not in p.name]
    version = next(deps.glob("scikit_learn-*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
    assert version == metadata.version("scikit-learn")
    plain, pyc = build.print_report(deps.parent)
    assert plain < build.BUDGET_MIB * build.MIB, f"{plain / build.MIB:.1f} MiB without .pyc"
    assert plain + pyc < build.HARD_LIMIT_MIB * build.MIB
    serving = layers["serving"]
    assert not {"sklearn", "scipy", "joblib"} & {p.name for p in serving.iterdir()}
    slim, _ = build.print_report(serving.parent)
    assert slim < build.SLIM_BUDGET_MIB * build.MIB, f"slim layer {slim / build.MIB:.1f} MiB without .pyc"


RUNNER = textwrap.dedent(
    """
    import json, os, sys, time
    roots = json.loads(sys.argv[1])
    sys.path[:0] = roots
    os.chdir(roots[-1])
    started = time.perf_counter()
    import app
    result = {"handler": callable(getattr(app, "handler", None)), "import_s": time.perf_counter() - started}
    if len(sys.argv) > 2:
        import joblib, numpy, sklearn
        model = joblib.load(sys.argv[2])
        result["proba"] = model.predict_proba(numpy.asarray(json.loads(sys.argv[3]))).tolist()
        result["sklearn"] = sklearn.__version__
    result["pandas_loaded"] = "pandas" in sys.modules
    result["paths"] = [m.__file__ for m in (sys.modules.get("sklearn"), sys.modules.get("boto3")) if m]
    print(json.dumps(result))
    """
)


def _run_isolated(
    script: str, roots: list[Path], *extra: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Any:
    """``script`` run by CPython 3.12 with only ``roots`` (and the standard library) to import from, as
    Lambda runs a function; the JSON of its last line."""
    proc = subprocess.run(
        [build.find_python312(), "-I", "-S", "-c", script, json.dumps([str(r) for r in roots]), *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _physical(name: str) -> str:
    return f"loopml-test-{name}"


def _handler_env(moto_url: str, function: str) -> dict[str, str]:
    """What CDK sets for this function (declared env + resolved refs), pointed at a loopback moto."""
    from loopml.topology import TOPOLOGY

    spec = TOPOLOGY.function(function)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_url,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "MODEL_VERSION": "champion",
        "LANG": "C.UTF-8",
        **spec.environment,
    }
    for var, ref in spec.resources.items():
        name = _physical(ref.name)
        arn = f"arn:aws:{ {'queue': 'sqs', 'bucket': 's3'}.get(ref.kind, ref.kind) }:us-east-1:123456789012:{name}"
        env[var] = {"url": f"{moto_url}/123456789012/{name}", "arn": arn}.get(ref.attribute, name)
    return env


@pytest.fixture(scope="module")
def moto_url() -> Any:
    """A loopback moto server holding the declared buckets, queues and tables, so handlers that touch
    AWS at import never leave the machine."""
    import socket
    import time
    import urllib.request

    import boto3

    from loopml.topology import TOPOLOGY

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        for bucket in TOPOLOGY.buckets:
            session.client("s3", endpoint_url=url).create_bucket(Bucket=_physical(bucket.name))
        for queue in TOPOLOGY.queues:
            session.client("sqs", endpoint_url=url).create_queue(QueueName=_physical(queue.name))
        for table in TOPOLOGY.tables:
            session.client("dynamodb", endpoint_url=url).create_table(
                TableName=_physical(table.name),
                KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": table.partition_key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


HANDLERS = sorted(p.parent.name for p in FUNCTIONS.glob("*/app.py"))


@pytest.mark.skipif(not HANDLERS, reason="no handler under functions/ yet")
@pytest.mark.parametrize("function", HANDLERS)
def test_every_handler_imports_from_the_layers_alone(
    layers: dict[str, Path], moto_url: str, function: str, tmp_path: Path
) -> None:
    from loopml.topology import TOPOLOGY

    if function not in {f.name for f in TOPOLOGY.functions}:
        pytest.skip(f"functions/{function} is not declared in loopml.topology yet, so it is not deployed")
    declared = TOPOLOGY.function(function).layer_set
    roots = [*(layers[k] for k in LAYER_SETS[declared]), layers["runtime"], FUNCTIONS / function]
    env = _handler_env(moto_url, function) | {"CACHE_DIR": str(tmp_path), "TMPDIR": str(tmp_path)}
    result = _run_isolated(RUNNER, roots, env=env)
    assert result["handler"] is True
    assert result["pandas_loaded"] is False
    assert all(str(OUT) in path for path in result["paths"]), result["paths"]  # nothing from elsewhere


def test_a_pickled_pipeline_loads_and_predicts_in_the_layer(layers: dict[str, Path], tmp_path: Path) -> None:
    """Pickled with the venv's scikit-learn, loaded with the layer's: the pin makes this safe."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    rows = [[2.0, 1.0, 0.0], [-2.0, -1.0, 0.0]]
    task = tmp_path / "task"
    task.mkdir()
    (task / "app.py").write_text("def handler(event, context):\n    return event\n")
    roots = [layers["deps"], layers["loopml"], task]
    result = _run_isolated(RUNNER, roots, str(path), json.dumps(rows), env={"LANG": "C.UTF-8"})
    expected = model.predict_proba(np.asarray(rows))
    assert result["sklearn"] == metadata.version("scikit-learn")
    assert np.allclose(result["proba"], expected, atol=1e-12)
    assert result["proba"][0][1] > 0.9 and result["proba"][1][0] > 0.9


SCORER = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[1])
    try:
        import sklearn  # noqa: F401
        raise SystemExit("scikit-learn is importable from the slim layers")
    except ImportError:
        pass
    import numpy
    from loopml.compiled import CompiledModel
    out = {}
    for name, case in json.loads(open(sys.argv[2]).read()).items():
        model = CompiledModel(open(case["onnx"], "rb").read(), case["sha256"], name)
        out[name] = model.scores(numpy.asarray(case["rows"], dtype=object)).tolist()
    try:
        CompiledModel(b"tampered" + open(case["onnx"], "rb").read(), case["sha256"], "tampered")
        out["tampered"] = "loaded"
    except Exception as exc:
        out["tampered"] = type(exc).__name__ + ": " + str(exc)
    out["loaded"] = sorted(m for m in ("sklearn", "scipy", "joblib") if m in sys.modules)
    print(json.dumps(out))
    """
)


def _compiled_cases() -> dict[str, tuple[Any, Any]]:
    """Every built-in recipe (both tasks) and user pipelines as registration compiles them."""
    import io

    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from loopml.data import write_csv
    from loopml.registration import columns_of, prepare
    from loopml.schema import infer_schema
    from loopml.training import RECIPES, TrainingParams, train
    from loopml_dev import datasets

    loans = datasets.loan_default(800, seed=3)
    incomes = {k: v for k, v in loans.items() if k != datasets.TARGET}
    cases: dict[str, tuple[Any, Any]] = {}
    for task, data, target in (("classification", loans, datasets.TARGET), ("regression", incomes, "loan_amount")):
        schema = infer_schema(data, target)
        for model_type in RECIPES[task]:
            cases[f"{task}-{model_type}"] = (train(data, schema, TrainingParams(model_type=model_type)), schema)
    x = pd.read_csv(io.BytesIO(write_csv(loans)))
    y = x.pop(datasets.TARGET)
    numeric = [c for c in x.columns if x[c].dtype.kind in "fi"]
    text = [c for c in x.columns if c not in numeric]
    mixed = ColumnTransformer(
        [
            ("nums", Pipeline([("fill", SimpleImputer()), ("z", StandardScaler())]), numeric),
            ("cats", OneHotEncoder(handle_unknown="ignore"), text),
        ]
    )
    users = {
        "user-dataframe-gbm": (Pipeline([("f", mixed), ("gbm", GradientBoostingClassifier(n_estimators=20))]), x, y),
        "user-numpy-logistic": (
            Pipeline([("fill", SimpleImputer()), ("lr", LogisticRegression(max_iter=2000))]),
            x[numeric].to_numpy(),
            y,
        ),
        "user-forest-regressor": (
            Pipeline([("fill", SimpleImputer()), ("rf", RandomForestRegressor(n_estimators=20, random_state=0))]),
            x[[c for c in numeric if c != "loan_amount"]],
            x["loan_amount"],
        ),
    }
    for name, (estimator, features, labels) in users.items():
        estimator.fit(features, labels)
        columns, target = columns_of(features, labels)
        trained = prepare(estimator, columns, target)
        cases[name] = (trained, trained.schema)
    return cases


def test_every_recipe_and_user_pipeline_scores_on_the_slim_layers_alone_as_scikit_learn_does(
    layers: dict[str, Path], tmp_path: Path
) -> None:
    """The compiled-runtime inference function's layers hold no scikit-learn: its models are scored there,
    by loopml.compiled, and must match scikit-learn on the same rows; a tampered file is refused unparsed."""
    import hashlib

    import numpy as np

    cases = _compiled_cases()
    spec, expected = {}, {}
    for name, (trained, _) in cases.items():
        assert trained.compiled is not None, f"{name}: {trained.not_compiled}"
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(trained.compiled.onnx)
        rows = trained.reference_matrix[:200]
        spec[name] = {"onnx": str(path), "sha256": hashlib.sha256(trained.compiled.onnx).hexdigest()}
        spec[name]["rows"] = [[None if isinstance(v, float) and v != v else v for v in row] for row in rows.tolist()]
        expected[name] = np.asarray(trained.reference_proba[:200], dtype=float)
        assert trained.compiled.parity.label_mismatches == 0
    (tmp_path / "cases.json").write_text(json.dumps(spec).replace("null", "NaN"))
    roots = [layers[k] for k in LAYER_SETS["slim"]]
    got = _run_isolated(SCORER, roots, str(tmp_path / "cases.json"), timeout=300)
    assert got.pop("loaded") == []
    assert got.pop("tampered").startswith("IntegrityError: tampered: SHA-256"), got
    for name, (trained, schema) in cases.items():
        scores = np.asarray(got[name], dtype=float)
        tolerance = trained.compiled.parity.tolerance
        if schema.regression:
            scale = max(1.0, float(np.max(np.abs(expected[name]))))
            assert float(np.max(np.abs(scores - expected[name]))) / scale <= tolerance, name
        else:
            assert float(np.max(np.abs(scores - expected[name]))) <= tolerance, name
            assert (scores.argmax(axis=1) == expected[name].argmax(axis=1)).all(), name


COMPILER = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[1])
    from loopml.schema import infer_schema
    from loopml.training import RECIPES, TrainingParams, train
    columns = json.loads(open(sys.argv[2]).read())
    schema = infer_schema(columns, "default")
    out = {}
    for model_type in RECIPES["classification"]:
        trained = train(columns, schema, TrainingParams(model_type=model_type))
        out[model_type] = trained.compiled.parity.model_dump() if trained.compiled else trained.not_compiled
    print(json.dumps(out))
    """
)


def test_the_retrain_functions_layers_compile_every_recipe(layers: dict[str, Path], tmp_path: Path) -> None:
    """skl2onnx and onnx from the compile layer (no .pyc, trimmed), onnxruntime from deps: registration there."""
    from loopml_dev import datasets

    data = tmp_path / "loans.json"
    data.write_text(json.dumps(datasets.loan_default(600, seed=4)))
    parities = _run_isolated(COMPILER, [layers[k] for k in LAYER_SETS["compile"]], str(data), timeout=300)
    for model_type, parity in parities.items():
        assert isinstance(parity, dict), f"{model_type}: {parity}"
        assert parity["label_mismatches"] == 0 and parity["max_abs_diff"] <= parity["tolerance"], model_type

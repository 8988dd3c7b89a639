"""The ``loopml`` command: train, generate data, run the local stack, benchmark.

Every user mistake (a missing file, a bad column, an unreachable stack) ends with one line on stderr
naming it and exit status 2; a traceback means a bug in loopml.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loopml.errors import LoopmlError

DEFAULT_STATE = Path(".loopml")
LOCAL_AWS_PORT = 4566
LOCAL_API_PORT = 3000
LOCAL_STAGE = "local"
DEFAULT_MODEL = "default"


class UsageError(LoopmlError):
    """A command-line argument is wrong."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except LoopmlError as exc:
        print(f"loopml: error: {exc}", file=sys.stderr)
        for detail in getattr(exc, "errors", [])[:20]:
            print(f"  - {'.'.join(str(p) for p in detail.get('loc', []))}: {detail.get('msg')}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on a CSV / JSON Lines / Parquet file and register it")
    train.add_argument("--data", required=True, type=Path, help="training file (.csv, .jsonl, .parquet)")
    train.add_argument("--target", required=True, help="name of the label column")
    train.add_argument("--model", default=DEFAULT_MODEL, help="model name in the registry (default: %(default)s)")
    train.add_argument("--config", type=Path, help="JSON file overriding the inferred feature spec")
    train.add_argument(
        "--model-type",
        default=None,
        choices=["logistic_regression", "ridge", "hist_gradient_boosting", "random_forest"],
        help="default: logistic_regression for classification, ridge for regression",
    )
    train.add_argument(
        "--task",
        choices=["classification", "regression"],
        help="default: inferred from the target (a continuous number is regression)",
    )
    train.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="training parameter")
    _destination(train)
    train.set_defaults(run=_train)

    register = sub.add_parser(
        "register", help="register your own fitted scikit-learn classifier (a joblib file) as a model version"
    )
    register.add_argument("--model", required=True, help="model name in the registry")
    register.add_argument("--estimator", required=True, type=Path, help="the fitted estimator, saved with joblib")
    register.add_argument("--data", required=True, type=Path, help="reference data: the columns it takes + target")
    register.add_argument("--target", required=True, help="name of the label column")
    register.add_argument("--holdout", type=Path, help="rows it was not fitted on, for honest validation metrics")
    register.add_argument("--config", type=Path, help="JSON file overriding the inferred feature spec")
    _destination(register)
    register.set_defaults(run=_register)

    gen = sub.add_parser("generate", help="write the bundled synthetic loan-default data set to a file")
    gen.add_argument("--rows", type=int, default=5000)
    gen.add_argument("--out", type=Path, required=True, help="output file (.csv or .jsonl)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--covariate-shift", type=float, default=0.0)
    gen.add_argument("--concept-shift", type=float, default=0.0)
    gen.set_defaults(run=_generate)

    local = sub.add_parser("local", help="the local stack: AWS on 127.0.0.1, no account, no Docker")
    local_sub = local.add_subparsers(metavar="ACTION")
    up = local_sub.add_parser("up", help="train the first model if needed, deploy, serve the API until Ctrl-C")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    up.add_argument("--api-port", type=int, default=LOCAL_API_PORT)
    up.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT)
    up.add_argument("--api-key", default=None, help="require this x-api-key on api_key routes (default: off)")
    up.add_argument(
        "--admin-token",
        default=None,
        help="the x-loopml-admin-token that admin routes (erasure, approvals) require "
        "(default: generated once, kept in STATE_DIR/secrets/admin-token)",
    )
    up.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(run=_local_up)
    reset = local_sub.add_parser("reset", help="delete all local state (models, captured data, history)")
    reset.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    reset.set_defaults(run=_local_reset)

    retrain = sub.add_parser(
        "retrain", help="start the retraining workflow (canary rollout) on the running local stack"
    )
    retrain.add_argument("--model", default=DEFAULT_MODEL, help="model to retrain (default: %(default)s)")
    retrain.add_argument("--reason", default="manual retraining (loopml retrain)", help="recorded in the history")
    retrain.add_argument("--data-uri", help="base training data (s3://<models bucket>/...); default: the champion's")
    retrain.add_argument("--approval", action="store_true", help="wait for POST /approvals/{token} before deploying")
    retrain.add_argument("--canary-percent", type=float, help="share of traffic for the canary (default 10)")
    retrain.add_argument("--bake-minutes", type=float, help="how long the canary serves before the check (default 5)")
    retrain.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="training parameter")
    retrain.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT, help="local stack AWS port")
    retrain.add_argument("--wait", action="store_true", help="follow the execution state by state until it ends")
    retrain.add_argument("--timeout-minutes", type=float, default=30.0, help="with --wait: give up after this long")
    retrain.set_defaults(run=_retrain)

    demo = sub.add_parser("demo", help="the whole lifecycle on a fresh local stack, two rounds, with a report")
    demo.add_argument("--state-dir", type=Path, default=None, help="default: a new temporary folder")
    demo.set_defaults(run=_demo)

    promote = sub.add_parser("promote", help="serve a registered version now: verify it, publish, move live")
    promote.add_argument("model")
    promote.add_argument("version", help="a version number (3 or v3)")
    promote.add_argument("--reason", default="promoted by hand (loopml promote)")
    promote.add_argument("--force", action="store_true", help="also end a canary in flight")
    promote.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT, help="local stack AWS port")
    promote.set_defaults(run=_promote)
    rollback = sub.add_parser("rollback", help="serve the previous champion again (works when the champion is broken)")
    rollback.add_argument("model")
    rollback.add_argument("--reason", default="rolled back by hand (loopml rollback)")
    rollback.add_argument("--force", action="store_true", help="also end a canary in flight")
    rollback.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT, help="local stack AWS port")
    rollback.set_defaults(run=_rollback)

    models = sub.add_parser("models", help="the registry: models, versions, lineage and the deployment history")
    models_sub = models.add_subparsers(metavar="ACTION")
    listed = models_sub.add_parser("list", help="every registered model: versions, champion, what serves now")
    shown = models_sub.add_parser("show", help="one version: metrics, lineage, library versions, integrity")
    shown.add_argument("model")
    shown.add_argument("--version", help="a version number or alias (default: the champion)")
    history = models_sub.add_parser("history", help="what happened to a model, or what served it at a time")
    history.add_argument("model")
    history.add_argument("--at", help="which version served at this time (ISO, UTC if naive), and why")
    for action, run in ((listed, _models_list), (shown, _models_show), (history, _models_history)):
        where = action.add_mutually_exclusive_group()
        where.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT, help="the local stack (default)")
        where.add_argument("--bucket", help="a deployed stack's models bucket (AWS credentials from the environment)")
        action.set_defaults(run=run)

    logs = sub.add_parser("logs", help="a function's log on the local stack, readably (one file per function)")
    logs.add_argument("function", help="a declared function: inference, feedback, drift, retrain, starter, batch")
    logs.add_argument("--since", help="only records from then on: 10m, 2h, 1d or an ISO time (UTC if naive)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records until Ctrl-C")
    logs.add_argument("--metrics", action="store_true", help="also show the EMF metric documents")
    logs.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    logs.set_defaults(run=_logs)

    fuzz = sub.add_parser("fuzz", help="schemathesis against the running local stack: every route, every check")
    fuzz.add_argument("--requests", type=int, default=10_000, help="how many requests to send (default %(default)s)")
    fuzz.add_argument("--api-url", default=f"http://127.0.0.1:{LOCAL_API_PORT}")
    fuzz.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where `make up` keeps its admin token")
    fuzz.add_argument("--api-key", default=None, help="the x-api-key `make up` was given, if any")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--report", type=Path, default=Path("build/fuzz.json"))
    fuzz.set_defaults(run=_fuzz)

    bench = sub.add_parser("bench", help="benchmarks: our figure next to a baseline measured in the same run")
    bench.add_argument("what", choices=["inference", "feedback", "drift", "all"])
    bench.add_argument("--evidently-python", default=None, help="python of a venv with evidently (drift baseline)")
    bench.add_argument("--report", type=Path, default=Path("build/bench.json"), help="where every figure is written")
    bench.set_defaults(run=_bench)
    return parser


def _key_values(pairs: list[str]) -> dict[str, Any]:
    """``--param key=value`` pairs; values are JSON when they parse (numbers, booleans), else text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _parse_params(pairs: list[str], model_type: str) -> Any:
    from loopml.training import TrainingParams

    values: dict[str, Any] = {"model_type": model_type, **_key_values(pairs)}
    try:
        return TrainingParams.model_validate(values)
    except ValueError as exc:
        raise UsageError(f"invalid training parameters: {exc}") from None


def _destination(command: argparse.ArgumentParser) -> None:
    """Where ``train`` and ``register`` put the new version: the local stack, an S3 bucket or a folder."""
    where = command.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="register into the running local stack")
    where.add_argument("--bucket", help="register into this S3 bucket (AWS credentials from the environment)")
    where.add_argument("--folder", type=Path, help="register into this folder (the bucket's layout, as files)")
    command.add_argument("--champion", action="store_true", help="make the new version the champion")
    command.add_argument(
        "--new-schema",
        action="store_true",
        help="register even though the features or target differ from the champion's (callers must follow)",
    )
    command.add_argument("--aws-port", type=int, default=LOCAL_AWS_PORT, help="local stack AWS port (with --local)")


def _schema_config(path: Path | None) -> Any:
    from loopml.schema import SchemaConfig

    if path is None:
        return SchemaConfig()
    try:
        return SchemaConfig.model_validate_json(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--config {path}: {exc}") from None


def _train(args: argparse.Namespace) -> int:
    from loopml.data import read_path
    from loopml.names import validate_model_name
    from loopml.registry import ModelRegistry
    from loopml.schema import infer_schema
    from loopml.training import train

    validate_model_name(args.model)
    columns, _ = read_path(args.data)
    schema = infer_schema(columns, args.target, _schema_config(args.config), args.task)
    default_type = "ridge" if schema.regression else "logistic_regression"
    params = _parse_params(args.param, args.model_type or default_type)
    store = _destination_store(args)
    if store is not None and not args.new_schema:
        ModelRegistry(store).check_contract(args.model, schema)  # before training, not after
    print(
        f"training {args.model} ({schema.task}, {params.model_type}) on {args.data} "
        f"({len(columns[args.target])} rows, {len(schema.features)} features)"
    )
    trained = train(columns, schema, params)
    return _publish(args, store, trained, "loopml train --champion")


def _register(args: argparse.Namespace) -> int:
    from loopml.data import read_path
    from loopml.names import validate_model_name
    from loopml.registration import prepare

    validate_model_name(args.model)
    estimator = _load_estimator(args.estimator)
    columns, _ = read_path(args.data)
    holdout = read_path(args.holdout)[0] if args.holdout else None
    trained = prepare(estimator, columns, args.target, _schema_config(args.config), holdout)
    print(
        f"registering {args.model}: {trained.params.estimator}, {len(trained.schema.features)} features, "
        f"reference {args.data} ({len(columns[args.target])} rows)"
    )
    for note in trained.notes:
        print(f"  note: {note}")
    if args.holdout is None:
        print("  validation on a split of --data: optimistic if it was fitted on those rows (pass --holdout)")
    return _publish(args, _destination_store(args), trained, "loopml register --champion")


def _load_estimator(path: Path) -> Any:
    """The user's joblib file, refused in one line when it is not one or was saved by another scikit-learn."""
    import warnings

    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    from loopml.registry import sklearn_mismatch

    if not path.is_file():
        raise UsageError(f"--estimator {path}: no such file")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            estimator = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise UsageError(f"--estimator {path}: it needs the module {exc.name!r}, which is not installed") from None
        except Exception as exc:  # whatever unpickling raises, the file is not a loadable model
            raise UsageError(f"--estimator {path}: not a joblib file of a fitted estimator ({exc})") from None
    for warning in seen:
        if isinstance(warning.message, InconsistentVersionWarning):
            raise UsageError(str(sklearn_mismatch(warning.message.original_sklearn_version, str(path))))
    return estimator


def _destination_store(args: argparse.Namespace) -> Any:
    if args.folder is not None:
        from loopml.adapters.folder import FolderObjectStore

        return FolderObjectStore(args.folder)
    return _store(args.bucket, args.aws_port if args.local else None) if (args.local or args.bucket) else None


def _publish(args: argparse.Namespace, store: Any, trained: Any, reason: str) -> int:
    """Register the trained or prepared model where the arguments say, and serve it with ``--champion``."""
    from loopml.registration import publish

    _print_metrics(trained.metrics.model_dump())
    _print_compiled(trained)
    served = args.local and args.model in _local_lanes(args.aws_port)
    if trained.compiled is None and _declared_runtime(args, served) == "compiled":
        raise UsageError(
            f"{args.model} is served by the compiled runtime, which cannot serve this model: "
            f"{trained.not_compiled}. Declare ModelSpec(name={args.model!r}, runtime='sklearn') in "
            "loopml.topology MODELS; nothing was registered"
        )
    if store is None:
        print("not registered (pass --local, --bucket or --folder to register this model)")
        return 0
    meta = publish(store, trained, args.model, args.data.read_bytes(), args.data.name, _actor(), args.new_schema)
    print(f"registered {args.model} v{meta.version} (sha256 {meta.artifact_sha256[:12]}…) in {store.uri('')}")
    if args.champion and served:
        # What the CLI says is what is served: the same promotion as `loopml promote`.
        promotion = _promotion(args.aws_port, args.model)
        _print_served(promotion.promote(args.model, meta.version, _actor(), reason))
    elif args.champion:
        from loopml.registry import ModelRegistry

        ModelRegistry(store).set_alias(args.model, "champion", meta.version, actor=_actor(), reason=reason)
        where = (
            "no local inference function serves it: declare it in loopml.topology.MODELS, then `make up`"
            if args.local
            else "a stack serving this bucket loads it at its next cold start"
        )
        print(f"{args.model} champion -> v{meta.version} (registry alias; {where})")
    return 0


def _declared_runtime(args: argparse.Namespace, served: bool) -> str | None:
    """The runtime of the function that will serve the model: the running local lane's, else the
    declaration's (None: no declared model of that name)."""
    if served:
        from loopml.inference.models import served_runtime

        return served_runtime(_promotion(args.aws_port, args.model).alias.environment())
    from loopml.topology import TOPOLOGY

    return {m.name: m.runtime for m in TOPOLOGY.models}.get(args.model)


def _print_compiled(trained: Any) -> None:
    if trained.compiled is None:
        print(f"compiled: no ({trained.not_compiled}); the scikit-learn runtime can serve it")
        return
    parity = trained.compiled.parity
    print(
        f"compiled: ONNX, parity on {parity.rows} reference rows: max difference {parity.max_abs_diff:.2g} "
        f"(tolerance {parity.tolerance:g}, {parity.family}), {parity.label_mismatches} labels differ"
    )


def _print_metrics(metrics: dict[str, Any]) -> None:
    print(f"validation: {_metrics_text(metrics)}")


def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def _store(bucket: str | None, local_port: int | None) -> Any:
    """The registry's bucket, in AWS or in the running local stack."""
    import boto3

    from loopml.adapters.s3 import S3ObjectStore
    from loopml.topology import physical_name

    if local_port is not None:
        return S3ObjectStore(_local_client("s3", local_port), physical_name(LOCAL_STAGE, "models"))
    return S3ObjectStore(boto3.client("s3"), str(bucket))


def _local_client(service: str, port: int) -> Any:
    """A boto3 client for the running local stack (refuses clearly when nothing listens there)."""
    import boto3

    endpoint = f"http://127.0.0.1:{port}"
    _require_listening(endpoint)
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
    )


def _require_listening(endpoint: str) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
    except urllib.error.HTTPError:
        return
    except OSError:
        raise UsageError(f"no local stack answers at {endpoint}: start it with `make up`") from None


def _generate(args: argparse.Namespace) -> int:
    from loopml.data import write_csv
    from loopml_dev import datasets

    if args.rows < 1:
        raise UsageError("--rows must be at least 1")
    columns = datasets.loan_default(args.rows, args.seed, args.covariate_shift, args.concept_shift)
    suffix = args.out.suffix.lower()
    if suffix == ".csv":
        data = write_csv(columns)
    elif suffix in (".jsonl", ".ndjson"):
        data = "".join(json.dumps(r) + "\n" for r in datasets.rows(columns, include_target=True)).encode()
    else:
        raise UsageError(f"--out {args.out}: use a .csv or .jsonl file name")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


def _local_reset(args: argparse.Namespace) -> int:
    from loopml_dev.local.stack import reset

    reset(args.state_dir)
    print(f"local state in {args.state_dir} cleared")
    return 0


def _local_up(args: argparse.Namespace) -> int:
    from loopml_dev.local.up import run

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return run(
        state_dir=args.state_dir,
        api_port=args.api_port,
        aws_port=args.aws_port,
        api_key=args.api_key,
        admin_token=args.admin_token,
        stop=stop,
        exit_after_start=args.exit_after_start,
    )


def _retrain(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from loopml.adapters.stepfunctions import RetrainExecutions
    from loopml.retrain.models import RetrainInput
    from loopml.retrain.trigger import RetrainTrigger, StartPolicy, start_or_refuse
    from loopml.topology import physical_name
    from loopml_dev.local.deploy import ACCOUNT_ID

    values: dict[str, Any] = {"model": args.model, "reason": args.reason, "approval": args.approval}
    optional = {"data_uri": args.data_uri, "canary_percent": args.canary_percent, "bake_minutes": args.bake_minutes}
    values.update({k: v for k, v in optional.items() if v is not None})
    params = _key_values(args.param)
    if params:
        values["params"] = params
    request = RetrainInput.parse(values)
    if args.timeout_minutes <= 0:
        raise UsageError("--timeout-minutes must be positive")
    _require_served_locally(request.model, args.aws_port)
    sfn = _local_client("stepfunctions", args.aws_port)
    machine = f"arn:aws:states:us-east-1:{ACCOUNT_ID}:stateMachine:{physical_name(LOCAL_STAGE, 'retrain')}"
    trigger = RetrainTrigger(_store(None, args.aws_port), RetrainExecutions(sfn, machine))
    # a person asked for it: no cooldown, but the running check, the budget and the 1-minute window hold
    policy = StartPolicy(cooldown_hours=0, max_starts_per_day=100, window_minutes=1)
    arn = start_or_refuse(trigger, request, "cli", policy, run_id=datetime.now(UTC).strftime("%H%M%S%f"))
    print(f"started {arn}", flush=True)
    if not args.wait:
        return 0
    return _follow(sfn, arn, args.timeout_minutes * 60)


def _registry(args: argparse.Namespace) -> Any:
    from loopml.registry import ModelRegistry

    return ModelRegistry(_store(args.bucket, None if args.bucket else args.aws_port))


def _served_locally(args: argparse.Namespace) -> dict[str, str]:
    """Model -> the model version its lane's alias ``live`` serves (local stack); {} against AWS."""
    if args.bucket:
        return {}
    from loopml.topology import TOPOLOGY

    lam = _local_client("lambda", args.aws_port)
    served = {}
    for model, function in _local_lanes(args.aws_port).items():
        alias = lam.get_alias(FunctionName=function, Name=TOPOLOGY.function("inference").alias)
        env = lam.get_function_configuration(FunctionName=function, Qualifier=alias["FunctionVersion"])
        # unpinned, a version serves what the registry's champion was when it loaded
        version = (env.get("Environment") or {}).get("Variables", {}).get("MODEL_VERSION", "champion")
        served[model] = f"{version} (Lambda {alias['FunctionVersion']})"
    return served


def _champion_of(registry: Any, model: str) -> int | None:
    from loopml.errors import NotFound

    try:
        return int(registry.resolve(model, "champion"))
    except NotFound:
        return None


def _models_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    names = registry.models()
    if not names:
        print(f"no model registered in {_registry_location(args)}")
        return 0
    served = _served_locally(args)
    print(f"{'MODEL':<24} {'VERSIONS':>8} {'CHAMPION':>8} {'LATEST':>6}  {'SERVED (live)':<22} LAST CHANGE")
    for name in names:
        versions = registry.versions(name)
        champion = _champion_of(registry, name)
        events = registry.history(name)
        last = events[-1] if events else None
        change = f"{last.at:%Y-%m-%d %H:%M} {last.action} by {last.actor}" if last else ""
        champion_text = f"v{champion}" if champion else "-"
        serving = "-"
        if name in served:
            version, _, lambda_version = served[name].partition(" ")
            serving = f"{champion_text if version == 'champion' else 'v' + version} {lambda_version}"
        print(f"{name:<24} {len(versions):>8} {champion_text:>8} {'v' + str(versions[-1]):>6}  {serving:<22} {change}")
    return 0


def _registry_location(args: argparse.Namespace) -> str:
    return f"s3://{args.bucket}" if args.bucket else f"the local stack (port {args.aws_port})"


def _models_show(args: argparse.Namespace) -> int:
    import hashlib

    registry = _registry(args)
    version = registry.resolve(args.model, args.version or "champion")
    meta = registry.metadata(args.model, version)
    digest = hashlib.sha256(registry.artifact(meta)).hexdigest()
    integrity = "verified" if digest == meta.artifact_sha256 else f"TAMPERED (artifact SHA-256 is {digest})"
    champion = _champion_of(registry, args.model)
    print(f"{meta.model} v{meta.version}" + (" (champion)" if champion == meta.version else ""))
    print(f"  created      {meta.created_at:%Y-%m-%d %H:%M:%S} by {meta.created_by}")
    print(f"  parent       {'v' + str(meta.parent_version) if meta.parent_version else '-'}")
    data = meta.training_data
    print(f"  trained on   {data.uri} ({data.rows} rows, sha256 {data.sha256[:12]}…)")
    estimator = f" {meta.params['estimator']}" if meta.params.get("estimator") else ""
    task = meta.feature_schema.task
    print(f"  model        {meta.params.get('model_type', '?')}{estimator} ({task}); explainer {meta.explainer}")
    print(f"  validation   {_metrics_text(meta.metrics)}")
    schema = meta.feature_schema
    print(f"  features     {len(schema.features)} ({', '.join(schema.names)}); target {schema.target} {schema.classes}")
    print(f"  libraries    {', '.join(f'{k} {v}' for k, v in sorted(meta.library_versions.items()))}")
    print(f"  artifact     {meta.artifact_key} sha256 {meta.artifact_sha256[:16]}… {integrity}")
    if meta.compiled is None:
        print(f"  compiled     no: {meta.not_compiled or 'registered before compilation'} (scikit-learn runtime only)")
        return 0
    compiled = meta.compiled
    found = hashlib.sha256(registry.form(meta, "compiled")).hexdigest()
    state = "verified" if found == compiled.sha256 else f"TAMPERED (compiled form's SHA-256 is {found})"
    print(f"  compiled     {compiled.key} sha256 {compiled.sha256[:16]}… {state}")
    parity = compiled.parity
    print(
        f"  parity       max difference {parity.max_abs_diff:.2g} on {parity.rows} reference rows (tolerance "
        f"{parity.tolerance:g}, {parity.family}); {parity.label_mismatches} labels differ"
    )
    return 0


def _models_history(args: argparse.Namespace) -> int:
    from loopml.registry import served_at

    registry = _registry(args)
    events = registry.history(args.model)
    if not events:
        raise UsageError(f"model {args.model!r} has no history in {_registry_location(args)}")
    if args.at:
        moment = _moment(args.at, "--at")
        served = served_at(events, moment)
        if served.champion is None:
            print(f"{args.model} had no champion at {moment.isoformat()}: nothing served it")
            return 0
        print(
            f"{args.model} at {moment.isoformat()}: v{served.champion}, champion since "
            f"{served.since.isoformat() if served.since else '?'} ({served.actor}: {served.reason})"
        )
        if served.canary is not None:
            print(f"  and canary v{served.canary} taking a share of the traffic since {served.canary_since}")
        return 0
    for event in events:
        versions = f"v{event.version}" if event.version else ""
        if event.previous_version:
            versions += f" (from v{event.previous_version})"
        print(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.action:<14} {versions:<14} {event.actor}: {event.reason}")
    return 0


def _moment(text: str, option: str) -> Any:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected an ISO time such as 2026-12-01T10:00 (UTC if naive)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _logs(args: argparse.Namespace) -> int:
    from loopml.topology import TOPOLOGY
    from loopml_dev.local import logs

    declared = [spec.name for spec in TOPOLOGY.functions]
    if args.function not in declared:
        raise UsageError(f"no function {args.function!r}: the declaration has {', '.join(declared)}")
    since = _since(args.since) if args.since else None
    store = logs.FunctionLogs(args.state_dir)
    if not store.path(args.function).exists() and not args.follow:
        print(f"no log yet for {args.function} in {store.folder} (it has not run since `make up` started)")
        return 0
    for line in logs.read(store, args.function, since, args.metrics):
        print(line, flush=False)
    sys.stdout.flush()
    if args.follow:
        for line in logs.follow(store, args.function, args.metrics):
            print(line, flush=True)
    return 0


def _since(text: str) -> Any:
    from datetime import UTC, datetime, timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit in units and number.replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(**{units[unit]: float(number)})
    return _moment(text, "--since")


def _require_served_locally(model: str, aws_port: int) -> None:
    """Refuse, before starting anything, a model the local deployment does not serve."""
    from botocore.exceptions import ClientError

    function = _lane(model, aws_port)  # UsageError naming what is served: nothing started
    try:
        config = _local_client("lambda", aws_port).get_function_configuration(FunctionName=function)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        raise UsageError(f"the stack on port {aws_port} has no {function} ({code}): is it `make up`'s?") from None
    served = (config.get("Environment") or {}).get("Variables", {}).get("MODEL_NAME")
    if served and served != model:
        raise UsageError(
            f"model {model!r} is not served by this deployment ({function} serves {served!r}); nothing started"
        )
    from loopml.registry import ModelRegistry

    if not ModelRegistry(_store(None, aws_port)).versions(model):
        raise UsageError(f"model {model!r} has no registered version; nothing started")


def _follow(sfn: Any, arn: str, timeout_s: float) -> int:
    """Print each state as it is entered; on failure, the failing step's own error, not the generic one."""
    seen: set[str] = set()
    failure: tuple[str, str] | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        for event in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]:
            key = str(event["id"])
            if key in seen:
                continue
            seen.add(key)
            entered = event.get("stateEnteredEventDetails")
            if entered:
                print(f"  {entered['name']}", flush=True)
            failed = event.get("lambdaFunctionFailedEventDetails") or event.get("taskFailedEventDetails")
            if failed:
                failure = (str(failed.get("error")), _error_message(failed.get("cause")))
        described = sfn.describe_execution(executionArn=arn)
        status = described["status"]
        if status != "RUNNING":
            break
        if time.monotonic() > deadline:
            print(f"loopml: still running after {timeout_s / 60:g} minutes: {arn}", file=sys.stderr)
            return 1
        time.sleep(1)
    if status == "SUCCEEDED":
        print(f"succeeded: {described.get('output')}")
        return 0
    print(f"{status.lower()}: {described.get('error')}: {described.get('cause')}", file=sys.stderr)
    if failure is not None:
        print(f"  the failing step said: {failure[0]}: {failure[1]}", file=sys.stderr)
    return 1


def _error_message(cause: Any) -> str:
    """Lambda's error cause is JSON ({"errorMessage": ...}); anything else is shown as it is."""
    try:
        parsed = json.loads(cause) if isinstance(cause, str) else cause
    except ValueError:
        return str(cause)
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return str(cause)


def _promotion(aws_port: int, model: str) -> Any:
    """The same promotion the workflow does, on ``model``'s own inference function."""
    from loopml.promotion import Promotion
    from loopml.registry import ModelRegistry
    from loopml.retrain.adapters import InferenceAlias
    from loopml.topology import TOPOLOGY

    registry = ModelRegistry(_store(None, aws_port))
    live = TOPOLOGY.function("inference").alias
    alias = InferenceAlias(_local_client("lambda", aws_port), _lane(model, aws_port), live)
    return Promotion(registry, alias)


def _local_lanes(aws_port: int) -> dict[str, str]:
    """Model -> its inference function, as the running local stack deployed them (its declaration,
    whatever `make up` read): the functions named ``loopml-local-inference[-<model>]``."""
    from loopml.topology import physical_name

    lam = _local_client("lambda", aws_port)
    first = physical_name(LOCAL_STAGE, "inference")
    lanes = {}
    for page in lam.get_paginator("list_functions").paginate():
        for function in page.get("Functions", []):
            name = function["FunctionName"]
            if name == first or name.startswith(first + "-"):
                model = (function.get("Environment") or {}).get("Variables", {}).get("MODEL_NAME")
                if model:
                    lanes[model] = name
    return lanes


def _lane(model: str, aws_port: int) -> str:
    lanes = _local_lanes(aws_port)
    if model not in lanes:
        raise UsageError(
            f"model {model!r} is not served by this deployment (it serves {', '.join(sorted(lanes)) or 'nothing'}): "
            "declare it in loopml.topology.MODELS, then `make up`"
        )
    return lanes[model]


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


def _print_served(served: Any) -> None:
    before = f" (was v{served.previous_version})" if served.previous_version else ""
    verb = "rolled back to" if served.action == "rolled_back" else "now serves"
    print(f"{served.model} {verb} v{served.version}{before}: alias live -> Lambda version {served.lambda_version}")


def _promote(args: argparse.Namespace) -> int:
    from loopml.names import validate_model_name

    model = validate_model_name(args.model)
    text = args.version.strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"version {args.version!r}: expected a version number such as 3 or v3")
    _print_served(_promotion(args.aws_port, model).promote(model, int(text), _actor(), args.reason, force=args.force))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from loopml.names import validate_model_name

    model = validate_model_name(args.model)
    _print_served(_promotion(args.aws_port, model).rollback(model, _actor(), args.reason, force=args.force))
    return 0


def _fuzz(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from loopml_dev.local.apigw import ADMIN_TOKEN_HEADER
    from loopml_dev.local.fuzz import run
    from loopml_dev.local.stack import ADMIN_TOKEN_FILE

    if args.requests < 1:
        raise UsageError("--requests must be at least 1")
    try:
        urllib.request.urlopen(f"{args.api_url}/health", timeout=5).close()
    except urllib.error.HTTPError:
        pass  # any HTTP answer means the stack is up (503: no model served, still worth fuzzing)
    except OSError as exc:
        raise UsageError(f"no local stack answers at {args.api_url} ({exc}); start it with `make up`") from None
    token_file = args.state_dir / ADMIN_TOKEN_FILE
    if not token_file.exists():
        raise UsageError(f"{token_file} not found: run `make fuzz` from the repo root while `make up` runs")
    headers = {ADMIN_TOKEN_HEADER: token_file.read_text().strip()}
    if args.api_key:
        headers["x-api-key"] = args.api_key
    print(f"fuzzing {args.api_url} with {args.requests} generated requests (schemathesis, every check)", flush=True)
    report = run(args.api_url, args.requests, headers, seed=args.seed)
    summary = report.as_dict()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(summary, indent=1))
    for operation, count in summary["by_operation"].items():
        print(f"  {count:6d}  {operation}")
    print(
        f"{report.requests} requests in {report.seconds:.0f} s: {dict(summary['by_status'])}; "
        f"5xx: {report.server_errors}; document violations: {sum(report.failures.values())} "
        f"{dict(report.failures) or ''}; report in {args.report}"
    )
    for example in summary["examples"][:5]:
        print(f"  - {example}")
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from loopml_dev.demo import run

    return run(args.state_dir)


def _bench(args: argparse.Namespace) -> int:
    """Every figure, with the baseline measured beside it, also goes to ``--report`` (build/bench.json)."""
    started = time.perf_counter()
    python = args.evidently_python
    if python and not Path(python).exists():
        raise UsageError(f"--evidently-python {python}: no such file")
    figures: dict[str, Any] = {}
    if args.what in ("inference", "all"):
        from loopml_dev.bench import inference

        figures["inference"] = inference.run()
    if args.what in ("feedback", "all"):
        from loopml_dev.bench import feedback

        figures["feedback"] = feedback.run()
    if args.what in ("drift", "all"):
        from loopml_dev.bench import drift

        figures["drift"] = drift.run(python)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.report.read_text()) if args.report.is_file() and args.what != "all" else {}
    args.report.write_text(json.dumps({**previous, **figures}, indent=1, default=str) + "\n")
    print(f"\nbenchmarks done in {figures['seconds']:.1f}s; figures in {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

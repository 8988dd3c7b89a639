"""``LocalStack``: loopml on a laptop, with no AWS account and no Docker.

Starts moto (AWS's control plane and storage) as a subprocess, the front door every boto3 client uses
(it runs Lambda invokes and forwards everything else to moto), deploys the topology through the real
AWS APIs, then starts the SQS pollers, the schedules and the API Gateway emulator. ``stop`` (or leaving
the ``with`` block, or Ctrl-C in the CLI) stops them in reverse order. CloudWatch gets what it derives
on AWS (``AWS/Lambda`` metrics per invoke, Embedded Metric Format lines) and metric alarms are evaluated
locally every ``alarm_interval_s`` (see ``metrics`` and ``alarms``).

Persistence (``loopml_dev.local.persistence``): S3 objects, DynamoDB items and queued messages are saved
under ``state_dir`` on stop and every ``snapshot_interval_s``, and put back after deploy on the next
start. Deployed code zips live in ``state_dir/code``. ``reset(state_dir)`` clears it all.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import loopml
from loopml.errors import ConfigurationError
from loopml.topology import TOPOLOGY, Topology, physical_name
from loopml_dev.local.alarms import AlarmEvaluator
from loopml_dev.local.apigw import ApiGateway
from loopml_dev.local.clients import Clients
from loopml_dev.local.code_store import CodeStore
from loopml_dev.local.deploy import ACCOUNT_ID, Deployer, Deployment
from loopml_dev.local.gateway import FrontDoor
from loopml_dev.local.logs import FunctionLogs
from loopml_dev.local.metrics import MetricsSink
from loopml_dev.local.moto_server import MotoServer
from loopml_dev.local.persistence import STATE_FOLDERS, StatePersistence
from loopml_dev.local.pollers import SqsPoller
from loopml_dev.local.runtime import InvokeResult, Runtime, WorkerStats
from loopml_dev.local.schedules import Scheduler
from loopml_dev.local.watches import ExecutionWatcher

_PACKAGE_DIR = Path(loopml.__file__).resolve().parent  # the runtime library, which is the layer as it is
DEFAULT_REPO_ROOT = _PACKAGE_DIR.parents[1]  # layers/loopml -> repo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reset(state_dir: Path) -> None:
    """Forgets everything the local stack saved (S3 objects, queued messages, code, logs)."""
    for name in (*STATE_FOLDERS, "code", "tmp", "secrets", "moto.log"):
        target = Path(state_dir) / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


ADMIN_TOKEN_FILE = Path("secrets") / "admin-token"


def load_or_create_admin_token(state_dir: Path) -> str:
    path = Path(state_dir) / ADMIN_TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


class LocalStack:
    """The whole local stack; a context manager. Ports 0/None pick free loopback ports."""

    def __init__(
        self,
        state_dir: Path,
        stage: str = "local",
        api_port: int = 3000,
        aws_port: int | None = None,
        topology: Topology = TOPOLOGY,
        functions_root: Path | None = None,
        env_overrides: dict[str, dict[str, str]] | None = None,
        on_progress: Callable[[str], None] | None = None,
        *,
        repo_root: Path | None = None,
        infra_root: Path | None = None,
        region: str = "us-east-1",
        api_key: str | None = None,
        admin_token: str | None = None,
        snapshot_interval_s: float = 30.0,
        max_workers_per_version: int = 4,
        function_log: Callable[[str], None] | None = None,
        integration_timeout_s: float = 29.0,
        alarm_interval_s: float = 10.0,
    ) -> None:
        # Absolute: workers run with their code folder as cwd, so a relative state dir would not resolve there.
        self.state_dir = Path(state_dir).resolve()
        self.stage = stage
        self.topology = topology
        self.repo_root = Path(repo_root) if repo_root else DEFAULT_REPO_ROOT
        self.functions_root = Path(functions_root) if functions_root else self.repo_root / "functions"
        self.infra_root = Path(infra_root) if infra_root else self.repo_root / "infra"
        self.region = region
        self.env_overrides = {name: dict(env) for name, env in (env_overrides or {}).items()}
        if api_key is None:  # API Gateway asks for no key locally unless given one: the document says the same
            for lane in (spec for spec in topology.functions if spec.folder == "inference"):
                self.env_overrides.setdefault(lane.name, {}).setdefault("API_KEY_REQUIRED", "false")
        self._progress = on_progress or (lambda message: None)
        # Stack events (pollers, alarms, watches) go to the terminal; what functions print goes to their
        # log files (``loopml logs``), and to ``function_log`` too when a caller (a test) asks for it.
        self._function_log = function_log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._echo_output = function_log is not None
        self.logs = FunctionLogs(self.state_dir)
        self._api_port = api_port
        self._aws_port = aws_port or 0
        self.api_key = api_key
        # Admin routes (auth="iam": erasure, approvals) are never open: without a token given, one is
        # generated once and kept in the state dir, so it survives restarts and can be read by scripts.
        self.admin_token = admin_token or load_or_create_admin_token(self.state_dir)
        self.snapshot_interval_s = snapshot_interval_s
        self.max_workers_per_version = max_workers_per_version
        self.integration_timeout_s = integration_timeout_s
        self.alarm_interval_s = alarm_interval_s
        self._metrics: MetricsSink | None = None
        self._alarms: AlarmEvaluator | None = None
        self._clients = Clients(self.region)

        self._moto: MotoServer | None = None
        self._front_door: FrontDoor | None = None
        self._runtime: Runtime | None = None
        self._deployer: Deployer | None = None
        self._api: ApiGateway | None = None
        self._scheduler: Scheduler | None = None
        self._watcher: ExecutionWatcher | None = None
        self._pollers: list[SqsPoller] = []
        self._snapshot_lock = threading.Lock()
        self._stop_snapshots = threading.Event()
        self._snapshot_thread: threading.Thread | None = None
        self._persistence: StatePersistence | None = None
        self.started = False

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        if self.started:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop(snapshot=False)
            raise
        return self

    def _start(self) -> None:
        started = time.perf_counter()
        code_store = CodeStore(self.state_dir / "code")
        moto_port = free_port()
        moto_url = f"http://127.0.0.1:{moto_port}"
        moto_lambda = self._clients.get("lambda", moto_url)
        self._metrics = MetricsSink(self._clients.get("cloudwatch", moto_url), log=self._function_log)
        # The front door binds first: moto must know its port (MOTO_PORT) for Step Functions' calls.
        runtime = Runtime(
            moto_lambda,
            code_store,
            aws_endpoint="http://127.0.0.1:0",
            region=self.region,
            log=self._function_log,
            max_workers_per_version=self.max_workers_per_version,
            on_invoke=self._metrics.record_invocation,
            on_output=self._function_output,
        )
        try:
            self._front_door = FrontDoor(self._aws_port, moto_port, runtime)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on 127.0.0.1:{self._aws_port} for AWS APIs: {exc}") from None
        self._runtime = runtime
        runtime.aws_endpoint = self._front_door.url
        self._moto = MotoServer(
            moto_port,
            self._front_door.port,
            self.state_dir / "moto.log",
            preload_stepfunctions=bool(self.topology.state_machines),
        )
        self._moto.start()
        self._front_door.start()
        self._metrics.start()
        self.started = True
        self._progress(f"AWS APIs (moto + local Lambda) on {self.aws_endpoint}")

        self._deployer = Deployer(
            self.client,
            code_store,
            self.topology,
            self.functions_root,
            _PACKAGE_DIR,
            self.infra_root,
            self.stage,
            self.region,
            self.aws_endpoint,
            log=self._progress,
        )
        runtime.grants = self._deployer.deployment.grants  # filled as functions deploy: enforced per call
        self._deployer.deploy(self.env_overrides, notifications=False)
        persistence = StatePersistence(self.state_dir, lambda service: self._clients.get(service, moto_url))
        self._persistence = persistence
        objects = persistence.restore_s3()
        items = persistence.restore_tables(self._tables())
        messages = persistence.restore_messages(self._deployer.deployment.queue_urls)
        if objects or items or messages:
            self._progress(
                f"restored {objects} S3 objects, {items} table items and {messages} queued messages "
                f"from {self.state_dir}"
            )
        self._deployer.deploy_notifications()  # after the restore: restored objects are no new uploads

        moto_sqs = self._clients.get("sqs", self._moto.url)
        deployment = self._deployer.deployment
        for spec in self.topology.functions:
            for source in spec.event_sources:
                poller = SqsPoller(
                    moto_sqs,
                    deployment.queue_urls[source.queue],
                    deployment.queue_arns[source.queue],
                    spec.name,
                    self._invoke_alias,
                    self.region,
                    batch_size=source.batch_size,
                    max_batching_window_s=source.max_batching_window_s,
                    log=self._function_log,
                )
                poller.start()
                self._pollers.append(poller)
        self._scheduler = Scheduler(
            self.topology,
            self._invoke_alias,
            lambda name: physical_name(self.stage, name),
            self.region,
            ACCOUNT_ID,
            log=self._function_log,
        )
        self._scheduler.start()
        self._watcher = ExecutionWatcher(
            self.client("stepfunctions"),
            self.topology,
            self.deployment.state_machines,
            self._invoke_alias,
            self.region,
            ACCOUNT_ID,
            log=self._function_log,
        )
        self._watcher.start()
        try:
            self._api = ApiGateway(
                self.topology,
                self._invoke_alias,
                port=self._api_port,
                stage=self.stage,
                account_id=ACCOUNT_ID,
                api_key=self.api_key,
                admin_token=self.admin_token,
                integration_timeout_s=self.integration_timeout_s,
                access_log=self._function_log,
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on 127.0.0.1:{self._api_port} for the API: {exc}") from None
        self._api.start()
        self._alarms = AlarmEvaluator(
            self._clients.get("cloudwatch", self._moto.url), self.alarm_interval_s, self._function_log
        )
        if self.alarm_interval_s > 0:
            self._alarms.start()
        if self.snapshot_interval_s > 0:
            self._snapshot_thread = threading.Thread(target=self._snapshot_loop, name="s3-snapshot", daemon=True)
            self._snapshot_thread.start()
        self._progress(f"API on {self.api_url} (started in {time.perf_counter() - started:.1f} s)")

    def stop(self, snapshot: bool = True) -> None:
        """Stops everything, saving S3 objects and queued messages first; safe to call twice."""
        self._stop_snapshots.set()
        for poller in self._pollers:  # their long polls end in parallel while the rest stops
            poller.signal_stop()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join(10)
            self._snapshot_thread = None
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for poller in self._pollers:
            poller.stop()
        self._pollers = []
        if self._alarms is not None:
            self._alarms.stop()
            self._alarms = None
        if self._runtime is not None:
            self._runtime.stop()
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        try:
            if snapshot and self.started and self._moto is not None and self._moto.running:
                self.snapshot()
                if self._persistence is not None and self._deployer is not None:
                    self._persistence.save_messages(self._deployer.deployment.queue_urls)
        finally:
            if self._front_door is not None:
                self._front_door.stop()
                self._front_door = None
            if self._moto is not None:
                self._moto.stop()
                self._moto = None
            self._runtime = None
            self._clients.clear()
            if self.started:
                self._progress("local stack stopped")
            self.started = False
            self._stop_snapshots = threading.Event()

    # --- access ---------------------------------------------------------------------------------
    @property
    def aws_endpoint(self) -> str:
        if self._front_door is None:
            raise ConfigurationError("the local stack is not started")
        return self._front_door.url

    @property
    def api_url(self) -> str:
        if self._api is None:
            raise ConfigurationError("the local stack's API is not started")
        return self._api.url

    @property
    def deployment(self) -> Deployment:
        if self._deployer is None:
            raise ConfigurationError("the local stack is not started")
        return self._deployer.deployment

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise ConfigurationError("the local stack is not started")
        return self._runtime

    def client(self, service: str) -> Any:
        """A boto3 client bound to the front door (cached; boto3 clients are thread-safe)."""
        return self._clients.get(service, self.aws_endpoint)

    def _function_output(self, physical: str, version: str, line: str) -> None:
        if self._metrics is not None:
            self._metrics.record_line(line)
        declared = physical.removeprefix(physical_name(self.stage, ""))
        self.logs.write(declared, version, line)
        if self._echo_output:
            self._function_log(f"[{physical}:{version}] {line}")

    def function_name(self, function: str) -> str:
        return physical_name(self.stage, function)

    def queue_url(self, queue: str) -> str:
        return self.deployment.queue_urls[queue]

    def _invoke_alias(self, function: str, payload: bytes) -> InvokeResult:
        spec = self.topology.function(function)
        return self.runtime.invoke(self.function_name(function), payload, spec.alias)

    def invoke(self, function: str, payload: Any = None, qualifier: str | None = None) -> InvokeResult:
        """Runs a declared function (its alias by default); ``payload`` is JSON-encoded unless bytes."""
        data = payload if isinstance(payload, bytes) else json.dumps({} if payload is None else payload).encode()
        spec = self.topology.function(function)
        return self.runtime.invoke(self.function_name(function), data, qualifier or spec.alias)

    def trigger_schedule(self, name: str, function: str | None = None) -> InvokeResult:
        if self._scheduler is None:
            raise ConfigurationError("the local stack is not started")
        return self._scheduler.trigger(name, function)

    def redeploy(self, function: str, env_overrides: dict[str, str] | None = None) -> str:
        """Deploys the function again (code from disk, env + ``env_overrides``); returns the version."""
        if self._deployer is None:
            raise ConfigurationError("the local stack is not started")
        version = self._deployer.deploy_function(function, env_overrides)
        self.runtime.invalidate()
        return version

    def flush_metrics(self) -> None:
        """Publishes buffered AWS/Lambda and EMF metrics now (they are otherwise flushed every second)."""
        if self._metrics is not None:
            self._metrics.flush()

    def evaluate_alarms(self) -> dict[str, str]:
        """Flushes metrics, evaluates every metric alarm now; returns alarm name -> state."""
        if self._alarms is None:
            raise ConfigurationError("the local stack is not started")
        self.flush_metrics()
        return self._alarms.evaluate_now()

    def cold_starts(self) -> list[WorkerStats]:
        """Per live worker: init (handler import) and cold start (spawn -> first response), in ms."""
        return self.runtime.stats()

    # --- persistence ----------------------------------------------------------------------------
    def _tables(self) -> list[str]:
        return [physical_name(self.stage, t.name) for t in self.topology.tables]

    def snapshot(self) -> int:
        """Saves new and changed S3 objects and every table's items; returns how many objects were written."""
        if self._persistence is None or self._moto is None:
            return 0
        return self._persistence.snapshot(self._tables())

    def _snapshot_loop(self) -> None:
        stop = self._stop_snapshots
        while not stop.wait(self.snapshot_interval_s):
            try:
                self.snapshot()
            except Exception as exc:  # a failed snapshot is retried next period and on stop
                self._function_log(f"[local] state snapshot failed: {type(exc).__name__}: {exc}")

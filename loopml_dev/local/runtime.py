"""Executes Lambda functions as Lambda does: one warm process per execution environment.

Each (function, published version) gets its own worker processes, started with that version's
configuration as moto reports it (environment, handler, timeout, memory, layers) and that version's
code (the zip whose SHA-256 moto reports as ``CodeSha256``, kept in ``state_dir/code``). A worker
serves one invocation at a time. When every worker of a version is busy, a new one is started (Lambda
scales out the same way) up to ``max_workers_per_version``; past that, callers wait for a free one.
Configuration read from moto is cached and dropped whenever a Lambda write goes through the front
door (``invalidate``), so ``update_alias(RoutingConfig=...)`` takes effect on the next invoke.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from loopml_dev.local.code_store import CodeStore, FunctionNotFound
from loopml_dev.local.frames import END_OF_OUTPUT, FrameTimeout, PeerExited, read_frame, write_frame
from loopml_dev.local.grants import ENV as GRANTS_ENV

_WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "SYSTEMROOT")
_CONFIG_TTL_S = 30.0
_INIT_LIMIT_S = 10.0


@dataclass
class InvokeResult:
    status: int
    payload: bytes
    executed_version: str
    function_error: str | None = None
    duration_ms: float = 0.0
    request_id: str = ""
    log_tail: str = ""  # this invocation's log, START to REPORT, as ``--log-type Tail`` returns it


@dataclass
class WorkerStats:
    function: str
    version: str
    pid: int
    init_ms: float | None
    cold_start_ms: float | None
    invocations: int


@dataclass(frozen=True)
class _Resolved:
    name: str
    version: str
    invoked_arn: str
    config: dict[str, Any]
    key: str  # fingerprint of everything a worker is started with
    qualifier: str | None = None


@dataclass
class _Worker:
    key: str
    function: str
    version: str
    process: subprocess.Popen[bytes]
    request_fd: int
    response_fd: int
    tmp_dir: Path | None = None
    spawned: float = field(default_factory=time.perf_counter)
    init_ms: float | None = None
    init_error: dict[str, Any] | None = None
    cold_start_ms: float | None = None
    invocations: int = 0
    pending_idle: bool = False
    dead: bool = False  # must not serve again (timed out, exited, failed Init)
    lines: list[str] = field(default_factory=list)  # the current invocation's output
    output_ended: threading.Event = field(default_factory=threading.Event)
    closed: bool = False  # pipes closed and process reaped

    def close(self) -> None:
        """Kills the worker (and anything its handler started) unless it already exited; idempotent."""
        self.dead = True
        if not self.closed:
            self.closed = True
            if self.request_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.request_fd)
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # with anything the handler started
                    os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            with contextlib.suppress(OSError):
                os.close(self.response_fd)
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _peak_rss_mb(pid: int) -> int | str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return "?"


def parse_function_name(function: str, qualifier: str | None) -> tuple[str, str | None]:
    """Accepts a name, ``name:qualifier``, a partial ARN or a full ARN, as the Invoke API does."""
    parts = function.split(":")
    if function.startswith("arn:"):
        name, embedded = parts[6], (parts[7] if len(parts) > 7 else None)
    elif len(parts) >= 3 and parts[1] == "function":
        name, embedded = parts[2], (parts[3] if len(parts) > 3 else None)
    else:
        name, embedded = parts[0], (parts[1] if len(parts) > 1 else None)
    return name, embedded or qualifier or None


class Runtime:
    """Resolves aliases, starts and reuses workers, enforces timeouts; thread-safe."""

    def __init__(
        self,
        lambda_client: Any,
        code_store: CodeStore,
        aws_endpoint: str,
        region: str,
        log: Callable[[str], None] | None = None,
        max_workers_per_version: int = 4,
        excluded_paths: tuple[str, ...] = (),
        on_invoke: Callable[[str, str | None, str, float, bool], None] | None = None,
        on_output: Callable[[str, str, str], None] | None = None,
        grants: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """``on_invoke(function, qualifier, version, duration_ms, error)`` feeds metrics; ``on_output(function,
        version, line)`` receives every line a function prints (and Lambda's START/END/REPORT lines);
        ``grants`` (physical function name -> ``loopml_dev.local.grants`` statements) are enforced in the
        function's workers, call by call."""
        self._lambda = lambda_client
        self.code_store = code_store
        self.aws_endpoint = aws_endpoint
        self.region = region
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.max_workers_per_version = max_workers_per_version
        # Workers import the library from the published layer only: the repository and this package's
        # folder (which would put the dev tools and the source tree on the path) are left out.
        repository = str(Path(__file__).resolve().parents[2])
        self._excluded = [repository, str(Path(__file__).resolve().parent), *excluded_paths]
        self._lock = threading.Condition()
        self._idle: dict[str, list[_Worker]] = {}
        self._all: list[_Worker] = []
        self._busy: dict[tuple[str, str], int] = {}
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._layer_dirs: dict[str, Path] = {}
        self._closed = False
        self._on_invoke = on_invoke
        self._on_output = on_output
        self.grants = grants if grants is not None else {}

    # --- configuration -------------------------------------------------------------------------
    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < _CONFIG_TTL_S:
            return hit[1]
        value = load()
        self._cache[key] = (now, value)
        return value

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._lambda, operation)(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                target = kwargs.get("FunctionName", "")
                qualifier = kwargs.get("Qualifier") or kwargs.get("Name")
                raise FunctionNotFound(
                    f"Function not found: {target}" + (f":{qualifier}" if qualifier else "")
                ) from None
            raise

    def resolve(self, function: str, qualifier: str | None = None) -> _Resolved:
        """Picks the version to run: an alias draws among its weighted versions on every call."""
        name, qualifier = parse_function_name(function, qualifier)
        version = qualifier or "$LATEST"
        if version != "$LATEST" and not version.isdigit():
            alias = self._cached(
                ("alias", name, version), lambda: self._call("get_alias", FunctionName=name, Name=version)
            )
            version = alias["FunctionVersion"]
            draw = random.random()
            for candidate, weight in (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}).items():
                if draw < weight:
                    version = candidate
                    break
                draw -= weight
        config = self._cached(
            ("config", name, version),
            lambda: self._call("get_function_configuration", FunctionName=name, Qualifier=version),
        )
        arn = config["FunctionArn"].rsplit(":", 1)[0] if config["FunctionArn"].count(":") > 6 else config["FunctionArn"]
        invoked_arn = f"{arn}:{qualifier}" if qualifier else arn
        fingerprint = json.dumps(
            [
                config.get("CodeSha256"),
                config.get("Handler"),
                config.get("Timeout"),
                config.get("MemorySize"),
                (config.get("Environment") or {}).get("Variables", {}),
                [layer["Arn"] for layer in config.get("Layers") or []],
            ],
            sort_keys=True,
        )
        return _Resolved(name, version, invoked_arn, config, f"{name}\x00{version}\x00{fingerprint}", qualifier)

    def _layer_dir(self, arn: str) -> Path:
        cached = self._layer_dirs.get(arn)
        if cached is None:
            parts = arn.split(":")
            layer = self._lambda.get_layer_version(LayerName=parts[6], VersionNumber=int(parts[7]))
            root = self.code_store.extracted(layer["Content"]["CodeSha256"])
            cached = root / "python" if (root / "python").is_dir() else root
            self._layer_dirs[arn] = cached
        return cached

    # --- workers --------------------------------------------------------------------------------
    def _spawn(self, resolved: _Resolved) -> _Worker:
        config = resolved.config
        code_dir = self.code_store.extracted(config["CodeSha256"])
        layer_dirs = [str(self._layer_dir(layer["Arn"])) for layer in config.get("Layers") or []]
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env.update(
            {
                "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
                "TZ": ":UTC",
            }
        )
        env.update((config.get("Environment") or {}).get("Variables", {}))
        env.update(
            {
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_LAMBDA_FUNCTION_NAME": resolved.name,
                "AWS_LAMBDA_FUNCTION_VERSION": resolved.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("MemorySize", 128)),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{resolved.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[{resolved.version}]{uuid.uuid4().hex}",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                "LAMBDA_TASK_ROOT": str(code_dir),
                "_HANDLER": config["Handler"],
                "LOOPML_LOCAL_RUNTIME": "1",
                **({GRANTS_ENV: json.dumps(self.grants[resolved.name])} if resolved.name in self.grants else {}),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # Each environment gets a private temporary folder, as Lambda gives each its own /tmp (for code
        # that uses ``tempfile``; a hard-coded "/tmp/..." path is shared by every local worker).
        tmp_dir = self.code_store.root.parent / "tmp" / uuid.uuid4().hex
        tmp_dir.mkdir(parents=True)
        env["TMPDIR"] = str(tmp_dir)
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        process = subprocess.Popen(
            [
                sys.executable,
                "-s",
                _WORKER_SCRIPT,
                str(request_r),
                str(response_w),
                str(code_dir),
                config["Handler"],
                json.dumps(layer_dirs),
                json.dumps(self._excluded),
            ],
            env=env,
            cwd=str(code_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(request_r, response_w),
            start_new_session=True,  # Ctrl-C goes to the stack, which stops workers in order
        )
        os.close(request_r)
        os.close(response_w)
        worker = _Worker(resolved.key, resolved.name, resolved.version, process, request_w, response_r, tmp_dir)
        threading.Thread(target=self._forward_output, args=(worker,), name=f"log-{resolved.name}", daemon=True).start()
        return worker

    def _forward_output(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        for raw in worker.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line == END_OF_OUTPUT:
                worker.output_ended.set()
                continue
            self._output(worker, line)

    def _output(self, worker: _Worker, line: str) -> None:
        worker.lines.append(line)
        if self._on_output is not None:
            self._on_output(worker.function, worker.version, line)

    def _acquire(self, resolved: _Resolved) -> _Worker:
        pair = (resolved.name, resolved.version)
        with self._lock:
            if self._closed:
                raise RuntimeError("the local runtime is stopped")
            self._retire_stale(resolved)
            while True:
                idle = self._idle.get(resolved.key) or []
                if idle:
                    idle.sort(key=lambda w: w.pending_idle)  # prefer ones whose hooks are done
                    worker = idle.pop(0)
                    self._busy[pair] = self._busy.get(pair, 0) + 1
                    return worker
                if self._busy.get(pair, 0) < self.max_workers_per_version:
                    self._busy[pair] = self._busy.get(pair, 0) + 1
                    break
                self._lock.wait()
        try:
            worker = self._spawn(resolved)
        except BaseException:
            with self._lock:
                self._busy[pair] -= 1
                self._lock.notify_all()
            raise
        with self._lock:
            if self._closed:  # stop() ran while this worker was starting: it must not outlive the stack
                worker.close()
                raise RuntimeError("the local runtime is stopped")
            self._all.append(worker)
        return worker

    def _retire_stale(self, resolved: _Resolved) -> None:
        prefix = f"{resolved.name}\x00{resolved.version}\x00"
        for key in [k for k in self._idle if k.startswith(prefix) and k != resolved.key]:
            for worker in self._idle.pop(key):
                worker.close()
                self._all.remove(worker)

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._busy[(worker.function, worker.version)] -= 1
            if worker.dead or self._closed:
                worker.close()
                if worker in self._all:
                    self._all.remove(worker)
            else:
                self._idle.setdefault(worker.key, []).append(worker)
            self._lock.notify_all()

    # --- invoke ---------------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        payload: bytes = b"",
        qualifier: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        """Synchronous (RequestResponse) invoke; handler errors come back as ``function_error``."""
        resolved = self.resolve(function, qualifier)
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        timeout_s = float(resolved.config.get("Timeout", 3))
        worker = self._acquire(resolved)
        try:
            worker.lines = []
            worker.output_ended.clear()
            cold = worker.init_ms is None and worker.init_error is None
            self._output(worker, f"START RequestId: {request_id} Version: {resolved.version}")
            frame = self._run(worker, resolved, request_id, payload, timeout_s, client_context)
            worker.output_ended.wait(1.0 if not worker.dead else 0.1)  # every line it printed, read
            duration = (time.perf_counter() - started) * 1000
            self._report(worker, resolved, request_id, duration, cold)
            log_tail = "\n".join(worker.lines) + "\n"
        finally:
            self._release(worker)
        if self._on_invoke is not None:
            self._on_invoke(resolved.name, resolved.qualifier, resolved.version, duration, frame["type"] != "result")
        if frame["type"] == "result":
            body = frame["payload"].encode()
            return InvokeResult(200, body, resolved.version, None, duration, request_id, log_tail)
        return InvokeResult(
            200, json.dumps(frame["error"]).encode(), resolved.version, "Unhandled", duration, request_id, log_tail
        )

    def _report(self, worker: _Worker, resolved: _Resolved, request_id: str, duration: float, cold: bool) -> None:
        """Lambda's END and REPORT lines (with the environment's peak memory, from /proc)."""
        memory = resolved.config.get("MemorySize", 128)
        used = _peak_rss_mb(worker.process.pid)
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: {math.ceil(duration)} ms"
            f"\tMemory Size: {memory} MB\tMax Memory Used: {used} MB"
        )
        if cold and worker.init_ms is not None:
            report += f"\tInit Duration: {worker.init_ms:.2f} ms"
        self._output(worker, f"END RequestId: {request_id}")
        self._output(worker, report)

    def _run(
        self,
        worker: _Worker,
        resolved: _Resolved,
        request_id: str,
        payload: bytes,
        timeout_s: float,
        client_context: str | None,
    ) -> dict[str, Any]:
        try:
            if worker.init_ms is None and worker.init_error is None:
                # Init has its own limit (10 s on Lambda; never less than the function timeout here, as a
                # laptop's first import of scipy can be slow) and does not eat into the invocation's time.
                try:
                    ready = read_frame(worker.response_fd, time.monotonic() + max(_INIT_LIMIT_S, timeout_s))
                except FrameTimeout:
                    worker.dead = True
                    return {
                        "type": "error",
                        "error": {
                            "errorType": "Runtime.InitTimeout",
                            "errorMessage": f"RequestId: {request_id} Error: Init phase timed out",
                        },
                    }
                if ready["type"] == "init_error":
                    worker.init_error = ready["error"]
                else:
                    worker.init_ms = ready["init_ms"]
            if worker.init_error is not None:
                worker.dead = True
                return {"type": "error", "error": worker.init_error}
            if worker.pending_idle:  # the previous invocation's post-invoke hooks, still running
                read_frame(worker.response_fd, time.monotonic() + timeout_s)
                worker.pending_idle = False
            deadline = time.monotonic() + timeout_s
            write_frame(
                worker.request_fd,
                {
                    "request_id": request_id,
                    "invoked_function_arn": resolved.invoked_arn,
                    "deadline_ms": int(time.time() * 1000 + (deadline - time.monotonic()) * 1000),
                    "payload": payload.decode() if payload else "",
                    "client_context": client_context,
                },
            )
            frame = read_frame(worker.response_fd, deadline)
            worker.pending_idle = True
            worker.invocations += 1
            if worker.cold_start_ms is None:
                worker.cold_start_ms = (time.perf_counter() - worker.spawned) * 1000
            return frame
        except FrameTimeout:
            worker.dead = True
            return {
                "type": "error",
                "error": {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": (f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"),
                },
            }
        except (PeerExited, OSError):
            worker.dead = True
            code = worker.process.wait()
            return {
                "type": "error",
                "error": {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": (f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"),
                },
            }

    def stats(self) -> list[WorkerStats]:
        with self._lock:
            return [
                WorkerStats(w.function, w.version, w.process.pid, w.init_ms, w.cold_start_ms, w.invocations)
                for w in self._all
                if not w.dead
            ]

    def stop(self) -> None:
        """Closes every worker's request pipe (the worker exits on EOF), then kills stragglers."""
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
            self._idle.clear()
        live = [worker for worker in workers if not worker.closed]
        for worker in live:
            with contextlib.suppress(OSError):
                os.close(worker.request_fd)
            worker.request_fd = -1
        deadline = time.monotonic() + 2
        for worker in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            worker.close()

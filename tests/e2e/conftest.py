"""What end-to-end tests of the local stack share: a running stack with a served model, HTTP, waiting."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loopml_dev.local.apigw import ADMIN_TOKEN_HEADER
from loopml_dev.local.stack import LocalStack
from loopml_dev.local.up import Progress, ensure_first_model, http_json
from tests.conftest import ROOT


class LogSink:
    """Function logs kept in memory (read ``lines`` when a test fails)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


@contextlib.contextmanager
def served_stack(state_dir: Path, first_model_rows: int, **options: Any) -> Iterator[LocalStack]:
    """A local stack on free ports with v1 trained, registered and champion; stopped on exit."""
    settings: dict[str, Any] = {"stage": "test", "api_port": 0, "snapshot_interval_s": 0, "function_log": LogSink()}
    settings.update(options)
    with LocalStack(state_dir, **settings) as local:
        ensure_first_model(local, Progress(io.StringIO()), rows=first_model_rows)
        yield local


def call(stack: LocalStack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request; admin routes get the stack's admin token, as an operator would send it."""
    return http_json(method, stack.api_url + path, body, headers={ADMIN_TOKEN_HEADER: stack.admin_token})


def wait_for(
    check: Callable[[], Any],
    timeout_s: float = 30.0,
    what: str | None = None,
    log: LogSink | None = None,
    interval_s: float = 0.3,
) -> Any:
    """Poll ``check`` until it returns something truthy; then its answer.

    On time-out: the last answer, or, when ``what`` is given, an AssertionError naming it with the
    last function logs.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            if what is None:
                return found
            tail = "\n".join(log.lines[-40:]) if log else ""
            raise AssertionError(f"{what} not reached in {timeout_s} s; last function output:\n{tail}")
        time.sleep(interval_s)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class CliStack:
    """A local stack started as a user starts it (``make up`` or ``loopml local up ...``), until its
    summary; ``stop`` is Ctrl-C to the whole process group, as a terminal sends it."""

    def __init__(self, argv: list[str], api: str, cwd: Path = ROOT, timeout_s: float = 180) -> None:
        self.api = api
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            start_new_session=True,
            # A terminal's foreground job always takes Ctrl-C; a CI job started in the background of a
            # non-interactive shell inherits SIGINT ignored, which would make `stop` a SIGKILL.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.output: list[str] = []
        self._up = threading.Event()
        # One reader for the process's whole life: it keeps the pipe from filling up, and the wait below has a
        # real deadline (a blocking readline on a silent stack would outlast any deadline checked between lines).
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._up.is_set() and self.proc.poll() is None:
            self._up.wait(0.2)
        if self._up.is_set():
            return
        self.stop()
        raise AssertionError(
            f"{' '.join(argv)} did not come up within {timeout_s:.0f}s:\n" + "".join(self.output[-60:])
        )

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "Ctrl-C to stop." in line:
                self._up.set()

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode

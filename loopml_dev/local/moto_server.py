"""moto in server mode as a child process: AWS's control plane and storage for the local stack.

moto runs in its own process so a slow request there never blocks a handler, and so stopping the
stack frees its memory. Its Step Functions interpreter calls Lambda at ``localhost:$MOTO_PORT``; we set
that to the front door's port so state machines reach the functions our runtime executes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from loopml.errors import ConfigurationError

# Must be POSTed before anything is created: switching use_docker later empties the Lambda store.
MOTO_CONFIG = {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}

# The watchdog ends moto when its parent dies without stopping it (a crashed test, kill -9): no orphans.
_BOOT = (
    "import logging, os, sys, threading, time\n"
    "parent = os.getppid()\n"
    "def _watch():\n"
    "    while os.getppid() == parent:\n"
    "        time.sleep(0.5)\n"
    "    os._exit(0)\n"
    "threading.Thread(target=_watch, daemon=True).start()\n"
    # Step Functions' interpreter takes ~1 s to import: do it while the stack deploys everything else.
    "if os.environ.get('LOOPML_PRELOAD_SFN'):\n"
    "    threading.Thread(target=__import__, args=('moto.stepfunctions.parser.models',), daemon=True).start()\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "import moto.server\n"
    # moto keeps nothing on disk: on SIGTERM it may exit at once instead of unwinding (~1 s).
    "moto.server.signal_handler = lambda signum, frame: os._exit(0)\n"
    "sys.exit(moto.server.main(sys.argv[1:]))\n"
)


class MotoServer:
    """One moto process bound to loopback; ``start`` returns once it answers and is configured."""

    def __init__(
        self, port: int, front_door_port: int, log_path: Path | None = None, preload_stepfunctions: bool = False
    ) -> None:
        self.preload_stepfunctions = preload_stepfunctions
        self.port = port
        self.front_door_port = front_door_port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        env = dict(os.environ)
        env.update(
            MOTO_PORT=str(self.front_door_port),
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's dummy credentials
            AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        env.pop("AWS_ENDPOINT_URL", None)
        if self.preload_stepfunctions:
            env["LOOPML_PRELOAD_SFN"] = "1"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._log_file = log
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # our Ctrl-C must not kill it before we snapshot state
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                raise ConfigurationError(
                    f"moto server exited with code {self._process.returncode} on port {self.port}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigurationError(f"moto server did not answer on port {self.port}") from None
                time.sleep(0.05)
        request = urllib.request.Request(
            f"{self.url}/moto-api/config",
            data=json.dumps(MOTO_CONFIG).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log, self._log_file = self._log_file, None
        if log is not None and log is not subprocess.DEVNULL:
            log.close()  # type: ignore[attr-defined]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

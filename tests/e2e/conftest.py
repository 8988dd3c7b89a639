"""What end-to-end tests of the local stack share: a running stack with a served model, HTTP, waiting."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loopml.local.apigw import ADMIN_TOKEN_HEADER
from loopml.local.stack import LocalStack
from loopml.local.up import Progress, ensure_first_model, http_json


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

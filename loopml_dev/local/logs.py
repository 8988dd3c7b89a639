"""Each function's log in its own file under the state dir, as CloudWatch Logs keeps one group per function.

The runtime hands every line a function prints (and Lambda's ``START``/``END``/``REPORT`` lines) to
``FunctionLogs.write``; ``loopml logs FUNCTION`` reads them back, readably: Powertools' JSON lines as
``time LEVEL message key=value``, EMF metric documents left out (they are delivered to the local
CloudWatch instead; ``--metrics`` shows them).

File format: one line per record, ``<ISO time>\\t<Lambda version>\\t<line as printed>``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FOLDER = "logs"
MAX_BYTES = 20 * 1024 * 1024  # per file; the previous one is kept as <function>.log.1
_QUIET_KEYS = frozenset({"level", "location", "message", "timestamp", "service", "cold_start", "function_arn"})
_QUIET_KEYS |= {"function_name", "function_memory_size", "function_request_id", "xray_trace_id", "sampling_rate"}


class FunctionLogs:
    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / FOLDER
        self._lock = threading.Lock()

    def path(self, function: str) -> Path:
        return self.folder / f"{function}.log"

    def write(self, function: str, version: str, line: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = f"{stamp}\t{version}\t{line.rstrip()}\n"
        path = self.path(function)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > MAX_BYTES:
                path.replace(path.with_name(path.name + ".1"))
            with path.open("a", encoding="utf-8") as out:
                out.write(record)


def is_metric_document(line: str) -> bool:
    """An Embedded Metric Format document (a JSON object with ``_aws.CloudWatchMetrics``)."""
    if not line.startswith("{") or '"_aws"' not in line:
        return False
    try:
        document = json.loads(line)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("_aws"), dict)


def readable(record: str, metrics: bool = False) -> str | None:
    """One stored record as a person reads it; None for an EMF document unless ``metrics``."""
    stamp, _, rest = record.rstrip("\n").partition("\t")
    version, _, line = rest.partition("\t")
    when = stamp.replace("T", " ")[:23]
    if is_metric_document(line):
        if not metrics:
            return None
        document: dict[str, Any] = json.loads(line)
        names = [m["Name"] for block in document["_aws"].get("CloudWatchMetrics", []) for m in block.get("Metrics", [])]
        values = ", ".join(f"{n}={document.get(n)}" for n in names)
        return f"{when} METRIC [{version}] {values}"
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and "message" in entry:
            extra = " ".join(f"{k}={_short(v)}" for k, v in entry.items() if k not in _QUIET_KEYS)
            level = str(entry.get("level", "INFO"))
            return f"{when} {level:<7} [{version}] {entry['message']}" + (f"  {extra}" if extra else "")
    return f"{when}         [{version}] {line}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def read(logs: FunctionLogs, function: str, since: datetime | None = None, metrics: bool = False) -> Iterator[str]:
    """The function's records at or after ``since``, readable, oldest first (the rotated file first)."""
    for path in (logs.path(function).with_name(f"{function}.log.1"), logs.path(function)):
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for record in lines:
                if since is not None and _stamp(record) < since:
                    continue
                shown = readable(record, metrics)
                if shown is not None:
                    yield shown


def follow(logs: FunctionLogs, function: str, metrics: bool = False, poll_s: float = 0.5) -> Iterator[str]:
    """New records as they are written, until interrupted (``tail -f``)."""
    path = logs.path(function)
    position = path.stat().st_size if path.exists() else 0
    while True:
        if path.exists():
            size = path.stat().st_size
            if size < position:  # rotated
                position = 0
            if size > position:
                with path.open(encoding="utf-8", errors="replace") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                for record in chunk.splitlines():
                    shown = readable(record, metrics)
                    if shown is not None:
                        yield shown
        time.sleep(poll_s)


def _stamp(record: str) -> datetime:
    try:
        return datetime.fromisoformat(record.split("\t", 1)[0])
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)

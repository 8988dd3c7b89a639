"""Function logs as a person reads them: JSON logs flattened, EMF documents left to CloudWatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml_dev.local import logs

POWERTOOLS = json.dumps(
    {
        "level": "ERROR",
        "location": "batch_response:46",
        "message": "capture batch not stored; will be retried",
        "timestamp": "2026-12-01 23:01:11,697+0000",
        "service": "feedback",
        "cold_start": True,
        "function_name": "loopml-local-feedback",
        "messages": 3,
        "error": "TransientError: SlowDown",
    }
)
EMF = json.dumps(
    {
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "loopml", "Metrics": [{"Name": "DriftRows"}]}]},
        "DriftRows": [400.0],
    }
)


def record(line: str, version: str = "3", at: str = "2026-12-01T23:01:11.697+00:00") -> str:
    return f"{at}\t{version}\t{line}\n"


def test_a_json_log_line_reads_as_level_message_and_its_own_fields() -> None:
    shown = logs.readable(record(POWERTOOLS))
    assert shown == (
        "2026-12-01 23:01:11.697 ERROR   [3] capture batch not stored; will be retried  "
        "messages=3 error=TransientError: SlowDown"
    )


def test_metric_documents_are_left_out_unless_asked_for() -> None:
    assert logs.readable(record(EMF)) is None
    assert logs.readable(record(EMF), metrics=True) == "2026-12-01 23:01:11.697 METRIC [3] DriftRows=[400.0]"
    assert logs.readable(record("plain text {not json")) == "2026-12-01 23:01:11.697         [3] plain text {not json"


def test_files_are_per_function_rotate_and_read_back_from_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = logs.FunctionLogs(tmp_path)
    monkeypatch.setattr(logs, "MAX_BYTES", 200)
    for n in range(12):
        store.write("inference", "1", f"line {n}")
    store.write("drift", "2", EMF)
    assert (tmp_path / "logs" / "inference.log.1").exists()  # rotated past MAX_BYTES
    every = list(logs.read(store, "inference"))
    assert [line.rsplit(" ", 1)[-1] for line in every][-3:] == ["9", "10", "11"]
    assert list(logs.read(store, "inference", since=datetime.now(UTC) + timedelta(minutes=1))) == []
    assert list(logs.read(store, "drift")) == [] and len(list(logs.read(store, "drift", metrics=True))) == 1

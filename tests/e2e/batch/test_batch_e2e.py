"""Batch scoring in the local stack: a file uploaded under batch/input/ -> S3 notification -> batch queue
-> batch function -> scored file and error report under batch/output/."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from loopml.topology import TOPOLOGY, Topology, physical_name
from loopml_dev import datasets
from loopml_dev.local import LocalStack
from loopml_dev.local.up import MODEL, Progress, ensure_first_model
from tests.e2e.conftest import LogSink, served_stack, wait_for

pytestmark = pytest.mark.e2e

BATCH_TOPOLOGY = Topology(
    buckets=TOPOLOGY.buckets,
    queues=(TOPOLOGY.queue("batch"),),
    functions=(TOPOLOGY.function("batch"),),
)


@pytest.fixture(scope="module")
def log() -> LogSink:
    return LogSink()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, log: LogSink) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("batch-state")
    with served_stack(
        state,
        1500,
        topology=BATCH_TOPOLOGY,
        alarm_interval_s=0,
        function_log=log,
        env_overrides={"batch": {"CACHE_DIR": str(state / "model-cache"), "CHUNK_ROWS": "500"}},
    ) as local:
        yield local


def test_an_uploaded_file_is_scored_and_its_bad_rows_reported(stack: LocalStack, log: LogSink) -> None:
    started = time.monotonic()
    s3 = stack.client("s3")
    bucket = physical_name(stack.stage, "models")
    rows = datasets.rows(datasets.loan_default(1200, seed=71))
    rows[9]["credit_score"] = "n/a?"
    del rows[700]["region"]
    lines = [json.dumps({"application_id": f"app-{i}", **r}) for i, r in enumerate(rows)]
    lines[1000] = "{broken"
    s3.put_object(Bucket=bucket, Key=f"batch/input/{MODEL}/november.jsonl", Body=("\n".join(lines) + "\n").encode())

    def report() -> dict[str, Any] | None:
        try:
            body = s3.get_object(Bucket=bucket, Key=f"batch/output/{MODEL}/november.errors.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        found: dict[str, Any] = json.loads(body)
        return found

    found = wait_for(report, 50, "the batch error report", log)
    summary = found["summary"]
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (1200, 1197, 3), found
    assert summary["model_version"] == 1 and found["file_error"] is None
    assert [(e["row"], e["field"], e["reason"]) for e in found["errors"]] == [
        (10, "credit_score", "expected a number"),
        (701, "region", "field required"),
        (1001, None, "not valid JSON (Expecting property name enclosed in double quotes)"),
    ]
    body = s3.get_object(Bucket=bucket, Key=f"batch/output/{MODEL}/november.scored.jsonl")["Body"].read()
    scored = [json.loads(line) for line in body.splitlines()]
    assert len(scored) == 1197 and summary["output"].endswith("/november.scored.jsonl")
    first = scored[0]
    assert first["application_id"] == "app-0" and first["model_version"] == 1 and first["row_number"] == 1
    assert first["confidence"] == max(first["probabilities"].values())
    assert "app-9" not in {s["application_id"] for s in scored}

    # a CSV with no model segment is scored by the default model, in CSV
    columns = datasets.loan_default(40, seed=72)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    s3.put_object(Bucket=bucket, Key="batch/input/small.csv", Body=out.getvalue().encode())

    def scored_csv() -> list[dict[str, str]] | None:
        try:
            text = s3.get_object(Bucket=bucket, Key=f"batch/output/{MODEL}/small.scored.csv")["Body"].read().decode()
        except s3.exceptions.NoSuchKey:
            return None
        return list(csv.DictReader(io.StringIO(text)))

    table = wait_for(scored_csv, 30, "the scored CSV", log)
    assert len(table) == 40 and {"prediction", "probability_0", "probability_1", "confidence"} <= set(table[0])
    print(f"batch e2e {time.monotonic() - started:.1f}s")


def test_restored_uploads_fire_no_notification(tmp_path_factory: pytest.TempPathFactory, log: LogSink) -> None:
    """The local stack restores saved objects before it configures notifications: a restart re-scores nothing."""
    state = tmp_path_factory.mktemp("batch-restart")
    bucket = physical_name("test", "models")
    key = f"batch/output/{MODEL}/again.errors.json"

    def run(first: bool) -> str:
        with LocalStack(
            state,
            stage="test",
            api_port=0,
            topology=BATCH_TOPOLOGY,
            snapshot_interval_s=0,
            alarm_interval_s=0,
            function_log=log,
        ) as local:
            s3 = local.client("s3")

            def finished(key: str = key) -> str | None:
                try:
                    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                except s3.exceptions.NoSuchKey:
                    return None
                return str(report["summary"]["finished_at"])

            if first:
                ensure_first_model(local, Progress(io.StringIO()), rows=1000)
                rows = datasets.rows(datasets.loan_default(20, seed=73))
                s3.put_object(
                    Bucket=bucket, Key="batch/input/again.jsonl", Body="\n".join(map(json.dumps, rows)).encode()
                )
                return str(wait_for(finished, 30, "the first scoring", log))
            # Proof that notifications flow again, without sleeping: a file uploaded after the restart is
            # scored; a (wrong) notification for the restored file, queued before it, would have been too.
            rows = datasets.rows(datasets.loan_default(5, seed=74))
            s3.put_object(Bucket=bucket, Key="batch/input/after.jsonl", Body="\n".join(map(json.dumps, rows)).encode())
            wait_for(lambda: finished(f"batch/output/{MODEL}/after.errors.json"), 30, "the scoring after restart", log)
            return str(finished())

    assert run(first=True) == run(first=False)

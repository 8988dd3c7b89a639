"""Capture consumer benchmark: records/s per invocation for a 1,000-record SQS batch.

Three figures, each measured in the same run:

- processing: the feedback function's handler called in-process with a real-shaped SQS event of 1,000
  capture records (parse, validate, de-duplicate, group, gzip JSON Lines, index/review entries, partial
  batch response, Powertools logging and metrics), with S3 and DynamoDB replaced by in-memory stores;
- the S3 round trip of the object that batch produces (put + get) against a moto server on loopback;
- the whole invocation against that moto server (S3 + DynamoDB adapters), for scale.

Also reported: S3 objects written per 1,000 records and their size. Every batch gets fresh prediction
ids, so nothing is skipped as a duplicate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from loopml_dev.bench.common import moto_server
from loopml_dev.local.context import StubContext
from loopml_dev.local.stores import create_table

REPO = Path(__file__).resolve().parents[2]  # loopml_dev/bench/x.py -> the repository
RECORDS = 1000
ROUNDS = 15
BUCKET = "loopml-bench-models"
TABLES = {"PREDICTION_INDEX_TABLE": "bench-index", "REVIEW_TABLE": "bench-review", "SUBJECTS_TABLE": "bench-subjects"}


def _rows() -> list[dict[str, Any]]:
    from loopml_dev import datasets

    columns = datasets.loan_default(RECORDS, seed=5)
    columns.pop(datasets.TARGET, None)
    return datasets.rows(columns)


def sqs_event(rows: list[dict[str, Any]], records_per_message: int) -> dict[str, Any]:
    """A capture batch as Lambda delivers it; each message holds one /predict request's records."""
    from loopml.capture import pack_messages
    from loopml.feedback import layout

    now = datetime.now(UTC)
    records = []
    for i, row in enumerate(rows):
        confidence = 0.5 + (i % 50) / 100
        records.append(
            {
                "kind": "prediction",
                "schema_version": 1,
                "prediction_id": layout.prediction_id(now, uuid.uuid4().hex),
                "model": "default",
                "model_version": 1,
                "lambda_version": "1",
                "request_id": str(uuid.uuid4()),
                "timestamp": now.isoformat(),
                "features": row,
                "prediction": int(confidence > 0.7),
                "probabilities": {"0": round(1 - confidence, 6), "1": round(confidence, 6)},
                "confidence": confidence,
                "latency_ms": 0.41,
                "degraded": False,
                "flags": {"out_of_range": [], "unseen_category": [], "missing": []},
                "subject_hash": None,
            }
        )
    bodies = []
    for start in range(0, len(records), records_per_message):
        bodies.extend(pack_messages(records[start : start + records_per_message]))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:loopml-bench-capture",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def _load_handler() -> ModuleType:
    name = "loopml_bench_feedback_app"
    spec = importlib.util.spec_from_file_location(name, REPO / "functions" / "feedback" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _in_memory(module: ModuleType) -> Any:
    """The module's collaborators with S3 and DynamoDB replaced by in-memory stores."""
    from loopml.feedback.consumer import CaptureConsumer
    from loopml_dev.memory import MemoryObjectStore, MemoryPredictionIndex, MemoryReviewList, MemorySubjects

    store = MemoryObjectStore()
    parts: Any = getattr(module, "parts")  # noqa: B009 - a module attribute mypy cannot see
    old = parts.consumer
    consumer = CaptureConsumer(
        store, MemoryPredictionIndex(), MemorySubjects(), MemoryReviewList(), old.config, old.sensitive
    )
    setattr(module, "parts", dataclasses.replace(parts, consumer=consumer, store=store))  # noqa: B010
    return store


def _time_batches(
    module: ModuleType, rows: list[dict[str, Any]], per_message: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per invocation (CPU time is what a shared, busy machine distorts least)."""
    wall, cpu = [], []
    for _ in range(rounds):
        event = sqs_event(rows, per_message)
        with contextlib.redirect_stdout(io.StringIO()):  # EMF metrics and JSON logs
            started, started_cpu = time.perf_counter(), time.process_time()
            out = module.handler(event, StubContext("feedback"))
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        assert out["batchItemFailures"] == [], out
    return wall, cpu


def _environment(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MODEL_BUCKET": BUCKET,
        "FEEDBACK_QUEUE_URL": f"{endpoint}/123456789012/bench-feedback",
        **TABLES,
        "SUBJECT_KEY": "bench-only-subject-key-0123456789abcdef",
        "POWERTOOLS_SERVICE_NAME": "feedback",
        "POWERTOOLS_METRICS_NAMESPACE": "loopml",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def _create_resources(endpoint: str) -> None:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    for table in TABLES.values():
        create_table(dynamodb, table)


def _floor(rows: list[dict[str, Any]]) -> float:
    """The irreducible work of a capture batch: parse each message body, encode JSON Lines, gzip."""
    import gzip

    bodies = [json.dumps({"v": 1, "records": [row]}) for row in rows]
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        lines = [json.dumps(r, separators=(",", ":")) for b in bodies for r in json.loads(b)["records"]]
        gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run() -> dict[str, Any]:
    from loopml.adapters.aws import clear_clients
    from loopml.keys import CAPTURED
    from loopml.observability import logger

    rows = _rows()
    results: dict[str, Any] = {"records_per_batch": RECORDS}
    saved = dict(os.environ)
    level = logger.log_level
    logger.setLevel("WARNING")  # one INFO line per batch would drown the figures (and cost time)
    try:
        with moto_server() as endpoint:
            os.environ.update(_environment(endpoint))
            clear_clients()
            _create_resources(endpoint)
            module = _load_handler()

            # 1. S3 and DynamoDB against moto: the whole invocation, for scale
            moto_samples, _ = _time_batches(module, rows, 10, 3)
            written = module.parts.store.list_keys(CAPTURED)
            data = module.parts.store.get(written[-1])
            round_trips = []
            for n in range(20):
                started = time.perf_counter()
                module.parts.store.put(f"bench/roundtrip-{n}.jsonl.gz", data)
                module.parts.store.get(f"bench/roundtrip-{n}.jsonl.gz")
                round_trips.append((time.perf_counter() - started) * 1000)

            # 2. processing only: the same handler with in-memory stores
            store = _in_memory(module)
            _time_batches(module, rows, 1, 2)  # warm-up
            per_request, per_request_cpu = _time_batches(module, rows, 1, ROUNDS)  # 1,000 messages x 1 record
            per_batch_request, per_batch_cpu = _time_batches(module, rows, 10, ROUNDS)  # 100 x 10 records
            puts_before = store.puts
            _time_batches(module, rows, 10, 1)
            objects_per_1000 = store.puts - puts_before
    finally:
        logger.setLevel(level)
        os.environ.clear()
        os.environ.update(saved)
        clear_clients()
    raw = sum(len(json.dumps(r)) for r in rows)
    floor = _floor(rows)

    def rate(samples: list[float]) -> int:
        return round(RECORDS / statistics.median(samples))

    results.update(
        {
            "processing_ms_1000x1": round(statistics.median(per_request) * 1000, 1),
            "processing_records_per_s_1000x1": rate(per_request),
            "processing_cpu_records_per_s_1000x1": rate(per_request_cpu),
            "processing_ms_100x10": round(statistics.median(per_batch_request) * 1000, 1),
            "processing_records_per_s_100x10": rate(per_batch_request),
            "processing_cpu_records_per_s_100x10": rate(per_batch_cpu),
            "s3_objects_per_1000_records": objects_per_1000,
            "object_bytes_gzip": len(data),
            "features_json_bytes": raw,
            "s3_put_get_round_trip_ms_median": round(statistics.median(round_trips), 2),
            "moto_invocation_ms_median": round(statistics.median(moto_samples) * 1000, 1),
            "moto_records_per_s": rate(moto_samples),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "floor_ms": round(floor * 1000, 1),
            "ratio_to_floor_100x10": round(statistics.median(per_batch_request) / floor, 2),
        }
    )
    r = results
    print(f"feedback capture consumer, {RECORDS:,}-record SQS batch per invocation (median of {ROUNDS})")
    print(
        f"  processing, S3/DynamoDB in memory, 1,000 messages x 1 record: {r['processing_ms_1000x1']} ms wall "
        f"= {r['processing_records_per_s_1000x1']:,} records/s ({r['processing_cpu_records_per_s_1000x1']:,}/s CPU)"
    )
    print(
        f"  processing, S3/DynamoDB in memory, 100 messages x 10 records: {r['processing_ms_100x10']} ms wall "
        f"= {r['processing_records_per_s_100x10']:,} records/s ({r['processing_cpu_records_per_s_100x10']:,}/s CPU)"
    )
    print(
        f"  baseline, the same 1,000 records parsed, re-encoded and gzipped with nothing else: {r['floor_ms']} ms; "
        f"ratio {r['ratio_to_floor_100x10']}x"
    )
    print(
        f"  S3 objects per 1,000 records: {objects_per_1000} ({len(data):,} bytes gzip JSON Lines); "
        f"S3 put+get round trip of that object (moto server): {r['s3_put_get_round_trip_ms_median']} ms"
    )
    print(
        f"  whole invocation against moto server (S3 + DynamoDB): {r['moto_invocation_ms_median']} ms "
        f"= {r['moto_records_per_s']:,} records/s; load average {r['load_average_1min']} on {os.cpu_count()} CPUs"
    )
    return results


if __name__ == "__main__":
    run()

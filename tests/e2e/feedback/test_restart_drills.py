"""Privacy across a restart: what the DynamoDB tables hold (opt-outs, the index, the review list) must
survive Ctrl-C and the next start, or an opted-out subject is captured again and an erasure misses rows.

Both drills stop the local stack and start a new one on the same state dir, as `make up` does.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from loopml.adapters.s3 import S3ObjectStore
from loopml.feedback.keys import subject_hasher
from loopml.feedback.reader import read_captured
from loopml.topology import physical_name
from loopml_dev.local.stack import LocalStack
from loopml_dev.local.up import example_instance
from tests.e2e.conftest import LogSink, call, served_stack, wait_for

pytestmark = pytest.mark.e2e
STAGE = "drills"


def _store(stack: LocalStack) -> S3ObjectStore:
    return S3ObjectStore(stack.client("s3"), physical_name(stack.stage, "models"))


def _rows(stack: LocalStack) -> list:
    now = datetime.now(UTC)
    return read_captured(_store(stack), "default", now - timedelta(hours=2), now + timedelta(minutes=5))


def _stored_batches(log: LogSink) -> list[dict]:
    found = []
    for line in log.lines:
        start = line.find("{")
        if '"capture batch stored"' in line and start >= 0:
            found.append(json.loads(line[start:]))
    return found


def _hash(stack: LocalStack, subject: str) -> str:
    secret = physical_name(stack.stage, "subject-key")
    key = stack.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    return subject_hasher(key, None)(subject)


def test_opt_out_then_restart_then_predict_is_not_captured(tmp_path: Path) -> None:
    subject = "drill-opted-out"
    with served_stack(tmp_path, 1500, stage=STAGE) as stack:
        status, _ = call(
            stack, "POST", "/predict", {"instance": example_instance(), "subject_id": subject, "consent": False}
        )
        assert status == 200
        table = physical_name(stack.stage, "subjects")
        subject_hash = _hash(stack, subject)
        dynamodb = stack.client("dynamodb")
        wait_for(
            lambda: dynamodb.get_item(TableName=table, Key={"id": {"S": subject_hash}}).get("Item"), what="opt-out"
        )

    log = LogSink()
    with served_stack(tmp_path, 1500, stage=STAGE, function_log=log) as stack:
        status, answer = call(stack, "POST", "/predict", {"instance": example_instance(), "subject_id": subject})
        assert status == 200
        pid = answer["predictions"][0]["prediction_id"]
        status, _ = call(stack, "POST", "/predict", {"instance": example_instance(), "subject_id": "drill-control"})
        assert status == 200
        batches = wait_for(
            lambda: sum(b["dropped"] for b in _stored_batches(log)) >= 1 and _stored_batches(log),
            what="the opted-out prediction dropped",
            log=log,
        )
        assert sum(b["dropped"] for b in batches) == 1
        wait_for(
            lambda: any(r.subject_hash == _hash(stack, "drill-control") for r in _rows(stack)), what="control stored"
        )
        assert pid not in {r.prediction_id for r in _rows(stack)}


def test_predict_then_restart_then_erase_leaves_nothing_of_the_subject(tmp_path: Path) -> None:
    subject = "drill erased/ü@example.com"  # percent-encoded in the DELETE path, as a client must send it
    with served_stack(tmp_path, 1500, stage=STAGE) as stack:
        status, answer = call(stack, "POST", "/predict", {"instance": example_instance(), "subject_id": subject})
        assert status == 200
        pid = answer["predictions"][0]["prediction_id"]
        wait_for(lambda: pid in {r.prediction_id for r in _rows(stack)}, what="prediction stored")
        status, _ = call(stack, "POST", "/feedback", {"prediction_id": pid, "label": 1, "source": "user"})
        assert status == 202
        wait_for(lambda: any(r.prediction_id == pid and r.label == 1 for r in _rows(stack)), what="label joined")
        status, _ = call(stack, "POST", f"/review/{pid}", {"label": 0})
        assert status == 202
        wait_for(
            lambda: any(r.prediction_id == pid and r.label_source == "reviewer" for r in _rows(stack)), what="review"
        )
        subject_hash = _hash(stack, subject)

    with served_stack(tmp_path, 1500, stage=STAGE) as stack:
        status, receipt = call(stack, "DELETE", f"/subjects/{quote(subject, safe='')}")
        assert status == 200, receipt
        assert receipt["predictions_removed"] == 1 and receipt["feedback_removed"] == 2, receipt
        store = _store(stack)
        for key in store.list_keys("captured/"):
            data = store.get(key)
            text = gzip.decompress(data).decode() if key.endswith(".gz") else data.decode()
            assert pid not in text and subject_hash not in text, key
        assert pid not in {r.prediction_id for r in _rows(stack)}
        status, page = call(stack, "GET", "/review?limit=100")
        assert status == 200 and pid not in {item["prediction_id"] for item in page["items"]}
        dynamodb = stack.client("dynamodb")
        for table in ("review", "prediction-index"):
            items = dynamodb.scan(TableName=physical_name(stack.stage, table))["Items"]
            holding = [i for i in items if pid in json.dumps(i)]
            assert all(i.get("erased", {}).get("BOOL") for i in holding), (table, holding)

"""Prediction -> label -> captured dataset through the local stack: HTTP in, SQS pollers, S3 out.

The real topology on free loopback ports: POST /predict (with a subject id), POST /feedback and a
reviewer label over HTTP, the pollers feed the capture and feedback queues to the feedback function,
and ``read_captured`` finds the prediction with the reviewer's label joined. Then the subject is erased
over the iam route and nothing of theirs is left in the bucket.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from loopml.adapters.s3 import S3ObjectStore
from loopml.capture import CapturedRow
from loopml.feedback.reader import read_captured
from loopml.topology import physical_name
from loopml_dev.local.stack import LocalStack
from loopml_dev.local.up import example_instance
from tests.e2e.conftest import call, served_stack, wait_for

pytestmark = pytest.mark.e2e
SUBJECT = "e2e-customer-0042"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with served_stack(tmp_path_factory.mktemp("feedback-e2e"), 1500, stage="fbe2e") as local:
        yield local


def test_prediction_and_labels_meet_in_the_dataset_then_the_subject_is_erased(stack: LocalStack) -> None:
    started = time.perf_counter()
    status, answer = call(stack, "POST", "/predict", {"instance": example_instance(), "subject_id": SUBJECT})
    assert status == 200, answer
    pid = answer["predictions"][0]["prediction_id"]
    status, _ = call(stack, "POST", "/predict", {"instance": example_instance(), "consent": False})
    assert status == 200

    status, receipt = call(stack, "POST", "/feedback", {"prediction_id": pid, "label": 1, "source": "user"})
    assert status == 202, receipt
    assert receipt["items"][0]["status"] in ("accepted", "pending")
    status, receipt = call(stack, "POST", f"/review/{pid}", {"label": 0, "comment": "checked"})
    assert status == 202, receipt
    status, bad = call(stack, "POST", "/feedback", {"prediction_id": pid, "label": "maybe"})
    assert status == 422 and bad["detail"][0]["loc"] == ["body", "label"]

    store = S3ObjectStore(stack.client("s3"), physical_name(stack.stage, "models"))
    now = datetime.now(UTC)

    def joined() -> list[CapturedRow]:
        rows = read_captured(store, "default", now - timedelta(hours=1), now + timedelta(minutes=1))
        return [r for r in rows if r.prediction_id == pid and r.label_source == "reviewer"]

    (row,) = wait_for(joined)
    assert row.label == 0 and row.model_version == 1 and row.subject_hash and SUBJECT not in row.subject_hash
    assert len(read_captured(store, "default", now - timedelta(hours=1), now + timedelta(minutes=1))) == 1

    status, receipt = call(stack, "DELETE", f"/subjects/{SUBJECT}")
    assert status == 200, receipt
    assert receipt["predictions_removed"] == 1 and receipt["feedback_removed"] == 2
    for key in store.list_keys("captured/"):
        data = store.get(key)
        text = gzip.decompress(data).decode() if key.endswith(".gz") else data.decode()
        assert pid not in text and row.subject_hash not in text
    assert read_captured(store, "default", now - timedelta(hours=1), now + timedelta(minutes=1)) == []
    assert time.perf_counter() - started < 45

"""Batch scoring in memory: output rows in the input's format, bad rows reported, chunking, file errors."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopml.batch.models import BatchJob
from loopml.batch.service import BatchScorer, Champions
from loopml.data import write_csv
from loopml.errors import InvalidInput
from loopml.training import TrainedModel
from loopml_dev import datasets
from tests.unit.library.uploads_store import BUCKET, upload, with_champion

NOW = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)


@pytest.fixture
def setup(trained: TrainedModel, tmp_path: Path) -> tuple[Any, BatchScorer]:
    bucket, registry, _ = with_champion(trained)
    scorer = BatchScorer(bucket, Champions(registry, tmp_path), chunk_rows=7, max_listed_errors=100, clock=lambda: NOW)
    return bucket, scorer


def _rows(n: int) -> list[dict[str, Any]]:
    return datasets.rows(datasets.loan_default(n, seed=12))


@pytest.mark.parametrize(
    ("key", "model", "name", "fmt", "scored"),
    [
        ("batch/input/default/jan.csv", "default", "jan", "csv", "batch/output/default/jan.scored.csv"),
        ("batch/input/jan.jsonl", "default", "jan", "jsonl", "batch/output/default/jan.scored.jsonl"),
        ("batch/input/churn/2026/jan.csv.gz", "churn", "2026/jan", "csv", "batch/output/churn/2026/jan.scored.csv"),
    ],
)
def test_key_convention(key: str, model: str, name: str, fmt: str, scored: str) -> None:
    job = BatchJob.from_key(key)
    assert (job.model, job.name, job.format, job.scored_key) == (model, name, fmt, scored)
    assert job.errors_key == scored.rsplit(".scored.", 1)[0] + ".errors.json"


def test_csv_with_bad_rows_scores_the_rest_and_lists_each_bad_field(setup: Any) -> None:
    bucket, scorer = setup
    columns = datasets.loan_default(20, seed=12)
    del columns["default"]
    columns = {"customer_id": [f"c{i}" for i in range(20)], **columns}
    columns["age"][2] = "old"
    columns["income"][9] = ""
    columns["home_ownership"][9] = "castle"  # unseen category: scored, flagged
    text = write_csv(columns).decode().splitlines()
    text.insert(6, "too,few")  # row 6 (line 7) has the wrong number of fields
    body = ("\n".join(text) + "\n").encode()
    summary = scorer.handle(upload(bucket, "batch/input/default/jan.csv", body))
    assert summary is not None
    assert (summary.rows, summary.scored, summary.rejected, summary.model_version) == (21, 19, 2, 1)
    assert summary.output == f"s3://{BUCKET}/batch/output/default/jan.scored.csv"
    report = bucket.json("batch/output/default/jan.errors.json")
    assert report["file_error"] is None
    assert [(e["row"], e["line"], e["field"], e["reason"]) for e in report["errors"]] == [
        (3, 4, "age", "expected a number"),
        (6, 7, None, "has 2 fields, the header has 14"),
    ]
    assert report["summary"]["flagged"] >= 1
    scored = list(csv.DictReader(io.StringIO(bucket.get("batch/output/default/jan.scored.csv").decode())))
    assert len(scored) == 19
    assert [r["row_number"] for r in scored][:3] == ["1", "2", "4"]
    first = scored[0]
    assert first["customer_id"] == "c0" and first["model_version"] == "1" and first["prediction"] in ("0", "1")
    assert abs(float(first["probability_0"]) + float(first["probability_1"]) - 1) < 1e-5
    assert float(first["confidence"]) == max(float(first["probability_0"]), float(first["probability_1"]))


def test_jsonl_output_keeps_the_input_fields(setup: Any) -> None:
    bucket, scorer = setup
    rows = _rows(10)
    rows[3]["credit_score"] = True
    del rows[5]["region"]
    lines = [json.dumps({"id": i, **r}) for i, r in enumerate(rows)]
    lines.insert(8, "[1, 2]")
    lines.insert(2, "")
    summary = scorer.handle(upload(bucket, "batch/input/feb.jsonl", ("\n".join(lines) + "\n").encode()))
    assert summary is not None and (summary.rows, summary.scored, summary.rejected) == (11, 8, 3)
    report = bucket.json("batch/output/default/feb.errors.json")
    assert [(e["row"], e["field"], e["reason"]) for e in report["errors"]] == [
        (4, "credit_score", "expected a number"),
        (6, "region", "field required"),
        (9, None, "not a JSON object"),
    ]
    out = [json.loads(line) for line in bucket.get("batch/output/default/feb.scored.jsonl").splitlines()]
    assert [o["id"] for o in out] == [0, 1, 2, 4, 6, 7, 8, 9]
    assert set(out[0]["probabilities"]) == {"0", "1"} and out[0]["model_version"] == 1


def test_a_redelivery_rewrites_the_same_keys(setup: Any) -> None:
    bucket, scorer = setup
    body = "\n".join(json.dumps(r) for r in _rows(5)).encode()
    up = upload(bucket, "batch/input/default/same.jsonl", body)
    scorer.handle(up)
    first = bucket.get("batch/output/default/same.scored.jsonl")
    keys = set(bucket.objects)
    scorer.handle(up)
    assert bucket.get("batch/output/default/same.scored.jsonl") == first and set(bucket.objects) == keys


def test_gzip_input(setup: Any) -> None:
    bucket, scorer = setup
    body = gzip.compress(write_csv(datasets.loan_default(9, seed=3)))
    summary = scorer.handle(upload(bucket, "batch/input/default/z.csv.gz", body))
    assert summary is not None and summary.scored == 9


@pytest.mark.parametrize(
    ("key", "body", "report_key", "needle"),
    [
        ("batch/input/default/m.csv", b"age,income\n1,2\n", "batch/output/default/m.errors.json", "lacks feature"),
        ("batch/input/nobody/m.csv", b"a\n1\n", "batch/output/nobody/m.errors.json", "no alias 'champion'"),
        ("batch/input/default/m.parquet", b"PAR1", "batch/output/default/m.parquet.errors.json", "not parquet"),
        ("batch/input/default/u.csv", b"\xff\xfe\x00bad", "batch/output/default/u.errors.json", "not UTF-8"),
    ],
)
def test_files_that_cannot_be_scored_get_a_report(
    setup: Any, key: str, body: bytes, report_key: str, needle: str
) -> None:
    bucket, scorer = setup
    summary = scorer.handle(upload(bucket, key, body))
    assert summary is not None and summary.scored == 0 and summary.output is None
    report = bucket.json(report_key)
    assert needle in report["file_error"]
    assert not [k for k in bucket.objects if ".scored." in k]


def test_error_list_is_capped_but_every_row_is_counted(trained: TrainedModel, tmp_path: Path) -> None:
    bucket, registry, _ = with_champion(trained)
    scorer = BatchScorer(bucket, Champions(registry, tmp_path), chunk_rows=50, max_listed_errors=5)
    rows = _rows(120)
    for r in rows:
        r["age"] = "x"
    summary = scorer.handle(
        upload(bucket, "batch/input/default/all-bad.jsonl", "\n".join(map(json.dumps, rows)).encode())
    )
    assert summary is not None and (summary.rejected, summary.errors_listed, summary.scored) == (120, 5, 0)


def test_bad_keys_raise_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        BatchJob.from_key("batch/input/Bad/x.csv")

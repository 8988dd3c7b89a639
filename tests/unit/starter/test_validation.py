"""Validation of uploaded training data against the champion's schema, problem by problem."""

from __future__ import annotations

import json
from typing import Any

from loopml.data import write_csv
from loopml.schema import FeatureSchema
from loopml.starter.validation import validate_upload
from loopml_dev import datasets


def _columns(n: int = 200, seed: int = 3) -> dict[str, list[Any]]:
    return datasets.loan_default(n, seed=seed)


def test_a_good_csv_and_jsonl_pass(loan_schema: FeatureSchema) -> None:
    columns = _columns()
    assert validate_upload(write_csv(columns), "a.csv", loan_schema).ok
    lines = "\n".join(json.dumps(r | {"default": d}) for r, d in zip(datasets.rows(columns), columns["default"]))
    checked = validate_upload(lines.encode(), "a.jsonl", loan_schema)
    assert checked.ok and checked.rows == 200


def test_missing_values_and_extra_columns_are_fine(loan_schema: FeatureSchema) -> None:
    columns = _columns()
    columns["age"][0] = ""
    columns["customer_id"] = list(range(200))
    assert validate_upload(write_csv(columns), "a.csv", loan_schema).ok


def test_each_bad_value_is_named_with_row_and_column(loan_schema: FeatureSchema) -> None:
    columns = _columns()
    columns["income"][4] = "lots"
    columns["default"][9] = "maybe"
    columns["default"][10] = ""
    checked = validate_upload(write_csv(columns), "a.csv", loan_schema)
    found = {(p.row, p.column, p.value, p.problem.split(" (")[0]) for p in checked.problems}
    assert (5, "income", "lots", "expected a number") in found
    assert (10, "default", "maybe", "label is not one of the champion's classes [0, 1]") in found
    assert (11, "default", None, "missing label") in found
    assert checked.total == 3 and not checked.ok


def test_missing_columns_are_named(loan_schema: FeatureSchema) -> None:
    columns = _columns()
    del columns["credit_score"], columns["default"]
    checked = validate_upload(write_csv(columns), "a.csv", loan_schema)
    assert {(p.column, p.problem) for p in checked.problems} == {
        ("default", "missing column (the champion's target)"),
        ("credit_score", "missing column (the champion's numeric feature)"),
    }


def test_too_few_rows_or_a_missing_class(loan_schema: FeatureSchema) -> None:
    checked = validate_upload(write_csv(_columns(20)), "a.csv", loan_schema)
    assert [p.problem for p in checked.problems] == ["not enough data to train: 20 labelled rows; need at least 50"]
    columns = _columns(300)
    keep = [i for i, d in enumerate(columns["default"]) if d == 0]
    one_class = {k: [v[i] for i in keep] for k, v in columns.items()}
    (problem,) = validate_upload(write_csv(one_class), "a.csv", loan_schema).problems
    assert "classes with fewer than 5 rows: {'1': 0}" in problem.problem


def test_unreadable_files_say_why(loan_schema: FeatureSchema) -> None:
    bad_shape = b"age,income\n1,2\n3\n"
    (problem,) = validate_upload(bad_shape, "a.csv", loan_schema).problems
    assert problem.problem == "a.csv: line 3 has 1 fields, header has 2"
    (problem,) = validate_upload(b'{"age": 1}\n{oops\n', "a.jsonl", loan_schema).problems
    assert "line 2 is not valid JSON" in problem.problem
    (problem,) = validate_upload(b"PAR1...", "a.parquet", loan_schema).problems
    assert "Parquet" in problem.problem


def test_the_list_is_capped_but_the_total_is_not(loan_schema: FeatureSchema) -> None:
    columns = _columns(400)
    columns["age"] = ["x"] * 400
    checked = validate_upload(write_csv(columns), "a.csv", loan_schema, limit=10)
    assert len(checked.problems) == 10 and checked.total == 400

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from loopml.errors import InsufficientData, InvalidInput
from loopml.retrain.dataset import WEIGHT, combine
from loopml.schema import FeatureSchema
from loopml_dev import datasets
from tests.unit.retrain.conftest import captured_rows

AT = datetime(2026, 11, 20, tzinfo=UTC)


def _schema(loan_schema: FeatureSchema) -> FeatureSchema:
    return loan_schema


def test_feedback_is_the_recent_holdout(loan_schema: FeatureSchema) -> None:
    base = datasets.loan_default(400, seed=1)
    feedback = captured_rows(datasets.loan_default(100, seed=2), AT)
    prepared = combine(base, list(reversed(feedback)), loan_schema, holdout_fraction=0.2)
    assert (prepared.base_rows, prepared.feedback_rows) == (400, 100)
    assert len(prepared.holdout["age"]) == 100
    # Holdout = feedback in time order, whatever order the reader gave.
    assert prepared.holdout["age"] == [float(r.features["age"]) for r in feedback]
    assert set(prepared.train) == {*loan_schema.names, loan_schema.target, WEIGHT}


def test_duplicates_and_invalid_rows_are_dropped(loan_schema: FeatureSchema) -> None:
    base: dict[str, list[Any]] = datasets.loan_default(300, seed=1)
    for name in base:
        base[name] = base[name] + base[name][:20]  # 20 exact duplicates
    base["age"][0] = "not a number"
    base[datasets.TARGET][1] = 7  # not a class
    prepared = combine(base, [], loan_schema, holdout_fraction=0.2)
    assert prepared.duplicates_removed == 18  # rows 0 and 1 were invalid, so their copies are not duplicates
    assert prepared.invalid_rows == 2
    assert len(prepared.train["age"]) + len(prepared.holdout["age"]) == 320 - 18 - 2


def test_missing_column_is_named(loan_schema: FeatureSchema) -> None:
    base = datasets.loan_default(100, seed=1)
    del base["income"]
    with pytest.raises(InvalidInput, match="income"):
        combine(base, [], loan_schema, 0.2)


def test_too_few_rows(loan_schema: FeatureSchema) -> None:
    with pytest.raises(InsufficientData, match="need at least"):
        combine(datasets.loan_default(30, seed=1), [], loan_schema, 0.2)


def test_a_recent_slice_missing_a_class_falls_back_to_a_stratified_holdout(loan_schema: FeatureSchema) -> None:
    base = datasets.loan_default(300, seed=1)
    recent = datasets.loan_default(200, seed=2)
    recent[datasets.TARGET] = [0] * 200
    prepared = combine(base, captured_rows(recent, AT), loan_schema, 0.2)
    assert prepared.holdout_method == "stratified"
    assert set(prepared.holdout[datasets.TARGET]) == {0, 1}


def test_a_file_sorted_by_its_target_gets_a_holdout_with_every_class(loan_schema: FeatureSchema) -> None:
    base = datasets.loan_default(500, seed=3)
    order = sorted(range(500), key=lambda i: base[datasets.TARGET][i])
    ordered = {name: [values[i] for i in order] for name, values in base.items()}
    prepared = combine(ordered, [], loan_schema, 0.2)
    assert prepared.holdout_method == "stratified"
    counts = {c: prepared.holdout[datasets.TARGET].count(c) for c in (0, 1)}
    assert min(counts.values()) >= 2, counts
    shares = sum(1 for v in ordered[datasets.TARGET] if v == 1) / 500
    assert abs(counts[1] / sum(counts.values()) - shares) < 0.05  # stratified: the class shares are kept


def test_data_that_truly_lacks_a_class_is_refused_naming_it(loan_schema: FeatureSchema) -> None:
    base = datasets.loan_default(300, seed=1)
    base[datasets.TARGET] = [0] * 299 + [1]
    with pytest.raises(InsufficientData, match="classes with fewer than"):
        combine(base, [], loan_schema, 0.2)


def test_reviewer_labels_go_to_the_golden_set_and_floods_are_capped() -> None:
    from loopml.retrain.dataset import LabelPolicy, select_feedback

    columns = datasets.loan_default(300, seed=4)
    flood = captured_rows(columns, AT, source="user", caller="key:fuzzer")
    reviewed = captured_rows(datasets.loan_default(20, seed=5), AT, source="reviewer")
    for i, row in enumerate(reviewed):
        row.prediction_id = f"{i + 5000:032x}"
    system = captured_rows(datasets.loan_default(30, seed=6), AT, source="system")
    for i, row in enumerate(system):
        row.prediction_id = f"{i + 9000:032x}"
    policy = LabelPolicy(weights={"user": 0.5, "system": 1.0}, per_subject=5, per_caller=100)
    chosen = select_feedback(flood + reviewed + system, policy)
    assert {r.label_source for r in chosen.golden} == {"reviewer"} and len(chosen.golden) == 20
    assert sum(1 for r in chosen.train if r.label_source == "user") == 100
    assert sum(1 for r in chosen.train if r.label_source == "system") == 30
    assert chosen.notes == ["rate limit: 200 user labels from key:fuzzer dropped (over 100 per caller)"]
    assert sorted(set(chosen.weights)) == [0.5, 1.0]
    subjects = captured_rows(datasets.loan_default(12, seed=7), AT, source="user", caller="key:app")
    for row in subjects:
        row.subject_hash = "s" * 64
    capped = select_feedback(subjects, policy)
    assert len(capped.train) == 5 and "7 user labels of 1 subjects dropped (over 5 per subject)" in capped.notes[0]

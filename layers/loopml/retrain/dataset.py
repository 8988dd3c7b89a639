"""The challenger's data: the base training data plus labelled feedback, cleaned and split by time.

Rows are checked against the champion's schema (every feature present, numbers parse, the label is a
known class); rows that fail are dropped and counted. Exact duplicates (same features and label) are
kept once, at their latest position. The base data is older than any feedback, and feedback is
ordered by prediction time, so the last ``holdout_fraction`` of the rows is the most recent slice: the
holdout both models are scored on. When that slice would miss a class (a file sorted by its target,
say), the holdout is a stratified sample instead (seeded, so a rerun gives the same rows); the method
is recorded in the lineage. Only data that truly lacks a class is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sklearn.model_selection import train_test_split

from loopml.capture import CapturedRow
from loopml.data import Columns
from loopml.errors import InsufficientData, InvalidInput
from loopml.schema import FeatureKind, FeatureSchema, encode_targets, is_missing
from loopml.training import MIN_PER_CLASS, check_trainable

MIN_HOLDOUT_PER_CLASS = 2
WEIGHT = "_loopml_weight"  # a column of the training snapshot: how much each row's label counts


HoldoutMethod = Literal["time", "stratified"]


@dataclass(frozen=True)
class PreparedData:
    train: Columns
    holdout: Columns
    base_rows: int
    feedback_rows: int
    duplicates_removed: int
    invalid_rows: int
    holdout_method: HoldoutMethod = "time"


def _class_counts(rows: Sequence[Mapping[str, Any]], schema: FeatureSchema) -> dict[str, int]:
    counts = {str(c): 0 for c in schema.classes}
    for r in rows:
        counts[str(r[schema.target])] = counts.get(str(r[schema.target]), 0) + 1
    return counts


def split_holdout(
    rows: list[dict[str, Any]], schema: FeatureSchema, fraction: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], HoldoutMethod]:
    """The most recent ``fraction`` when it holds every class (and leaves enough to train on), else a
    stratified sample of the same size. Regression: the most recent ``fraction``, always."""
    n_holdout = max(1, round(len(rows) * fraction))
    train_rows, holdout_rows = rows[:-n_holdout], rows[-n_holdout:]
    if schema.regression:
        return train_rows, holdout_rows, "time"
    recent = _class_counts(holdout_rows, schema)
    rest = _class_counts(train_rows, schema)
    if min(recent.values()) >= MIN_HOLDOUT_PER_CLASS and min(rest.values()) >= MIN_PER_CLASS:
        return train_rows, holdout_rows, "time"
    labels = [str(r[schema.target]) for r in rows]
    index = list(range(len(rows)))
    n_classes = len(schema.classes)
    size = max(n_holdout, n_classes * MIN_HOLDOUT_PER_CLASS)
    try:
        train_idx, holdout_idx = train_test_split(index, test_size=size, random_state=seed, stratify=labels)
    except ValueError:  # a class too small to appear on both sides
        return train_rows, holdout_rows, "time"  # the caller names the thin classes
    return [rows[i] for i in sorted(train_idx)], [rows[i] for i in sorted(holdout_idx)], "stratified"


def clean_row(row: Mapping[str, Any], label: Any, schema: FeatureSchema) -> dict[str, Any] | None:
    """The row with normalised values (float / str / None) and its label, or None if it is unusable."""
    if is_missing(label):
        return None
    try:
        (encoded,) = encode_targets([label], schema)
    except InvalidInput:  # a regression label that is not a finite number
        return None
    if not schema.regression and str(encoded) not in {str(c) for c in schema.classes}:
        return None
    out: dict[str, Any] = {}
    for spec in schema.features:
        if spec.name not in row:
            return None
        value = row[spec.name]
        if is_missing(value):
            out[spec.name] = None
        elif spec.kind is FeatureKind.numeric:
            if isinstance(value, bool):
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            if not math.isfinite(number):
                return None
            out[spec.name] = number
        else:
            out[spec.name] = str(value)
    out[schema.target] = encoded
    return out


@dataclass(frozen=True)
class LabelPolicy:
    """How much each label source counts, and how many labels one sender or one subject may add.

    Reviewer labels are trusted: they go to the golden set the gate scores on, not to training. User
    labels are capped per subject and per caller (API key), so a flood from one client cannot steer
    the challenger; what was dropped is reported.
    """

    weights: Mapping[str, float]
    per_subject: int
    per_caller: int


@dataclass(frozen=True)
class FeedbackSelection:
    train: list[CapturedRow]
    golden: list[CapturedRow]
    weights: list[float]
    notes: list[str]


def select_feedback(rows: Sequence[CapturedRow], policy: LabelPolicy) -> FeedbackSelection:
    ordered = sorted(rows, key=lambda r: (r.timestamp, r.prediction_id))
    golden = [r for r in ordered if r.label_source == "reviewer"]
    per_subject: dict[str, int] = {}
    per_caller: dict[str, int] = {}
    dropped_subject: dict[str, int] = {}
    dropped_caller: dict[str, int] = {}
    train_rows: list[CapturedRow] = []
    for r in ordered:
        if r.label_source == "reviewer":
            continue
        if r.label_source == "user":
            subject = r.subject_hash
            caller = r.label_caller or "unknown"
            if subject and per_subject.get(subject, 0) >= policy.per_subject:
                dropped_subject[subject] = dropped_subject.get(subject, 0) + 1
                continue
            if per_caller.get(caller, 0) >= policy.per_caller:
                dropped_caller[caller] = dropped_caller.get(caller, 0) + 1
                continue
            if subject:
                per_subject[subject] = per_subject.get(subject, 0) + 1
            per_caller[caller] = per_caller.get(caller, 0) + 1
        train_rows.append(r)
    notes = [
        f"rate limit: {n} user labels from {caller} dropped (over {policy.per_caller} per caller)"
        for caller, n in sorted(dropped_caller.items())
    ]
    if dropped_subject:
        notes.append(
            f"rate limit: {sum(dropped_subject.values())} user labels of {len(dropped_subject)} subjects dropped "
            f"(over {policy.per_subject} per subject)"
        )
    weights = [float(policy.weights.get(r.label_source or "user", 1.0)) for r in train_rows]
    return FeedbackSelection(train=train_rows, golden=golden, weights=weights, notes=notes)


def clean_columns(rows: Sequence[tuple[Mapping[str, Any], Any]], schema: FeatureSchema) -> Columns:
    """Rows that pass ``clean_row``, as columns."""
    cleaned = [r for r in (clean_row(features, label, schema) for features, label in rows) if r is not None]
    return {n: [r[n] for r in cleaned] for n in [*schema.names, schema.target]}


def combine(
    base: Mapping[str, Sequence[Any]],
    feedback: Sequence[CapturedRow],
    schema: FeatureSchema,
    holdout_fraction: float,
    weights: Mapping[str, float] | None = None,
) -> PreparedData:
    """``weights``: per feedback ``prediction_id``, how much its label counts in training (base rows: 1)."""
    """Clean, de-duplicate and split; raises ``InsufficientData`` naming what is too thin."""
    missing = [name for name in [*schema.names, schema.target] if name not in base]
    if missing:
        raise InvalidInput(f"base training data lacks the champion's columns: {missing}")
    n_base = len(base[schema.target])
    ordered = sorted(feedback, key=lambda r: (r.timestamp, r.prediction_id))
    candidates: list[tuple[Mapping[str, Any], Any, float]] = [
        ({name: base[name][i] for name in schema.names}, base[schema.target][i], 1.0) for i in range(n_base)
    ]
    candidates += [(r.features, r.label, (weights or {}).get(r.prediction_id, 1.0)) for r in ordered]
    kept: dict[str, dict[str, Any]] = {}
    invalid = duplicates = 0
    for features, label, weight in candidates:
        row = clean_row(features, label, schema)
        if row is None:
            invalid += 1
            continue
        key = json.dumps(row, sort_keys=True, default=str)
        if kept.pop(key, None) is not None:
            duplicates += 1
        row[WEIGHT] = weight
        kept[key] = row  # re-inserted at the end: a duplicate counts as its most recent occurrence
    rows = list(kept.values())
    labels = [r[schema.target] for r in rows]
    check_trainable(labels, schema.classes)
    train_rows, holdout_rows, method = split_holdout(rows, schema, holdout_fraction)
    thin = {
        str(c): n
        for c in schema.classes
        if (n := sum(1 for r in holdout_rows if str(r[schema.target]) == str(c))) < MIN_HOLDOUT_PER_CLASS
    }
    if thin:
        raise InsufficientData(
            f"the data has too few rows of classes {thin} for a holdout with {MIN_HOLDOUT_PER_CLASS} of each "
            f"({len(holdout_rows)} holdout rows): both models cannot be compared fairly"
        )
    check_trainable([r[schema.target] for r in train_rows], schema.classes)
    names = [*schema.names, schema.target]
    return PreparedData(
        train={n: [r[n] for r in train_rows] for n in [*names, WEIGHT]},
        holdout={n: [r[n] for r in holdout_rows] for n in names},
        base_rows=n_base,
        feedback_rows=len(ordered),
        duplicates_removed=duplicates,
        invalid_rows=invalid,
        holdout_method=method,
    )


__all__ = ["MIN_HOLDOUT_PER_CLASS", "MIN_PER_CLASS", "PreparedData", "clean_row", "combine"]

"""The challenger's data: the base training data plus labelled feedback, cleaned and split by time.

Rows are checked against the champion's schema (every feature present, numbers parse, the label is a
known class); rows that fail are dropped and counted. Exact duplicates (same features and label) are
kept once, at their latest position. The base data is older than any feedback, and feedback is
ordered by prediction time, so the last ``holdout_fraction`` of the rows is the most recent slice: the
holdout both models are scored on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.data import Columns
from loopml.errors import InsufficientData, InvalidInput
from loopml.feedback.reader import CapturedRow
from loopml.schema import FeatureKind, FeatureSchema, encode_labels, is_missing
from loopml.training import MIN_PER_CLASS, check_trainable

MIN_HOLDOUT_PER_CLASS = 2


@dataclass(frozen=True)
class PreparedData:
    train: Columns
    holdout: Columns
    base_rows: int
    feedback_rows: int
    duplicates_removed: int
    invalid_rows: int


def clean_row(row: Mapping[str, Any], label: Any, schema: FeatureSchema) -> dict[str, Any] | None:
    """The row with normalised values (float / str / None) and its label, or None if it is unusable."""
    if is_missing(label):
        return None
    (encoded,) = encode_labels([label])
    if str(encoded) not in {str(c) for c in schema.classes}:
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


def combine(
    base: Mapping[str, Sequence[Any]],
    feedback: Sequence[CapturedRow],
    schema: FeatureSchema,
    holdout_fraction: float,
) -> PreparedData:
    """Clean, de-duplicate and split; raises ``InsufficientData`` naming what is too thin."""
    missing = [name for name in [*schema.names, schema.target] if name not in base]
    if missing:
        raise InvalidInput(f"base training data lacks the champion's columns: {missing}")
    n_base = len(base[schema.target])
    ordered = sorted(feedback, key=lambda r: (r.timestamp, r.prediction_id))
    candidates: list[tuple[Mapping[str, Any], Any]] = [
        ({name: base[name][i] for name in schema.names}, base[schema.target][i]) for i in range(n_base)
    ]
    candidates += [(r.features, r.label) for r in ordered]
    kept: dict[str, dict[str, Any]] = {}
    invalid = duplicates = 0
    for features, label in candidates:
        row = clean_row(features, label, schema)
        if row is None:
            invalid += 1
            continue
        key = json.dumps(row, sort_keys=True, default=str)
        if kept.pop(key, None) is not None:
            duplicates += 1
        kept[key] = row  # re-inserted at the end: a duplicate counts as its most recent occurrence
    rows = list(kept.values())
    labels = [r[schema.target] for r in rows]
    check_trainable(labels, schema.classes)
    n_holdout = max(1, round(len(rows) * holdout_fraction))
    train_rows, holdout_rows = rows[:-n_holdout], rows[-n_holdout:]
    thin = {
        str(c): n
        for c in schema.classes
        if (n := sum(1 for r in holdout_rows if str(r[schema.target]) == str(c))) < MIN_HOLDOUT_PER_CLASS
    }
    if thin:
        raise InsufficientData(
            f"the recent holdout ({len(holdout_rows)} rows) has fewer than {MIN_HOLDOUT_PER_CLASS} rows "
            f"of classes {thin}: both models cannot be compared fairly"
        )
    check_trainable([r[schema.target] for r in train_rows], schema.classes)
    names = [*schema.names, schema.target]
    return PreparedData(
        train={n: [r[n] for r in train_rows] for n in names},
        holdout={n: [r[n] for r in holdout_rows] for n in names},
        base_rows=n_base,
        feedback_rows=len(ordered),
        duplicates_removed=duplicates,
        invalid_rows=invalid,
    )


__all__ = ["MIN_HOLDOUT_PER_CLASS", "MIN_PER_CLASS", "PreparedData", "clean_row", "combine"]

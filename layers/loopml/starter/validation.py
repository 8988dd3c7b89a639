"""Checks an uploaded training file against the champion's schema before anything trains on it.

A file passes when it is readable, has the target and every feature column, every numeric feature
parses as a finite number, every label is one of the champion's classes, and there are enough rows of
every class (``loopml.training.check_trainable``). Missing feature values are fine (training imputes
them); unseen categories are fine (the encoder ignores them). Every problem is named with its row and
column; the list is capped, the total is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.data import read_table
from loopml.errors import InsufficientData, InvalidInput
from loopml.schema import FeatureKind, FeatureSchema, encode_targets, is_missing
from loopml.starter.models import MAX_LISTED_PROBLEMS, Problem
from loopml.training import check_trainable


@dataclass
class Validation:
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    limit: int = MAX_LISTED_PROBLEMS

    def add(self, problem: Problem) -> None:
        self.total += 1
        if len(self.problems) < self.limit:
            self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return self.total == 0


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def validate_upload(data: bytes, name: str, schema: FeatureSchema, limit: int = MAX_LISTED_PROBLEMS) -> Validation:
    result = Validation(limit=limit)
    try:
        columns = read_table(data, name)
    except InvalidInput as exc:
        result.add(Problem(problem=str(exc)))
        return result
    return validate_columns(columns, schema, result)


def validate_columns(
    columns: Mapping[str, Sequence[Any]], schema: FeatureSchema, result: Validation | None = None
) -> Validation:
    result = result or Validation()
    result.rows = len(next(iter(columns.values()))) if columns else 0
    for name in [schema.target, *schema.names]:
        if name not in columns:
            role = "target" if name == schema.target else f"{schema.feature(name).kind.value} feature"
            result.add(Problem(problem=f"missing column (the champion's {role})", column=name))
    for spec in schema.features:
        if spec.name not in columns:
            continue
        for i, value in enumerate(columns[spec.name], start=1):
            if is_missing(value):
                continue
            reason = _feature_problem(value, spec.kind)
            if reason:
                result.add(Problem(problem=reason, row=i, column=spec.name, value=_shown(value)))
    labels: list[Any] = []
    if schema.target in columns:
        known = {str(c) for c in schema.classes}
        for i, value in enumerate(columns[schema.target], start=1):
            if is_missing(value):
                result.add(Problem(problem="missing label", row=i, column=schema.target))
                continue
            try:
                (label,) = encode_targets([value], schema)
            except InvalidInput:
                result.add(Problem(problem="label is not a number", row=i, column=schema.target, value=_shown(value)))
                continue
            if not schema.regression and str(label) not in known:
                result.add(
                    Problem(
                        problem=f"label is not one of the champion's classes {schema.classes}",
                        row=i,
                        column=schema.target,
                        value=_shown(value),
                    )
                )
                continue
            labels.append(label)
        try:
            check_trainable(labels, schema.classes)
        except InsufficientData as exc:
            result.add(Problem(problem=f"not enough data to train: {exc}", column=schema.target))
    return result


def _feature_problem(value: Any, kind: FeatureKind) -> str | None:
    if kind is FeatureKind.numeric:
        if isinstance(value, bool):
            return "expected a number, got a boolean"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return "expected a number"
        return None if math.isfinite(number) else "must be a finite number"
    if isinstance(value, dict | list):
        return "expected a text or number value"
    return None

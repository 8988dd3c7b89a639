"""Feature schema: what a model was trained on, inferred from data and enforced on every request.

The schema is stored in each model version's metadata, so serving, drift and retraining all agree on
feature names, kinds, ranges and category sets without seeing the training data.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from loopml.errors import InvalidInput

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
CATEGORY_MISSING = "__missing__"
MAX_CATEGORIES = 200
MAX_CATEGORY_LENGTH = 256  # longer request values are refused (422): nothing that long is a category
MAX_MAGNITUDE = 1e15  # larger numbers overflow the pipelines' arithmetic (scaling, exp): refused (422)


class FeatureKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"


class FeatureSpec(BaseModel):
    name: str
    kind: FeatureKind
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    categories: list[str] = Field(default_factory=list)
    sensitive: bool = False


Task = Literal["classification", "regression"]
MAX_CLASSES = 50  # a numeric target with more distinct values is not a class label (``--task`` decides)
MIN_DISTINCT_FOR_REGRESSION = 20  # an integer target with more distinct values than this is a quantity


class FeatureSchema(BaseModel):
    features: list[FeatureSpec]
    target: str
    classes: list[str | int]  # empty for regression
    task: Task = "classification"

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSchema:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.target in names:
            raise ValueError(f"target {self.target!r} cannot also be a feature")
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def indices(self, kind: FeatureKind) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind is kind]

    @property
    def sensitive_names(self) -> list[str]:
        return [f.name for f in self.features if f.sensitive]


class FeatureOverride(BaseModel):
    """One feature's entry in the user's config file; unset fields keep what was inferred."""

    kind: FeatureKind | None = None
    sensitive: bool | None = None
    categories: list[str] | None = None


class SchemaConfig(BaseModel, extra="forbid"):
    """The small config file ``loopml train --config`` reads (JSON)."""

    features: dict[str, FeatureOverride] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def finite_number(value: Any) -> float | None:
    """The value as a finite float (a number, or text that parses as one), else None; never a bool."""
    number = _as_number(value)
    return number if number is not None and math.isfinite(number) else None


def _label(value: Any) -> str | int:
    """Class labels keep integers as integers (0/1 targets) and everything else as text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def contract_changes(old: FeatureSchema, new: FeatureSchema) -> list[str]:
    """What a caller of the model would notice: features gone or added, a kind changed, another target
    or other classes. Ranges and category lists are not part of it (they move with every retraining)."""
    changes = []
    before, after = {f.name: f for f in old.features}, {f.name: f for f in new.features}
    if gone := [n for n in before if n not in after]:
        changes.append(f"features no longer taken: {gone}")
    if added := [n for n in after if n not in before]:
        changes.append(f"new required features: {added}")
    for name in (n for n in before if n in after and before[n].kind != after[n].kind):
        changes.append(f"feature {name!r} is {after[name].kind.value}, was {before[name].kind.value}")
    if old.target != new.target:
        changes.append(f"target {new.target!r}, was {old.target!r}")
    elif old.task != new.task:
        changes.append(f"task {new.task}, was {old.task}")
    elif [str(c) for c in old.classes] != [str(c) for c in new.classes]:
        changes.append(f"classes {new.classes}, were {old.classes}")
    return changes


def infer_task(values: Sequence[Any], target: str, task: Task | None = None) -> Task:
    """A continuous target (fractions, or more than 20 distinct whole numbers) is regression; text and a
    few whole numbers are class labels. ``task`` overrides, refused where it cannot hold."""
    present = [v for v in values if not is_missing(v)]
    numbers = [finite_number(v) for v in present]
    numeric = bool(present) and all(n is not None for n in numbers)
    distinct = {n for n in numbers if n is not None}
    if task == "regression":
        if not numeric:
            odd = sorted({str(v) for v, n in zip(present, numbers, strict=True) if n is None})
            raise InvalidInput(f"target column {target!r} has non-numeric values {odd[:5]}: regression needs numbers")
        return task
    if task == "classification":
        if numeric and len(distinct) > MAX_CLASSES:
            raise InvalidInput(
                f"target column {target!r} has {len(distinct)} distinct numeric values: as classification that "
                f"is {len(distinct)} classes (at most {MAX_CLASSES}); use --task regression, or bin it"
            )
        return task
    if numeric and (any(not float(n).is_integer() for n in distinct) or len(distinct) > MIN_DISTINCT_FOR_REGRESSION):
        return "regression"
    return "classification"


def infer_schema(
    columns: Mapping[str, Sequence[Any]],
    target: str,
    config: SchemaConfig | None = None,
    task: Task | None = None,
) -> FeatureSchema:
    """Infer the task, kinds, ranges and category sets; the config file overrides what inference gets wrong."""
    config = config or SchemaConfig()
    if target not in columns:
        raise InvalidInput(
            f"target column {target!r} not found; columns are {sorted(columns)}",
            [{"loc": ["target"], "msg": f"column {target!r} not in data", "type": "missing"}],
        )
    unknown = (set(config.features) | set(config.drop)) - set(columns)
    if unknown:
        raise InvalidInput(f"config names columns not in the data: {sorted(unknown)}")
    if any(is_missing(v) for v in columns[target]):
        raise InvalidInput(f"target column {target!r} has missing values")
    task = infer_task(columns[target], target, task)
    classes: list[str | int] = []
    if task == "classification":
        classes = sorted({_label(v) for v in columns[target]}, key=lambda c: (isinstance(c, str), c))
        if len(classes) < 2:
            raise InvalidInput(f"target column {target!r} has a single class {classes}; need at least two")
    elif len({float(v) for v in columns[target]}) < 2:
        raise InvalidInput(f"target column {target!r} has a single value; nothing to learn")
    features: list[FeatureSpec] = []
    for name, values in columns.items():
        if name == target or name in config.drop:
            continue
        override = config.features.get(name, FeatureOverride())
        present = [v for v in values if not is_missing(v)]
        numbers = [_as_number(v) for v in present]
        kind = override.kind or (
            FeatureKind.numeric if present and all(n is not None for n in numbers) else FeatureKind.categorical
        )
        spec = FeatureSpec(name=name, kind=kind, nullable=len(present) < len(values))
        if kind is FeatureKind.numeric:
            finite = [n for n in numbers if n is not None and math.isfinite(n)]
            if len(finite) != len(present):
                raise InvalidInput(f"column {name!r} is declared numeric but has non-numeric values")
            spec.minimum, spec.maximum = (min(finite), max(finite)) if finite else (None, None)
        else:
            cats = override.categories or sorted({str(v) for v in present})
            if len(cats) > MAX_CATEGORIES:
                raise InvalidInput(
                    f"column {name!r} has {len(cats)} distinct values (over {MAX_CATEGORIES}); "
                    "it looks like an identifier: list it under 'drop' in the config file"
                )
            spec.categories = cats
        spec.sensitive = bool(override.sensitive)
        features.append(spec)
    if not features:
        raise InvalidInput("no feature columns left besides the target")
    return FeatureSchema(features=features, target=target, classes=classes, task=task)


def encode_labels(values: Iterable[Any]) -> list[str | int]:
    return [_label(v) for v in values]


def encode_targets(values: Iterable[Any], schema: FeatureSchema) -> list[Any]:
    """Class labels (``encode_labels``) or, for regression, floats; a value that is neither is refused."""
    if not schema.regression:
        return encode_labels(values)
    out = []
    for value in values:
        number = finite_number(value)
        if number is None:
            raise InvalidInput(f"target {schema.target!r}: {str(value)[:40]!r} is not a finite number")
        out.append(number)
    return out


def to_matrix(columns: Mapping[str, Sequence[Any]], schema: FeatureSchema) -> np.ndarray:
    """Columns of raw training values to the object matrix the pipeline takes (schema order)."""
    n = len(next(iter(columns.values()))) if columns else 0
    out = np.empty((n, len(schema.features)), dtype=object)
    for j, spec in enumerate(schema.features):
        values = columns[spec.name]
        if spec.kind is FeatureKind.numeric:
            out[:, j] = [math.nan if is_missing(v) else float(v) for v in values]
        else:
            out[:, j] = [CATEGORY_MISSING if is_missing(v) else str(v) for v in values]
    return out


class RowFlags:
    """What was unusual about one input row; a plain class because one is built per request row."""

    __slots__ = ("missing", "out_of_range", "unseen_category")
    NONE: RowFlags  # shared by every row with nothing to flag: never appended to after validation

    def __init__(self) -> None:
        self.out_of_range: list[str] = []
        self.unseen_category: list[str] = []
        self.missing: list[str] = []


RowFlags.NONE = RowFlags()


_NONE = type(None)
_NUMBER_TYPES = frozenset({float, int, _NONE})  # exact types: a bool is not a number here
_TEXT_TYPES = frozenset({str, _NONE})
_DICT = frozenset({dict})


def _cutter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in schema order, as a tuple, by one C call (``itemgetter`` of one name returns a bare value)."""
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return operator.itemgetter(*names)


class RequestValidator:
    """Checks request rows against a schema; precomputes lookups so a row costs a few microseconds."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self._names = schema.names
        self._known = frozenset(self._names)
        self._specs = [(j, f, frozenset(f.categories)) for j, f in enumerate(schema.features)]
        self._cut = _cutter(self._names)
        numeric = [(j, f) for j, f in enumerate(schema.features) if f.kind is FeatureKind.numeric]
        self._numeric = [j for j, _ in numeric]
        self._numeric_position = {j: k for k, j in enumerate(self._numeric)}
        self._numeric_names = [f.name for _, f in numeric]
        self._minimums = np.array([-math.inf if f.minimum is None else f.minimum for _, f in numeric])
        self._maximums = np.array([math.inf if f.maximum is None else f.maximum for _, f in numeric])

    def validate(
        self,
        rows: Sequence[Any],
        loc_prefix: Sequence[str | int] = ("body", "instances"),
        index_rows: bool = True,
    ) -> tuple[np.ndarray, list[RowFlags]]:
        """Return the model matrix and per-row flags, or raise InvalidInput naming every bad field."""
        fast = self._valid_columns(rows)
        return fast if fast is not None else self.row_by_row(rows, loc_prefix, index_rows)

    def row_by_row(
        self,
        rows: Sequence[Any],
        loc_prefix: Sequence[str | int] = ("body", "instances"),
        index_rows: bool = True,
    ) -> tuple[np.ndarray, list[RowFlags]]:
        """What ``validate`` does when a column-at-a-time pass finds something wrong: every bad field named."""
        errors: list[dict[str, Any]] = []
        matrix = np.empty((len(rows), len(self._specs)), dtype=object)
        flags: list[RowFlags] = []
        for i, row in enumerate(rows):
            loc = [*loc_prefix, i] if index_rows else list(loc_prefix)
            if not isinstance(row, dict):
                errors.append({"loc": loc, "msg": "expected an object of feature values", "type": "type_error"})
                flags.append(RowFlags())
                continue
            row_flags = RowFlags()
            for name in row.keys() - self._known:
                errors.append({"loc": [*loc, name], "msg": "unknown feature", "type": "extra_forbidden"})
            for j, spec, cats in self._specs:
                if spec.name not in row:
                    errors.append({"loc": [*loc, spec.name], "msg": "field required", "type": "missing"})
                    continue
                value = row[spec.name]
                if value is None:
                    if not spec.nullable:
                        errors.append({"loc": [*loc, spec.name], "msg": "must not be null", "type": "null"})
                        continue
                    row_flags.missing.append(spec.name)
                    matrix[i, j] = math.nan if spec.kind is FeatureKind.numeric else CATEGORY_MISSING
                elif spec.kind is FeatureKind.numeric:
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        errors.append({"loc": [*loc, spec.name], "msg": "expected a number", "type": "float_type"})
                        continue
                    # One chained comparison on the hot path: false for NaN, infinities and anything past the
                    # hard limit (a huge int is compared as an int, before float() could overflow on it).
                    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
                        finite = isinstance(value, int) or math.isfinite(value)
                        errors.append(
                            {
                                "loc": [*loc, spec.name],
                                "msg": f"must be between {-MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g}"
                                if finite
                                else "must be a finite number",
                                "type": "number_range" if finite else "finite_number",
                            }
                        )
                        continue
                    number = float(value)
                    if (spec.minimum is not None and number < spec.minimum) or (
                        spec.maximum is not None and number > spec.maximum
                    ):
                        row_flags.out_of_range.append(spec.name)
                    matrix[i, j] = number
                else:
                    if not isinstance(value, str):
                        errors.append({"loc": [*loc, spec.name], "msg": "expected a string", "type": "string_type"})
                        continue
                    if value not in cats and len(value) > MAX_CATEGORY_LENGTH:
                        errors.append(
                            {
                                "loc": [*loc, spec.name],
                                "msg": f"at most {MAX_CATEGORY_LENGTH} characters",
                                "type": "string_too_long",
                            }
                        )
                        continue
                    if value not in cats:
                        row_flags.unseen_category.append(spec.name)
                    matrix[i, j] = value
            flags.append(row_flags)
        if errors:
            raise InvalidInput(f"{len(errors)} invalid field(s)", errors)
        return matrix, flags

    def _valid_columns(self, rows: Sequence[Any]) -> tuple[np.ndarray, list[RowFlags]] | None:
        """The same matrix and flags as the row-by-row checks, a column at a time, for input with nothing
        wrong in it; None as soon as anything is (then the row-by-row checks name every bad field).

        Built for the common case of a valid batch: columns are cut out and type-checked by C loops
        (``itemgetter``, ``zip``, ``map(type, ...)``) and every numeric column is converted and
        range-checked in one numpy pass."""
        # objects with as many keys as the schema has, every one of them found: exactly the schema's keys
        if set(map(type, rows)) - _DICT or set(map(len, rows)) - {len(self._names)}:
            return None
        n = len(rows)
        try:
            columns = list(zip(*map(self._cut, rows), strict=True)) if n else [() for _ in self._specs]
        except KeyError:
            return None
        matrix = np.empty((n, len(self._specs)), dtype=object)
        missing: list[tuple[int, list[int]]] = []  # (feature, rows), in schema order
        unseen: list[tuple[str, list[int]]] = []
        for j, spec, cats in self._specs:
            column = columns[j]
            types = set(map(type, column))
            if not types <= (_NUMBER_TYPES if spec.kind is FeatureKind.numeric else _TEXT_TYPES):
                return None
            gaps = [i for i, v in enumerate(column) if v is None] if _NONE in types else []
            if gaps:
                if not spec.nullable:
                    return None
                missing.append((j, gaps))
            if spec.kind is FeatureKind.categorical:
                values = list(column)
                for i in gaps:
                    values[i] = CATEGORY_MISSING
                if not cats.issuperset(values):
                    new = [i for i, v in enumerate(column) if v is not None and v not in cats]
                    if any(len(column[i]) > MAX_CATEGORY_LENGTH for i in new):
                        return None
                    unseen.append((spec.name, new))
                matrix[:, j] = values
        marked: dict[int, RowFlags] = {}  # only rows with something to flag get their own
        if self._numeric:
            try:  # None reads as NaN; an int past float's range does not read
                block = np.array([columns[j] for j in self._numeric], dtype=np.float64).T
            except OverflowError:
                return None
            finite = np.abs(block) <= MAX_MAGNITUDE  # false for NaN and infinities too
            position = self._numeric_position
            for j, gaps in missing:
                if j in position:
                    finite[gaps, position[j]] = True
            if not finite.all():
                return None
            outside = (block < self._minimums) | (block > self._maximums)  # NaN compares false
            if outside.any():
                names = self._numeric_names
                for i, k in zip(*np.nonzero(outside), strict=True):  # by row, then schema order
                    marked.setdefault(int(i), RowFlags()).out_of_range.append(names[k])
            matrix[:, self._numeric] = block
        for name, rows_unseen in unseen:
            for i in rows_unseen:
                marked.setdefault(i, RowFlags()).unseen_category.append(name)
        for j, gaps in missing:
            name = self._names[j]
            for i in gaps:
                marked.setdefault(i, RowFlags()).missing.append(name)
        return matrix, [marked.get(i) or RowFlags.NONE for i in range(n)]

"""Streaming batch scoring: rows are read, validated and scored ``chunk_rows`` at a time, so memory
stays bounded by one chunk (plus the error list) whatever the file's size. Pure computation: streams
in, byte chunks out.

Values are read as the schema wants them: numeric features parse from text (CSV) or JSON numbers,
categorical ones become text, empty / ``NA`` / ``null`` are missing. Columns that are not features
(ids, the target) pass through to the output untouched. A bad row is never dropped silently: each bad
field becomes a ``RowError`` and the row is counted as rejected; the rest of its chunk is scored.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from loopml.batch.models import BatchSummary, Format, RowError
from loopml.errors import InvalidInput
from loopml.inference.predictor import Prediction, Predictor
from loopml.schema import FeatureKind, FeatureSchema, is_missing

OUTPUT_FIELDS = ("row_number", "model_version", "prediction", "confidence")
REGRESSION_FIELDS = ("row_number", "model_version", "prediction", "lower", "upper")  # the prediction interval


@dataclass
class InputRow:
    row: int
    line: int
    values: dict[str, Any] | None  # None: unreadable, ``error`` says why
    error: str | None = None


def read_rows(text: IO[str], fmt: Format, schema: FeatureSchema) -> tuple[list[str], Iterator[InputRow]]:
    """The input's column names (known up front for CSV, from the first object for JSON Lines) and rows.

    Raises InvalidInput for file-level problems: no header, feature columns missing from the header.
    """
    if fmt == "csv":
        reader = csv.reader(text)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise InvalidInput("empty file or missing header row")
        header = [h.strip() for h in header]
        missing = [n for n in schema.names if n not in header]
        if missing:
            raise InvalidInput(f"the header lacks feature columns {missing}; it has {header}")
        return header, _csv_rows(reader, header)
    return [], _jsonl_rows(text)


def _csv_rows(reader: Any, header: list[str]) -> Iterator[InputRow]:
    number = 0
    for record in reader:
        if not record:
            continue
        number += 1
        if len(record) != len(header):
            yield InputRow(number, reader.line_num, None, f"has {len(record)} fields, the header has {len(header)}")
            continue
        yield InputRow(number, reader.line_num, dict(zip(header, record, strict=True)))


def _jsonl_rows(text: IO[str]) -> Iterator[InputRow]:
    number = 0
    for line_number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield InputRow(number, line_number, None, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(value, dict):
            yield InputRow(number, line_number, None, "not a JSON object")
            continue
        yield InputRow(number, line_number, value)


def coerce(values: dict[str, Any], schema: FeatureSchema) -> dict[str, Any]:
    """The features of one input row, typed as the model's validator expects them."""
    out: dict[str, Any] = {}
    for spec in schema.features:
        if spec.name not in values:
            continue  # reported by the validator as "field required"
        value = values[spec.name]
        if is_missing(value):
            out[spec.name] = None
        elif spec.kind is FeatureKind.numeric:
            out[spec.name] = _number(value) if isinstance(value, str) else value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[spec.name] = str(value)
        else:
            out[spec.name] = value
    return out


def _number(text: str) -> float | str:
    """Text that parses as a number becomes one; anything else stays text for the validator to name."""
    try:
        return float(text)
    except ValueError:
        return text


@dataclass
class ChunkResult:
    rows: list[tuple[InputRow, Prediction]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0


def score_chunk(predictor: Predictor, chunk: list[InputRow]) -> ChunkResult:
    """Validate and score one chunk; bad rows become errors, the good ones are still scored."""
    result = ChunkResult()
    readable: list[InputRow] = []
    for item in chunk:
        if item.values is None:
            result.errors.append(RowError(row=item.row, line=item.line, reason=item.error or "unreadable"))
            result.rejected += 1
        else:
            readable.append(item)
    features = [coerce(item.values or {}, predictor.metadata.feature_schema) for item in readable]
    try:
        matrix, flags = predictor.validator.validate(features, (), True)
    except InvalidInput as exc:
        bad: dict[int, list[dict[str, Any]]] = {}
        for error in exc.errors:
            bad.setdefault(int(error["loc"][0]), []).append(error)
        for index in sorted(bad):
            item = readable[index]
            result.rejected += 1
            for error in bad[index]:
                loc = error["loc"]
                result.errors.append(
                    RowError(
                        row=item.row, line=item.line, field=str(loc[1]) if len(loc) > 1 else None, reason=error["msg"]
                    )
                )
        readable = [item for i, item in enumerate(readable) if i not in bad]
        features = [f for i, f in enumerate(features) if i not in bad]
        if not readable:
            result.errors.sort(key=lambda e: e.row)
            return result
        matrix, flags = predictor.validator.validate(features, (), True)
    if readable:
        predictions = predictor.predict_matrix(matrix, flags)
        result.rows = list(zip(readable, predictions, strict=True))
    result.errors.sort(key=lambda e: e.row)
    return result


class OutputWriter:
    """Scored rows in the input's format, as byte chunks."""

    def __init__(self, fmt: Format, header: list[str], classes: list[str], model_version: int) -> None:
        """``classes`` empty: a regression model, whose rows carry a value and its interval."""
        self.fmt = fmt
        self.classes = classes
        self.model_version = model_version
        fields = OUTPUT_FIELDS if classes else REGRESSION_FIELDS
        self.header = [h for h in header if h not in fields]
        self.columns = [*self.header, *fields, *(f"probability_{c}" for c in classes)]
        self._header_written = False

    def _scores(self, p: Prediction) -> list[Any]:
        if p.interval is not None:
            return [_round(float(p.label)), _round(p.interval[0]), _round(p.interval[1])]
        return [p.label, _round(p.confidence), *(_round(p.probabilities[c]) for c in self.classes)]

    def encode(self, rows: Iterable[tuple[InputRow, Prediction]]) -> bytes:
        out = io.StringIO()
        if self.fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            if not self._header_written:
                writer.writerow(self.columns)
                self._header_written = True
            for item, p in rows:
                values = item.values or {}
                writer.writerow(
                    [
                        *("" if values.get(h) is None else values.get(h) for h in self.header),
                        item.row,
                        self.model_version,
                        *self._scores(p),
                    ]
                )
        else:
            for item, p in rows:
                record: dict[str, Any] = {
                    **(item.values or {}),
                    "row_number": item.row,
                    "model_version": self.model_version,
                }
                if p.interval is not None:
                    record.update(zip(REGRESSION_FIELDS[2:], self._scores(p), strict=True))
                else:
                    record["prediction"] = p.label
                    record["confidence"] = _round(p.confidence)
                    record["probabilities"] = {c: _round(v) for c, v in p.probabilities.items()}
                out.write(json.dumps(record, default=str) + "\n")
        return out.getvalue().encode()

    def finish(self) -> bytes:
        """A CSV with no scored row still gets its header."""
        if self.fmt == "csv" and not self._header_written:
            return self.encode([])
        return b""


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else value


def chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    chunk: list[InputRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tally(summary: BatchSummary, result: ChunkResult, listed: list[RowError], max_listed: int) -> None:
    summary.rows += len(result.rows) + result.rejected
    summary.scored += len(result.rows)
    summary.rejected += result.rejected
    summary.flagged += sum(1 for _, p in result.rows if p.flags.out_of_range or p.flags.unseen_category)
    room = max(0, max_listed - len(listed))
    listed.extend(result.errors[:room])
    summary.errors_listed = len(listed)

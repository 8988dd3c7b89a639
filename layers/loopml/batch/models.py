"""Shapes of the batch function: settings, the key convention, the error report and its summary.

Key convention: ``batch/input/<model>/<name>.<ext>`` (``<name>`` may contain ``/``), or
``batch/input/<name>.<ext>`` for the model ``default``; ``<ext>`` is ``csv``, ``jsonl`` (``ndjson``,
``json``), optionally ``.gz``. Outputs, rewritten whole on every delivery (idempotent):

- ``batch/output/<model>/<name>.scored.<csv|jsonl>``: the scored rows in the input's format: the input's
  columns, then ``row_number``, ``model_version``, ``prediction``, ``confidence`` and the probabilities
  (JSON Lines: a ``probabilities`` object; CSV: one ``probability_<class>`` column per class);
- ``batch/output/<model>/<name>.errors.json``: ``summary`` (rows, scored, rejected, model_version...),
  ``errors`` (one entry per bad field: row, line, field, reason) and ``file_error`` when nothing could
  be scored (unknown model, missing columns, unsupported type).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import Literal, cast

from pydantic import BaseModel, Field

from loopml import keys
from loopml.data import detect_format
from loopml.errors import InvalidInput
from loopml.names import validate_model_name
from loopml.settings import FunctionSettings

DEFAULT_MODEL = "default"
Format = Literal["csv", "jsonl"]


class BatchSettings(FunctionSettings, frozen=True):
    model_bucket: str
    chunk_rows: int = Field(5000, ge=1, le=100_000)  # rows validated and scored at a time
    max_listed_errors: int = Field(10_000, ge=0)  # the summary counts every bad row regardless
    cache_dir: str = Field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "loopml-cache"))


class BatchJob(BaseModel, frozen=True):
    """Where one input file's outputs go."""

    input_key: str
    model: str
    name: str  # the input's path below the model, without its format extension
    format: Format
    gzipped: bool

    @classmethod
    def from_key(cls, key: str) -> BatchJob:
        """Raises InvalidInput (naming the convention) for keys that do not follow it."""
        model, rest = split_key(key)
        validate_model_name(model)
        fmt = detect_format(rest)
        if fmt not in ("csv", "jsonl"):
            raise InvalidInput(f"{rest}: batch scoring reads .csv and .jsonl files (optionally .gz), not {fmt}")
        gzipped = rest.lower().endswith(".gz")
        stem = (rest[:-3] if gzipped else rest).rsplit(".", 1)[0]
        return cls(input_key=key, model=model, name=stem, format=cast(Format, fmt), gzipped=gzipped)

    @property
    def scored_key(self) -> str:
        return keys.batch_output_key(self.model, f"{self.name}.scored.{self.format}")

    @property
    def errors_key(self) -> str:
        return keys.batch_output_key(self.model, f"{self.name}.errors.json")


def split_key(key: str) -> tuple[str, str]:
    """``batch/input/<model>/<rest>`` -> (model, rest); ``batch/input/<rest>`` -> (``default``, rest)."""
    if not key.startswith(keys.BATCH_INPUT) or key == keys.BATCH_INPUT:
        raise InvalidInput(f"{key}: not under {keys.BATCH_INPUT}")
    relative = key[len(keys.BATCH_INPUT) :]
    model, _, rest = relative.partition("/")
    return (model, rest) if rest else (DEFAULT_MODEL, relative)


def rejected_key(key: str) -> str:
    """Where the report on an input that cannot be scored at all goes (never under the input prefix)."""
    try:
        model, rest = split_key(key)
    except InvalidInput:
        model, rest = DEFAULT_MODEL, key.rsplit("/", 1)[-1]
    return keys.batch_output_key(model, f"{rest}.errors.json")


class RowError(BaseModel):
    row: int  # 1-based data row (CSV: header excluded; blank lines are not rows)
    line: int  # physical line where the row ends
    field: str | None = None
    reason: str


class BatchSummary(BaseModel):
    model: str
    model_version: int | None = None
    input: str
    output: str | None = None
    format: Format | None = None
    rows: int = 0
    scored: int = 0
    rejected: int = 0  # rows not scored, each listed in ``errors`` (up to max_listed_errors entries)
    flagged: int = 0  # scored rows with an out-of-range value or an unseen category
    errors_listed: int = 0
    started_at: datetime
    finished_at: datetime | None = None


class BatchReport(BaseModel):
    summary: BatchSummary
    file_error: str | None = None
    errors: list[RowError] = Field(default_factory=list)

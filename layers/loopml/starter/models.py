"""Shapes of the starter function: settings, where uploads live, and the reports written next to them.

Key convention: ``incoming/<model>/<file>`` with ``<file>`` a ``.csv``, ``.jsonl`` (``.ndjson``,
``.json``) or ``.parquet`` file, optionally gzipped (``.csv.gz``). Each processed upload gets one report
next to it: ``<file>.rejected.json`` (validation failed; never trained on), ``<file>.started.json``
(the retraining's execution) or ``<file>.refused.json`` (a retraining of the model was already running
or started in this window). The starter ignores the reports when their own notifications arrive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from loopml.settings import FunctionSettings

REPORT_SUFFIXES = (".rejected.json", ".started.json", ".refused.json")
MAX_LISTED_PROBLEMS = 200


class StarterSettings(FunctionSettings, frozen=True):
    model_bucket: str
    retrain_state_machine_arn: str
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1)  # read whole: training data is held in memory
    window_minutes: int = Field(15, ge=1, le=1440)  # one retraining per model per window
    max_starts_per_day: int = Field(24, ge=1, le=100)  # uploads and the schedule (loopml.retrain.trigger)


class Problem(BaseModel):
    """One thing wrong with an upload: ``row`` is the 1-based data row (header excluded)."""

    problem: str
    row: int | None = None
    column: str | None = None
    value: str | None = None


class UploadReport(BaseModel):
    status: Literal["rejected", "started", "refused"]
    model: str | None
    file: str
    sha256: str | None = None
    checked_at: datetime
    champion_version: int | None = None
    rows: int | None = None
    problems_total: int = 0
    problems: list[Problem] = Field(default_factory=list)
    execution_name: str | None = None
    execution_arn: str | None = None
    reason: str | None = None

    @property
    def key_suffix(self) -> str:
        return f".{self.status}.json"


class UploadOutcome(BaseModel):
    """What happened to one upload (logged, and returned in tests)."""

    action: Literal["ignored", "rejected", "started", "refused", "duplicate"]
    key: str
    report_key: str | None = None
    detail: str = ""

"""Where drift reports live, and the history trends are drawn from.

Layout (bucket ``models``), beside the registry's versions but outside ``models/<model>/v*`` so that
listing versions never pages through hourly reports::

    models/<model>/drift/config.json                       optional per-model monitoring config (JSON)
    models/<model>/drift/latest.json                       summary of the latest run, any version
    models/<model>/drift/v<N>/reports/<run_id>.json        full report (DriftRunReport)
    models/<model>/drift/v<N>/reports/<run_id>.html        self-contained HTML report
    models/<model>/drift/v<N>/history/<run_id>.json        compact point: summary + drift without histograms

``run_id`` is ``YYYYMMDDTHHMMSSffffffZ-<hex>``: keys sort by time. Reports and history points are written
once (conditional writes); only ``latest.json`` is overwritten, and never by an older run.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from loopml import keys
from loopml.drift.models import DriftRunReport, HistoryPoint, RunSummary
from loopml.errors import InvalidInput, NotFound
from loopml.store import ObjectStore


def compact(report: DriftRunReport) -> HistoryPoint:
    features = [f.model_copy(update={"histogram": None}) for f in report.data_drift.features]
    return HistoryPoint(summary=report.summary, data_drift=report.data_drift.model_copy(update={"features": features}))


class ReportStore:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def save(self, report: DriftRunReport, html: str) -> None:
        s = report.summary
        self._store.put(s.report_key, report.model_dump_json().encode(), if_none_match=True)
        self._store.put(s.html_key, html.encode(), if_none_match=True, content_type="text/html; charset=utf-8")
        point = compact(report).model_dump_json().encode()
        self._store.put(
            f"{keys.drift_history_prefix(s.model, s.model_version)}{s.run_id}.json", point, if_none_match=True
        )
        try:
            current: RunSummary | None = self.latest(s.model)
        except (NotFound, ValidationError):  # none yet, or written by an older format: replace it
            current = None
        if current is None or current.evaluated_at <= s.evaluated_at:
            self._store.put(
                keys.drift_latest_key(s.model), s.model_dump_json().encode(), content_type="application/json"
            )

    def history(self, model: str, version: int, limit: int) -> list[HistoryPoint]:
        """The last ``limit`` runs of one version, oldest first."""
        if limit <= 0:
            return []
        found = sorted(self._store.list_keys(keys.drift_history_prefix(model, version)))[-limit:]
        points = []
        for key in found:
            try:
                points.append(HistoryPoint.model_validate_json(self._store.get(key)))
            except (NotFound, ValidationError):
                continue  # a point from an older report format is left out of the chart, not fatal
        return points

    def latest(self, model: str, version: int | None = None) -> RunSummary:
        if version is None:
            try:
                return RunSummary.model_validate_json(self._store.get(keys.drift_latest_key(model)))
            except NotFound:
                raise NotFound(f"no drift evaluation of model {model!r} yet") from None
        points = self.history(model, version, 1)
        if not points:
            raise NotFound(f"no drift evaluation of model {model!r} v{version} yet")
        return points[-1].summary

    def stored_config(self, model: str) -> dict[str, Any]:
        """The model's monitoring config overrides, ``{}`` when there is none."""
        key = keys.drift_config_key(model)
        try:
            raw = self._store.get(key)
        except NotFound:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise InvalidInput(
                f"{key} is not valid JSON", [{"loc": [key], "msg": "invalid JSON", "type": "json_invalid"}]
            ) from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{key} must hold a JSON object", [{"loc": [key], "msg": "not an object"}])
        return data

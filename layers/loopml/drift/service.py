"""One drift evaluation, end to end: resolve the version, read the window, evaluate, decide on
retraining, store the reports and history, publish the scores."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from loopml import keys
from loopml.capture import CapturedRow
from loopml.drift import evaluation
from loopml.drift.models import (
    DriftRunReport,
    DriftSettings,
    EvaluateRequest,
    MonitoringConfig,
    RunSummary,
    TriggerPolicy,
    check_window,
    layered_config,
)
from loopml.drift.page import render_page
from loopml.drift.reports import ReportStore
from loopml.errors import InvalidInput, ModelNotFound
from loopml.registry import ModelMetadata
from loopml.retrain.trigger import RetrainTrigger, TriggerAction, TriggerDecision

RowReader = Callable[[str, datetime, datetime, int], Sequence[CapturedRow]]
"""(model, start, end, model_version) -> captured rows of that version in [start, end)."""


class VersionCatalog(Protocol):
    def resolve(self, model: str, ref: str | int) -> int: ...

    def metadata(self, model: str, version: int) -> ModelMetadata: ...


class Log(Protocol):
    def info(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"  # sorts by time, to the microsecond


class DriftMonitor:
    def __init__(
        self,
        settings: DriftSettings,
        registry: VersionCatalog,
        read_rows: RowReader,
        reports: ReportStore,
        trigger: RetrainTrigger,
        publish: Callable[[DriftRunReport], None],
        log: Log,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._read_rows = read_rows
        self._reports = reports
        self._trigger = trigger
        self._publish = publish
        self._log = log
        self._clock = clock

    def config(self, request: EvaluateRequest) -> MonitoringConfig:
        stored = self._reports.stored_config(request.model)
        try:
            MonitoringConfig.model_validate(stored)
        except ValidationError as exc:
            where = keys.drift_config_key(request.model)
            errors = [{"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            raise InvalidInput(f"the stored monitoring config {where} is invalid", errors) from None
        return layered_config(self._settings, stored, request.config_overrides())

    def evaluate(self, request: EvaluateRequest) -> DriftRunReport:
        now = self._clock()
        model = request.model
        version = request.model_version or self._registry.resolve(model, self._settings.model_version)
        meta = self._registry.metadata(model, version)
        config = self.config(request)
        end = request.end or now
        start = request.start or end - timedelta(hours=config.window_hours)
        if request.start is not None and request.end is None and start >= end:
            raise InvalidInput(
                "start must be in the past", [{"loc": ["start"], "msg": "must be before now", "type": "value_error"}]
            )
        try:
            check_window(start, end)
        except ValueError as exc:
            raise InvalidInput(str(exc), [{"loc": ["body", "start"], "msg": str(exc), "type": "value_error"}]) from None
        run_id = new_run_id(now)
        rows = self._read_rows(model, start, end, version)
        result = evaluation.evaluate_window(meta, rows, config, evaluated_at=now.isoformat())
        found = evaluation.alerts(result)
        reasons = evaluation.trigger_reasons(found, config.trigger)
        decision = self._decide(model, run_id, reasons, config.trigger, evaluation.insufficient(result), now)
        dd = result.data_drift
        summary = RunSummary(
            run_id=run_id,
            model=model,
            model_version=version,
            evaluated_at=now,
            window_start=start,
            window_end=end,
            n_rows=result.n_rows,
            n_labelled=result.n_labelled,
            data_drift=dd.verdict,
            share_drifted=dd.share_drifted,
            drift_share=dd.drift_share,
            n_evaluated=dd.n_evaluated,
            n_drifted=dd.n_drifted,
            drifted_features=[f.name for f in dd.features if f.drifted],
            feature_scores=evaluation.feature_scores(dd),
            prediction_drift=result.prediction_drift.verdict if result.prediction_drift else None,
            label_drift=result.label_drift.verdict if result.label_drift else None,
            performance=result.performance.verdict,
            live_metrics=evaluation.live_metrics(result.performance),
            regressed_metrics=[m.name for m in result.performance.metrics if m.regressed],
            quality_flagged=result.quality.flagged,
            bias_flagged=result.bias_flagged,
            alerts=[alert for kind in found.values() for alert in kind],
            trigger=decision,
            report_key=keys.drift_report_key(model, version, run_id),
            html_key=keys.drift_report_key(model, version, run_id, "html"),
        )
        report = DriftRunReport(
            summary=summary,
            config=config,
            data_drift=dd,
            prediction_drift=result.prediction_drift,
            label_drift=result.label_drift,
            performance=result.performance,
            quality=result.quality,
            bias=result.bias,
            bias_labelled=result.bias_labelled,
            regression_bias=result.regression_bias,
            notes=result.notes,
        )
        history = self._reports.history(model, version, config.history_points)
        self._reports.save(report, render_page(report, evaluation.reference_profile(meta), history))
        self._publish(report)
        self._log.info(
            "drift evaluated",
            extra={
                "model": model,
                "model_version": version,
                "run_id": run_id,
                "rows": result.n_rows,
                "labelled": result.n_labelled,
                "data_drift": dd.verdict.value,
                "share_drifted": dd.share_drifted,
                "performance": result.performance.verdict.value,
                "alerts": summary.alerts,
                "report": summary.report_key,
            },
        )
        log = self._log.warning if decision.action.value in ("skipped", "failed") else self._log.info
        log(
            "retraining decision",
            extra={"model": model, "run_id": run_id, "decision": decision.model_dump(mode="json")},
        )
        return report

    def scheduled(self, model: str) -> dict[str, Any]:
        """The hourly run: a model with nothing registered yet is a skipped run, not a failure."""
        try:
            return self.evaluate(EvaluateRequest(model=model)).summary.model_dump(mode="json")
        except ModelNotFound as exc:
            self._log.warning("drift evaluation skipped", extra={"model": model, "reason": str(exc)})
            return {"model": model, "skipped": str(exc)}

    def latest(self, model: str, version: int | None = None) -> RunSummary:
        return self._reports.latest(model, version)

    def _decide(
        self, model: str, run_id: str, reasons: list[str], policy: TriggerPolicy, insufficient: bool, now: datetime
    ) -> TriggerDecision:
        """Whether drift calls for a retraining; the start itself is the shared policy's."""
        if not reasons:
            code: Any = "insufficient_data" if insufficient else "no_alert"
            message = "too few rows and labels to judge" if insufficient else "nothing crossed a retraining threshold"
            return TriggerDecision(action=TriggerAction.not_needed, code=code, message=message, decided_at=now)
        if not policy.enabled:
            return TriggerDecision(
                action=TriggerAction.skipped,
                code="disabled",
                message="retraining on drift is disabled by the config",
                reasons=reasons,
                decided_at=now,
            )
        payload = {"reason": drift_reason(reasons), **policy.retrain.model_dump(exclude_none=True)}
        return self._trigger.start(model, run_id, "drift", reasons, policy, payload)  # a TriggerPolicy is a StartPolicy


def drift_reason(reasons: list[str]) -> str:
    return "drift: " + "; ".join(r.removeprefix("drift: ") for r in reasons)

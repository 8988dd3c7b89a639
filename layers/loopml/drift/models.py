"""Shapes of the drift function: settings, the evaluation request, the monitoring config, the reports.

Configuration is layered, each layer overriding only the fields it sets: the function's settings
(window, trigger guards), then the model's stored config (``models/<model>/drift/config.json``), then
the request's ``config``. Typos are rejected (``extra="forbid"``) with the path of the bad field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from loopml.errors import parse_object
from loopml.names import ModelName
from loopml.retrain.trigger import StartPolicy, TriggerDecision
from loopml.settings import FunctionSettings
from loopml.statistics.bias import BiasReport, RegressionBiasReport
from loopml.statistics.engine import DataDriftReport, DriftConfig, DriftVerdict, FeatureDrift, PredictionDriftReport
from loopml.statistics.performance import PerformanceConfig, PerformanceReport, PerformanceVerdict
from loopml.statistics.quality import DataQualityReport, QualityConfig
from loopml.times import utc

MAX_WINDOW_HOURS = 31 * 24
EARLIEST_WINDOW = datetime(2000, 1, 1, tzinfo=UTC)


def check_window(start: datetime, end: datetime) -> None:
    """An explicit window is bounded like ``window_hours``: one evaluation reads at most 31 days."""
    if end - start > timedelta(hours=MAX_WINDOW_HOURS):
        raise ValueError(f"the window from 'start' to 'end' is longer than {MAX_WINDOW_HOURS} hours (31 days)")


class DriftSettings(FunctionSettings, frozen=True):
    model_bucket: str
    retrain_state_machine_arn: str = ""  # empty: evaluate and report, never start a retraining
    model_name: str = "default"  # what the schedule evaluates
    model_version: str = "champion"  # version (or alias) evaluated when a request names none
    window_hours: float = Field(24.0, gt=0, le=MAX_WINDOW_HOURS)
    cooldown_hours: float = Field(6.0, ge=0, le=30 * 24)
    max_retrains_per_day: int = Field(2, ge=0, le=100)
    retrain_on_drift: bool = True
    powertools_metrics_namespace: str = "loopml"
    powertools_service_name: str = "drift"


class RetrainOptions(BaseModel, extra="forbid"):
    """Optional fields passed on to the retraining state machine's input."""

    approval: bool | None = None
    canary_percent: float | None = Field(default=None, gt=0, le=50)
    bake_minutes: float | None = Field(default=None, ge=0, le=1440)
    max_bake_minutes: float | None = Field(default=None, ge=0, le=7 * 1440)
    data_uri: str | None = Field(default=None, pattern=r"^s3://[^/]+/.+")
    canary_policy: dict[str, float | int] | None = Field(default=None, description="see the retraining input")
    max_labels_per_caller: int | None = Field(default=None, ge=1)


class TriggerPolicy(StartPolicy, extra="forbid"):
    """When drift calls for a retraining; the start itself follows the shared policy (``loopml.retrain.trigger``)."""

    enabled: bool = True
    on_data_drift: bool = Field(default=True, description="dataset drift verdict 'drifted' starts a retraining")
    on_performance_regression: bool = Field(default=True, description="a live metric below its validation CI")
    on_prediction_drift: bool = False
    retrain: RetrainOptions = RetrainOptions()


class BiasPolicy(BaseModel, extra="forbid"):
    positive_class: str | int | None = Field(default=None, description="default: the schema's last class")
    min_group_size: int = Field(default=30, ge=1)
    parity_threshold: float = Field(default=0.1, gt=0, le=1)
    opportunity_threshold: float = Field(default=0.1, gt=0, le=1)
    regression_threshold: float = Field(
        default=0.1, gt=0, le=10, description="regression: largest group gap in mean prediction or error, as a share"
    )


class MonitoringConfig(BaseModel, extra="forbid"):
    window_hours: float = Field(default=24.0, gt=0, le=MAX_WINDOW_HOURS)
    drift: DriftConfig = DriftConfig()
    performance: PerformanceConfig = PerformanceConfig()
    quality: QualityConfig = QualityConfig()
    bias: BiasPolicy = BiasPolicy()
    trigger: TriggerPolicy = TriggerPolicy()
    history_points: int = Field(default=30, ge=0, le=200, description="past runs charted in the HTML report")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def layered_config(settings: DriftSettings, *overrides: dict[str, Any]) -> MonitoringConfig:
    """Settings' defaults, then each override (only the fields it sets) in order."""
    merged: dict[str, Any] = {
        "window_hours": settings.window_hours,
        "trigger": {
            "enabled": settings.retrain_on_drift,
            "cooldown_hours": settings.cooldown_hours,
            "max_starts_per_day": settings.max_retrains_per_day,
        },
    }
    for override in overrides:
        merged = _deep_merge(merged, override)
    return MonitoringConfig.model_validate(merged)


class EvaluateRequest(BaseModel, extra="forbid"):
    """``POST /drift/evaluate`` body, a Step Functions task input, or what the schedule evaluates."""

    model: ModelName
    model_version: int | None = Field(default=None, ge=1, description="default: the serving (champion) version")
    start: datetime | None = Field(default=None, description="default: end - window_hours")
    end: datetime | None = Field(default=None, description="default: now")
    config: MonitoringConfig | None = Field(default=None, description="overrides for this run only")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = utc(value)
        except OverflowError:  # year 1 with a positive offset (or year 9999 with a negative one) has no UTC
            raise ValueError(f"must be between {EARLIEST_WINDOW.date()} and tomorrow") from None
        latest = datetime.now(UTC) + timedelta(days=1)
        if not EARLIEST_WINDOW <= value <= latest:
            raise ValueError(f"must be between {EARLIEST_WINDOW.date()} and tomorrow ({latest.date()})")
        return value

    @model_validator(mode="after")
    def _window(self) -> EvaluateRequest:
        if self.start is not None and self.end is not None:
            if self.end <= self.start:
                raise ValueError("'end' must be after 'start'")
            check_window(self.start, self.end)
        return self

    def config_overrides(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_unset=True) if self.config else {}


class RunSummary(BaseModel):
    """The headline of one evaluation: what ``GET /drift/latest`` returns and the history keeps."""

    run_id: str
    model: str
    model_version: int
    evaluated_at: datetime
    window_start: datetime
    window_end: datetime
    n_rows: int
    n_labelled: int
    data_drift: DriftVerdict
    share_drifted: float | None
    drift_share: float
    n_evaluated: int
    n_drifted: int
    drifted_features: list[str]
    feature_scores: dict[str, float | None]
    prediction_drift: DriftVerdict | None = None
    label_drift: DriftVerdict | None = None
    performance: PerformanceVerdict
    live_metrics: dict[str, float | None] = Field(default_factory=dict)
    regressed_metrics: list[str] = Field(default_factory=list)
    quality_flagged: bool
    bias_flagged: bool | None = None
    alerts: list[str] = Field(default_factory=list)
    trigger: TriggerDecision
    report_key: str
    html_key: str


class DriftRunReport(BaseModel):
    """Everything one evaluation found, stored as JSON next to its HTML rendering."""

    summary: RunSummary
    config: MonitoringConfig
    data_drift: DataDriftReport
    prediction_drift: PredictionDriftReport | None = None
    label_drift: FeatureDrift | None = None
    performance: PerformanceReport
    quality: DataQualityReport
    bias: BiasReport | None = Field(default=None, description="selection rates over every row in the window")
    bias_labelled: BiasReport | None = Field(default=None, description="with labels: TPR and accuracy per group")
    regression_bias: RegressionBiasReport | None = Field(
        default=None, description="regression: mean prediction and error per group"
    )
    notes: list[str] = Field(default_factory=list)


class HistoryPoint(BaseModel):
    """One past run, compact (no histograms): trend charts and ``render_html``'s history."""

    summary: RunSummary
    data_drift: DataDriftReport


def is_scheduled(event: dict[str, Any]) -> bool:
    """EventBridge's rate-rule event (a schedule without a constant input)."""
    return event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events"


def parse_invocation(event: Any) -> EvaluateRequest:
    """A direct invocation's JSON (Step Functions, a schedule's constant input), fields named on error."""
    return parse_object(EvaluateRequest, event, "drift evaluation input")

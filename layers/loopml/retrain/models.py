"""What flows through the retraining state machine: its input, each step's result, the function's settings.

The execution's state is one JSON object: the caller's input, plus one key per step result (``run``,
``dataset``, ``challenger``, ``evaluation``, ``approval_decision``, ``approval_error``, ``registered``,
``canary``, ``verdict``, ``outcome``, ``error``; none of them is an input field), set by each Task
state's ``ResultPath``. Every step parses it into ``RetrainState``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopml.errors import invalid_input, parse_object
from loopml.events import unsupported
from loopml.names import ModelName
from loopml.params import TrainingParams
from loopml.registry import DataLineage
from loopml.settings import FunctionSettings

Step = Literal[
    "start",
    "prepare",
    "train",
    "evaluate",
    "request_approval",
    "reject",
    "register",
    "deploy",
    "check",
    "promote",
    "rollback",
    "inconclusive",
    "cleanup",
]
PrimaryMetric = Literal["roc_auc", "accuracy", "f1_macro", "log_loss", "rmse", "mae", "r2"]
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
RELATIVE_TOLERANCE = frozenset({"rmse", "mae"})  # in the target's units: their tolerance is a share of the champion's
LabelSource = Literal["user", "system"]
DEFAULT_LABEL_WEIGHTS: dict[LabelSource, float] = {"user": 0.5, "system": 1.0}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


class RetrainSettings(FunctionSettings, frozen=True):
    model_bucket: str
    inference_function: str  # the first model's lane; loopml.names.lane_function gives the others
    inference_alias: str = "live"
    model_name: str = "default"  # the first model
    models: str = "default"  # every declared model, comma-separated
    inference_service: str = "inference"  # the ``service`` dimension of the inference function's metrics
    powertools_metrics_namespace: str = "loopml"
    fault_injection: str = ""  # drills and tests only: "step:ErrorName:times[,...]"


class CanaryPolicy(BaseModel, extra="forbid"):
    """When a canary is judged unhealthy compared with the champion over the same bake window."""

    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    max_latency_ratio: float = Field(default=1.5, ge=1)
    min_latency_increase_ms: float = Field(default=50.0, ge=0)
    max_degraded_rate_increase: float = Field(default=0.01, ge=0, le=1)
    max_confidence_drop: float = Field(default=0.1, ge=0, le=1)
    max_accuracy_drop: float = Field(default=0.05, ge=0, le=1)
    min_labels: int = Field(default=30, ge=1)
    min_predictions: int = Field(default=50, ge=1)  # per side: silence is never evidence of health
    min_answer_ratio: float = Field(default=0.5, ge=0, le=1)  # predictions per invocation vs the champion's
    min_invocations: int = Field(default=10, ge=1)
    latency_alarm_ms: float = Field(default=1000.0, gt=0)


class RetrainInput(BaseModel, extra="forbid"):
    """The state machine's input; ``start`` validates it and every later step reads ``run``."""

    model: ModelName
    reason: str = Field(min_length=1, max_length=500)
    data_uri: str | None = Field(default=None, pattern=r"^s3://[^/]+/.+")
    approval: bool = False
    approval_timeout_minutes: float = Field(default=1440, gt=0, le=7 * 1440)
    canary_percent: float = Field(default=10, gt=0, le=50)
    bake_minutes: float = Field(default=5, ge=0, le=1440)
    max_bake_minutes: float | None = Field(
        default=None,
        ge=0,
        le=7 * 1440,
        description="default: 4x bake_minutes; then too little evidence is inconclusive",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    primary_metric: PrimaryMetric | None = Field(
        default=None, description="default: roc_auc for a classifier, rmse for a regressor"
    )
    tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="how much of the primary metric a challenger may lose (rmse, mae: a share)",
    )
    bias_threshold: float = Field(default=0.1, gt=0, le=1)
    bias_tolerance: float = Field(default=0.02, ge=0, le=1)
    holdout_fraction: float = Field(default=0.2, ge=0.05, le=0.5)
    feedback_days: int = Field(default=30, ge=0, le=365)
    canary_policy: CanaryPolicy = CanaryPolicy()
    log_loss_tolerance: float = Field(default=0.05, ge=0, le=10, description="log loss may rise by at most this")
    golden_tolerance: float = Field(
        default=0.03, ge=0, le=1, description="primary metric drop allowed on the golden set (older, trusted rows)"
    )
    label_weights: dict[LabelSource, float] = Field(
        default_factory=lambda: dict(DEFAULT_LABEL_WEIGHTS), description="reviewer labels form the golden set"
    )
    max_labels_per_subject: int = Field(default=5, ge=1, description="user labels one subject may add to a run")
    max_labels_per_caller: int | None = Field(
        default=None, ge=1, description="user labels one caller (API key) may add; default 10% of the base rows"
    )
    canary_fault: Literal["errors"] | None = Field(
        default=None, description="drills only: the canary's Lambda version fails every request (SERVING_FAULT)"
    )

    @property
    def longest_bake_minutes(self) -> float:
        return 4 * self.bake_minutes if self.max_bake_minutes is None else self.max_bake_minutes

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        TrainingParams.model_validate(value)  # unknown or out-of-range hyper-parameters fail here
        return value

    @classmethod
    def parse(cls, raw: Any) -> RetrainInput:
        """Validate a retraining request, naming every bad field in one ``InvalidInput``."""
        return parse_object(cls, raw, "retraining input")


class RunConfig(RetrainInput):
    run_id: str
    started_at: datetime
    bake_seconds: int
    max_bake_seconds: int = 0
    approval_timeout_seconds: int

    @classmethod
    def from_input(cls, raw: Any, run_id: str, now: datetime) -> RunConfig:
        given = RetrainInput.parse(raw)
        return cls(
            **given.model_dump(),
            run_id=run_id,
            started_at=now,
            bake_seconds=math.ceil(given.bake_minutes * 60),
            max_bake_seconds=math.ceil(
                max(
                    given.bake_minutes,
                    4 * given.bake_minutes if given.max_bake_minutes is None else given.max_bake_minutes,
                )
                * 60
            ),
            approval_timeout_seconds=math.ceil(given.approval_timeout_minutes * 60),
        )


class DatasetSnapshot(BaseModel):
    champion_version: int
    train: DataLineage
    holdout: DataLineage
    base_uri: str
    base_rows: int
    feedback_rows: int
    duplicates_removed: int
    invalid_rows: int
    holdout_method: Literal["time", "stratified"] = "time"
    golden: DataLineage | None = None  # the champion's validation rows plus reviewer labels
    golden_rows: int = 0
    notes: list[str] = Field(default_factory=list)  # rate limits applied, rows dropped


class Challenger(BaseModel):
    artifact_key: str
    sha256: str
    metadata_key: str
    params: dict[str, Any]
    validation: dict[str, float | int | None]
    compiled_key: str | None = None  # the staged ONNX form, when the challenger converts
    compiled_sha256: str | None = None


class BiasSummary(BaseModel):
    flagged: bool
    insufficient_data: bool
    parity_difference: dict[str, float | None] = Field(default_factory=dict)
    opportunity_difference: dict[str, float | None] = Field(default_factory=dict)


class Evaluation(BaseModel):
    passed: bool
    primary_metric: PrimaryMetric
    tolerance: float
    holdout_rows: int
    challenger: dict[str, float | int | None]
    champion: dict[str, float | int | None]
    golden_rows: int = 0
    golden_challenger: dict[str, float | int | None] = Field(default_factory=dict)
    golden_champion: dict[str, float | int | None] = Field(default_factory=dict)
    improvement: float  # challenger minus champion, sign-adjusted so positive is better
    challenger_bias: BiasSummary
    champion_bias: BiasSummary
    reasons: list[str]


class ApprovalOutcome(BaseModel):
    approval_id: str
    decision: Literal["approve", "reject"]
    reason: str = ""
    actor: str = ""
    decided_at: datetime


class TaskError(BaseModel):
    """What a Catch puts at its ResultPath."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(default=None, alias="Cause")

    @property
    def message(self) -> str:
        """The exception message inside a Lambda error's cause, or the cause itself."""
        import json

        if not self.cause:
            return ""
        try:
            parsed = json.loads(self.cause)
        except ValueError:
            return self.cause
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])
        return self.cause


class Registered(BaseModel):
    version: int


class Canary(BaseModel):
    model_version: int
    champion_version: int
    lambda_version: str
    champion_lambda_version: str
    canary_percent: float
    started_at: datetime
    alarms: list[str] = Field(default_factory=list)


class VersionMetrics(BaseModel):
    """One version's serving metrics over the bake window."""

    predictions: float = 0
    degraded: float = 0
    invocations: float = 0
    errors: float = 0
    latency_p99_ms: float | None = None
    mean_confidence: float | None = None
    captured: float = 0  # predictions of this version found in the captured dataset
    confidence_std: float | None = None  # of those predictions' confidences

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.invocations if self.invocations else None

    @property
    def degraded_rate(self) -> float | None:
        return self.degraded / self.predictions if self.predictions else None


class OnlineAccuracy(BaseModel):
    labels: int
    canary: float | None
    champion: float | None
    discordant: tuple[int, int] | None = None  # (only the champion right, only the canary right)


class Comparison(BaseModel):
    """One difference, canary minus champion in the harmful direction, with its one-sided 95% bounds."""

    metric: str
    canary_worse_by: float
    lower: float
    upper: float
    margin: float
    samples: str
    worse: bool  # lower bound past the margin: worse with 95% confidence
    non_inferior: bool  # upper bound within the margin: shown no worse than the margin


CanaryDecision = Literal["promote", "extend", "rollback", "inconclusive"]


class Verdict(BaseModel):
    decision: CanaryDecision
    healthy: bool
    reasons: list[str]
    canary: VersionMetrics
    champion: VersionMetrics
    alarms_firing: list[str] = Field(default_factory=list)
    online_accuracy: OnlineAccuracy | None = None
    comparisons: list[Comparison] = Field(default_factory=list)
    baked_minutes: float = 0.0


class Outcome(BaseModel):
    outcome: Literal["promoted", "rejected", "rolled_back", "inconclusive", "failed"]
    model: str
    version: int | None = None
    champion_version: int | None = None
    reason: str = ""


class RetrainState(BaseModel, extra="ignore"):
    run: RunConfig
    dataset: DatasetSnapshot | None = None
    challenger: Challenger | None = None
    evaluation: Evaluation | None = None
    approval_decision: ApprovalOutcome | None = None
    approval_error: TaskError | None = None
    registered: Registered | None = None
    canary: Canary | None = None
    verdict: Verdict | None = None
    error: TaskError | None = None


class ExecutionDetail(BaseModel, extra="ignore"):
    executionArn: str
    stateMachineArn: str
    name: str
    status: Literal["ABORTED", "TIMED_OUT", "FAILED", "SUCCEEDED", "RUNNING", "PENDING_REDRIVE"]
    input: str | None = None


class ExecutionStatusChange(BaseModel):
    """EventBridge's "Step Functions Execution Status Change": how an aborted run reaches its cleanup."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionDetail


class StepRequest(BaseModel, extra="forbid"):
    """The payload every Task state sends the retrain function."""

    step: Step
    state: dict[str, Any] = Field(default_factory=dict)
    execution: str | None = None
    task_token: str | None = None

    @classmethod
    def parse(cls, event: Any) -> StepRequest:
        """Step Functions' task input; any other event fails with one named error, never a traceback."""
        if not isinstance(event, dict) or "step" not in event:
            raise unsupported("retrain", "Step Functions task input {step, state}, API and EventBridge events", event)
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            raise invalid_input("retrain step input", exc.errors(include_url=False)) from None


class ApprovalDecision(BaseModel, extra="forbid"):
    """``POST /approvals/{token}`` body."""

    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=1000)

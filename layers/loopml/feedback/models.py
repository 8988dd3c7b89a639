"""Shapes of the feedback function: settings, API requests/responses, queue records, index entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from loopml.capture import MAX_LABEL_LENGTH, PREDICTION_ID_PATTERN, SCHEMA_VERSION, LabelSource, QueueRecord
from loopml.names import ModelName
from loopml.settings import FunctionSettings

MAX_ITEMS = 100  # feedback items per POST /feedback (one SQS message, one BatchGetItem)
MAX_COMMENT = 1000
MAX_REVIEW_PAGE = 100
Label = (
    Annotated[str, Field(max_length=MAX_LABEL_LENGTH)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]  # a regression target
)


class FeedbackSettings(FunctionSettings, frozen=True):
    model_bucket: str
    feedback_queue_url: str
    prediction_index_table: str
    review_table: str
    subjects_table: str
    model_name: str = "default"
    model_version: str = "champion"
    review_confidence_threshold: float = Field(0.6, ge=0, le=1)
    review_sample_rate: float = Field(0.01, ge=0, le=1)
    pending_window_s: int = Field(900, ge=0)  # how long a prediction may take to reach the index
    index_ttl_days: int = Field(400, ge=1)  # labels are accepted this long after a prediction
    review_ttl_days: int = Field(30, ge=1)
    subject_key: str | None = None  # the HMAC key itself: tests and local overrides only
    subject_key_secret_arn: str | None = None  # Secrets Manager secret holding the HMAC key
    aws_lambda_function_version: str = "$LATEST"


# --- API --------------------------------------------------------------------------------------------
class FeedbackItem(BaseModel, extra="forbid"):
    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN)
    label: Label
    source: LabelSource = "user"
    comment: str | None = Field(None, max_length=MAX_COMMENT)


class FeedbackRequest(BaseModel, extra="forbid"):
    """Either one item's fields at the top level, or ``items``: up to 100 of them."""

    prediction_id: str | None = Field(None, pattern=PREDICTION_ID_PATTERN)
    label: Label | None = None
    source: LabelSource = "user"
    comment: str | None = Field(None, max_length=MAX_COMMENT)
    items: list[FeedbackItem] | None = Field(None, min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackRequest:
        given = self.model_fields_set
        single = bool({"prediction_id", "label"} & given)
        if single == ("items" in given):
            raise ValueError("give either 'prediction_id' and 'label', or 'items'")
        if single and (self.prediction_id is None or self.label is None):
            raise ValueError("'prediction_id' and 'label' are both required")
        if not single and self.items is None:
            raise ValueError("'items' must be a list of feedback items")
        return self

    def all_items(self) -> list[FeedbackItem]:
        if self.items is not None:
            return self.items
        assert self.prediction_id is not None
        assert self.label is not None
        return [
            FeedbackItem(prediction_id=self.prediction_id, label=self.label, source=self.source, comment=self.comment)
        ]


class ReviewLabelRequest(BaseModel, extra="forbid"):
    label: Label
    comment: str | None = Field(None, max_length=MAX_COMMENT)


ItemStatus = Literal["accepted", "pending", "ignored"]


class FeedbackReceipt(BaseModel):
    feedback_id: str
    prediction_id: str
    status: ItemStatus  # pending: the prediction is not indexed yet; joined when it is


class FeedbackResponse(BaseModel):
    accepted: int
    items: list[FeedbackReceipt]


class ReviewItem(BaseModel):
    prediction_id: str
    model: str
    model_version: int
    timestamp: str
    prediction: str | int | float
    probabilities: dict[str, float]
    confidence: float | None  # None for regression: its items are ordered by interval width
    interval: list[float] | None = None
    features: dict[str, Any]
    reason: Literal["low_confidence", "sample"]
    status: Literal["pending", "reviewed"] = "pending"
    label: str | int | float | None = None

    @property
    def uncertainty(self) -> float:
        """What the review list orders by, most uncertain first: 1 - confidence, or the interval's width."""
        if self.interval is not None:
            return self.interval[1] - self.interval[0]
        return 1.0 - (self.confidence if self.confidence is not None else 0.0)


class ReviewPage(BaseModel):
    items: list[ReviewItem]
    pending: int


class ErasureReceipt(BaseModel):
    subject_hash_digest: str  # SHA-256 of the keyed hash: names the tombstone, reveals nothing
    erased_at: str
    predictions_removed: int
    feedback_removed: int
    objects_rewritten: int
    objects_deleted: int
    review_items_removed: int
    duration_ms: float


# --- queue records ----------------------------------------------------------------------------------
class FeedbackRecord(QueueRecord):
    kind: Literal["feedback"] = "feedback"
    schema_version: int = SCHEMA_VERSION
    feedback_id: str
    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN)
    model: ModelName
    model_version: int | None = Field(None, ge=1)
    label: Label
    source: LabelSource
    comment: str | None = None
    received_at: str
    subject_hash: str | None = None
    caller: str | None = Field(None, max_length=128)  # who sent it (API key id): labels are rate-limited by it


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One prediction in the index the consumer writes: how the API knows a prediction exists.

    A dataclass, not a pydantic model: built from already validated records, 1,000 per batch.
    """

    prediction_id: str
    model: str
    model_version: int
    timestamp: str
    subject_hash: str | None = None
    opted_out: bool = False
    erased: bool = False


class SubjectStatus(BaseModel):
    subject_hash: str
    opted_out: bool = False
    erased_at: str | None = None
    objects: list[str] = Field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.opted_out or self.erased_at is not None

"""The inference API's request and response shapes, and the function's settings."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Literal

from pydantic import BaseModel, Field, SkipValidation, model_validator

from loopml.names import Runtime
from loopml.settings import FunctionSettings

MAX_INSTANCES = 1000


class InferenceSettings(FunctionSettings, frozen=True):
    model_bucket: str
    capture_queue_url: str
    model_name: str = "default"
    model_version: str = "champion"
    model_runtime: Runtime = "compiled"  # the declaration's ModelSpec.runtime: which form this function loads
    # /tmp on Lambda; the local stack gives each worker its own temp folder, as Lambda does
    cache_dir: str = Field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "loopml-cache"))
    aws_lambda_function_version: str = "$LATEST"
    subject_key: str | None = None  # see loopml.feedback.keys: HMAC key for subject ids
    subject_key_secret_arn: str | None = None  # Secrets Manager secret holding the HMAC key
    serving_fault: Literal["", "errors"] = ""  # drills only: set on a canary version by `canary_fault`
    api_key_required: bool = True  # API Gateway asks for x-api-key (the document says so); off locally by default


class ServingFault(RuntimeError):
    """A drill's injected failure: unhandled on purpose, so Lambda reports it as a function error."""


class PredictRequest(BaseModel, extra="forbid"):
    """Either ``instance`` (one row) or ``instances`` (a batch of up to 1,000 rows)."""

    instance: dict[str, Any] | None = None
    # Each row is checked by the model's RequestValidator, which names a row that is not an object
    # ("body.instances.<i>"); pydantic copying 1,000 dicts first would cost as much as scoring them.
    instances: list[SkipValidation[dict[str, Any]]] | None = Field(None, min_length=1, max_length=MAX_INSTANCES)
    subject_id: str | None = Field(None, min_length=1, max_length=256)  # stored only as a keyed hash
    consent: bool = True  # false: served, but nothing is captured or used for training

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        given = {"instance", "instances"} & self.model_fields_set
        if len(given) != 1 or (self.instance is None and self.instances is None):
            raise ValueError("give exactly one of 'instance' or 'instances'")
        return self

    def __repr__(self) -> str:
        """Without feature values: features have no place in logs or error messages, and formatting 100 rows
        costs 0.3 ms."""
        return f"PredictRequest({len(self.rows)} row(s), consent={self.consent})"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.instances if self.instances is not None else [self.instance or {}]

    @property
    def locations(self) -> dict[str, Any]:
        """Where errors point: ``body.instances.<i>.<field>`` for a batch, ``body.instance.<field>`` for one."""
        if self.instances is not None:
            return {"loc_prefix": ("body", "instances"), "index_rows": True}
        return {"loc_prefix": ("body", "instance"), "index_rows": False}


# The response's shape, for the OpenAPI document only (the handler builds the response itself): built
# when the document is first asked for, not at every cold start.
class Flags(BaseModel, defer_build=True):
    out_of_range: list[str] = []
    unseen_category: list[str] = []
    missing: list[str] = []


class PredictionOut(BaseModel, defer_build=True):
    prediction_id: str
    prediction: str | int | float = Field(description="the predicted class, or (regression) the predicted value")
    probabilities: dict[str, float] = Field(description="per class; empty for regression")
    confidence: float | None = Field(description="the predicted class's probability; null for regression")
    interval: list[float] | None = Field(
        None, description="regression: [lower, upper], a split-conformal prediction interval (90% coverage)"
    )
    model_version: int
    lambda_version: str
    flags: Flags
    explanation: dict[str, float] | None = None


class PredictResponse(BaseModel, defer_build=True):
    model: str
    model_version: int
    lambda_version: str
    degraded: bool
    degraded_reason: str | None = None
    explainer: str | None = None
    predictions: list[PredictionOut]


class HealthResponse(BaseModel):
    status: str
    model: str
    model_version: int | None
    lambda_version: str
    degraded: bool
    detail: str | None = None


# Documented in OpenAPI without validating every answer against the model: the handler builds the
# response itself, and re-validating 1,000 predictions would cost more than scoring them.
PREDICT_RESPONSES: dict[int, Any] = {
    200: {"description": "Scored instances", "content": {"application/json": {"model": PredictResponse}}},
    422: {"description": "Invalid body or feature values; `detail` names each field"},
    503: {"description": "No verified model to serve; retry after `Retry-After` seconds"},
}


# --- what the retraining workflow and promotions set on a published inference version --------------
def pinned_environment(version: int, fault: str = "") -> dict[str, str]:
    """The variables that pin a published inference version to one model version: ``model_version``
    and ``serving_fault`` of ``InferenceSettings`` (a drill's fault never carries over unless set)."""
    return {"MODEL_VERSION": str(version), "SERVING_FAULT": fault}


def served_runtime(environment: dict[str, str]) -> Runtime:
    """The runtime an inference function's environment runs (its ``model_runtime``)."""
    return "sklearn" if environment.get("MODEL_RUNTIME") == "sklearn" else "compiled"


def served_model(environment: dict[str, str]) -> str | None:
    """The model an inference function's environment serves (its ``model_name``)."""
    return environment.get("MODEL_NAME")

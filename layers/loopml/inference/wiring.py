"""Builds the inference function's collaborators once per execution environment."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loopml import metric_names as names
from loopml.adapters.aws import clear_clients, client
from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.sqs import SqsSender
from loopml.capture import CaptureBuffer
from loopml.feedback.privacy import LazyHasher
from loopml.inference.models import HealthResponse, InferenceSettings
from loopml.inference.service import ModelService
from loopml.lifecycle import register_after_restore, register_post_invoke
from loopml.observability import logger, metrics
from loopml.registry import ModelRegistry


def model_service(settings: InferenceSettings) -> ModelService:
    registry = ModelRegistry(S3ObjectStore(client("s3"), settings.model_bucket))
    return ModelService(
        registry,
        settings.model_name,
        settings.model_version,
        Path(settings.cache_dir),
        runtime=settings.model_runtime,
    )


def capture_buffer(settings: InferenceSettings) -> CaptureBuffer:
    def on_failure(count: int, reason: str) -> None:
        logger.error("prediction capture failed", extra={"messages": count, "reason": reason})
        with single_metric(
            name=names.CAPTURE_FAILURES, unit=MetricUnit.Count, value=count, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension("model", settings.model_name)

    def send(bodies: list[str]) -> int:  # the SQS client is built on first flush, after a response
        return SqsSender(client("sqs"), settings.capture_queue_url)(bodies)

    buffer = CaptureBuffer(send, on_failure)
    register_post_invoke(buffer.flush)
    return buffer


def refresh_on_restore(hasher: LazyHasher) -> None:
    """SnapStart restores many environments from one snapshot: each must draw its own random numbers
    (prediction ids), open its own connections and load the subject key itself, not share the snapshot's."""

    def refresh() -> None:
        random.seed()
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()
        clear_clients()
        hasher.forget()

    register_after_restore(refresh)


def warm_up(service: ModelService) -> None:
    """Load at cold start so the first request does not pay for it; failures surface per request."""
    from loopml.errors import ModelUnavailable

    try:
        service.current()
    except ModelUnavailable:
        logger.warning("no model to serve yet", extra={"error": service.last_error})


def health(service: ModelService, settings: InferenceSettings) -> HealthResponse:
    from loopml.errors import ModelUnavailable

    try:
        serving = service.current()
    except ModelUnavailable as exc:
        return HealthResponse(
            status="unavailable",
            model=settings.model_name,
            model_version=None,
            lambda_version=settings.aws_lambda_function_version,
            degraded=True,
            detail=str(exc),
        )
    return HealthResponse(
        status="degraded" if serving.degraded else "ok",
        model=serving.metadata.model,
        model_version=serving.metadata.version,
        lambda_version=settings.aws_lambda_function_version,
        degraded=serving.degraded,
        detail=serving.reason,
    )


def openapi(service: ModelService, settings: InferenceSettings, request_path: str | None) -> dict[str, Any]:
    """The whole API's document with the served model's features (free-form while nothing is served)."""
    from loopml.errors import ModelUnavailable
    from loopml.openapi import document, server_url

    try:
        schema = service.current().metadata.feature_schema
    except ModelUnavailable:
        schema = None
    base = server_url("/openapi.json", request_path)
    return document(schema, base, title="loopml", api_key_required=settings.api_key_required)


def swagger(request_path: str | None) -> str:
    from loopml.openapi import server_url, swagger_page

    base = server_url("/swagger", request_path).rstrip("/")
    return swagger_page(f"{base}/openapi.json")

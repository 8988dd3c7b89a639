"""Drift: the hourly schedule, ``POST /drift/evaluate``, ``GET /drift/latest``, and direct invocations
(Step Functions, a schedule's constant input) with the same JSON as the POST body.

Each evaluation reads the window's captured predictions and labels, runs every check of the drift
engine, writes the JSON and HTML reports, publishes the scores (EMF) and, under its guards, starts
the retraining state machine.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml.api import api_resolver, resolve
from loopml.drift import wiring
from loopml.drift.models import DriftSettings, EvaluateRequest, is_scheduled, parse_invocation
from loopml.events import is_api
from loopml.observability import logger, metrics, tracer

settings = DriftSettings.load()
monitor = wiring.monitor(settings, metrics, logger)

app = api_resolver()


@app.post("/drift/evaluate")
def evaluate(body: EvaluateRequest) -> dict[str, Any]:
    return monitor.evaluate(body).summary.model_dump(mode="json")


@app.get("/drift/latest")
def latest(model: Annotated[str, Query()], model_version: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    return monitor.latest(model, model_version).model_dump(mode="json")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_api(event):
        return resolve(app, "drift", event, context)
    if is_scheduled(event):
        return monitor.scheduled(settings.model_name)
    return monitor.evaluate(parse_invocation(event)).summary.model_dump(mode="json")

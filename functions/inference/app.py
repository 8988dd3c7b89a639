"""Inference API: POST /predict, GET /model, GET /health, GET /openapi.json, GET /swagger."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml import jsoncodec
from loopml.api import api_resolver, query_flag, request_body, resolve
from loopml.feedback.keys import subject_hasher
from loopml.inference import wiring
from loopml.inference.models import PREDICT_RESPONSES, InferenceSettings, PredictRequest, ServingFault
from loopml.inference.serve import record_metrics, score
from loopml.lifecycle import invocation_finished
from loopml.observability import logger, metrics, tracer

settings = InferenceSettings.load()
service = wiring.model_service(settings)
capture = wiring.capture_buffer(settings)
hash_subject = subject_hasher(settings.subject_key, settings.subject_key_secret_arn)
wiring.refresh_on_restore(hash_subject)
wiring.warm_up(service)

app = api_resolver(validation=False)  # the routes read their own input: the hot path (see api_resolver)


@app.post("/predict", responses=PREDICT_RESPONSES)
def predict() -> Response[str]:
    started = time.perf_counter()
    body, explain = request_body(app, PredictRequest), query_flag(app, "explain")
    if settings.serving_fault:
        raise ServingFault("drill: this Lambda version was deployed with SERVING_FAULT=errors")
    serving = service.current()
    request_id = app.current_event.request_context.request_id or ""
    subject_hash = hash_subject(body.subject_id) if body.subject_id else None
    response, records = score(serving, body, explain, request_id, settings.aws_lambda_function_version, subject_hash)
    capture.add(records)
    record_metrics(metrics, serving, response, (time.perf_counter() - started) * 1000)
    # encoded here: a dict return would be walked again by the resolver's response serializer
    return Response(200, content_types.APPLICATION_JSON, jsoncodec.dumps(response))


@app.get("/model")
def model() -> dict[str, Any]:
    meta = service.current().metadata
    return meta.model_dump(mode="json", exclude=None if query_flag(app, "profile") else {"reference_profile"})


@app.get("/health")
def health() -> Response[str]:
    state = wiring.health(service, settings)
    status = 503 if state.status == "unavailable" else 200
    return Response(status, content_types.APPLICATION_JSON, state.model_dump_json())


@app.get("/openapi.json")
def openapi() -> Response[str]:
    ctx = app.current_event.request_context
    return Response(200, content_types.APPLICATION_JSON, json.dumps(wiring.openapi(service, settings, ctx.path)))


@app.get("/swagger")
def swagger() -> Response[str]:
    return Response(200, content_types.TEXT_HTML, wiring.swagger(app.current_event.request_context.path))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return resolve(app, "inference", event, context)
    finally:
        invocation_finished()

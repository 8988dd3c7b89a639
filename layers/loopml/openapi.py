"""One OpenAPI 3.1 document for the whole API: every route of every function, with the served model's
features typed.

The routes live in the declaration (``loopml.topology``); what each one takes and answers is written here
once, from the same pydantic models the handlers validate with, and a contract test ties the two (every
declared route documented, nothing documented that is not declared). ``/openapi.json`` (the inference
function) renders it with the served model's feature schema and classes, so client generators and
fuzzers see real feature names, types, nullability, categories and training ranges.

Ranges and categories seen in training are documented (``x-training-*``, ``examples``), not enforced:
a value outside them is valid input that the answer flags (``out_of_range``, ``unseen_category``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from loopml.drift.models import EvaluateRequest, RunSummary
from loopml.feedback.models import (
    MAX_REVIEW_PAGE,
    ErasureReceipt,
    FeedbackRequest,
    FeedbackResponse,
    ReviewLabelRequest,
    ReviewPage,
)
from loopml.inference.models import HealthResponse, PredictRequest, PredictResponse
from loopml.registry import ModelMetadata
from loopml.retrain.models import ApprovalDecision, ApprovalOutcome
from loopml.schema import MAX_CATEGORY_LENGTH, MAX_MAGNITUDE, FeatureKind, FeatureSchema
from loopml.topology import TOPOLOGY, Topology

REF = "#/components/schemas/{model}"
MAX_ROWS = 1000
_ERRORS = {
    400: "The body cannot be read: not JSON, not UTF-8, nested too deep or a number too long",
    403: "Missing or wrong credentials (x-api-key, or the admin token / IAM auth on admin routes), or no such route",
    404: "A named thing (model, version, prediction, approval, report) does not exist",
    409: "A conflict: too little data, or a decision already taken",
    413: "The body is over 6 MB",
    415: "The body is not application/json in UTF-8",
    422: "Invalid fields; `detail` names each one",
    503: "No verified model to serve, or a dependency is down; retry after `Retry-After` seconds",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" | "path"
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok: int = 200
    response: type[BaseModel] | None = None
    request: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (403, 422)
    content_type: str = "application/json"
    tags: tuple[str, ...] = field(default_factory=tuple)


_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_BODY_ERRORS = (400, 403, 413, 415, 422)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/predict",
        "Score one instance or up to 1,000",
        response=PredictResponse,
        request=PredictRequest,
        params=(Param("explain", "query", {"type": "boolean", "default": False}, description="add explanations"),),
        errors=(*_BODY_ERRORS, 503),
        tags=("inference",),
    ),
    Operation(
        "GET",
        "/model",
        "Metadata of the served model version",
        response=ModelMetadata,
        params=(Param("profile", "query", {"type": "boolean", "default": False}, description="add the profile"),),
        errors=(403, 422, 503),
        tags=("inference",),
    ),
    Operation("GET", "/health", "Serving status", response=HealthResponse, errors=(503,), tags=("inference",)),
    Operation("GET", "/openapi.json", "This document", errors=(), tags=("inference",)),
    Operation(
        "GET", "/swagger", "Swagger UI for this document", errors=(), content_type="text/html", tags=("inference",)
    ),
    Operation(
        "POST",
        "/feedback",
        "Labels for earlier predictions (one, or up to 100 as items)",
        ok=202,
        response=FeedbackResponse,
        request=FeedbackRequest,
        errors=(*_BODY_ERRORS, 404, 503),
        tags=("feedback",),
    ),
    Operation(
        "GET",
        "/review",
        "The human review list, least confident first",
        response=ReviewPage,
        params=(Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_REVIEW_PAGE, "default": 20}),),
        errors=(403, 422, 503),
        tags=("feedback",),
    ),
    Operation(
        "POST",
        "/review/{prediction_id}",
        "A reviewer's label (wins over other sources)",
        ok=202,
        response=FeedbackResponse,
        request=ReviewLabelRequest,
        params=(Param("prediction_id", "path", _ID, required=True),),
        errors=(*_BODY_ERRORS, 404, 503),
        tags=("feedback",),
    ),
    Operation(
        "DELETE",
        "/subjects/{subject_id}",
        "Erase everything stored about a subject (admin)",
        response=ErasureReceipt,
        params=(Param("subject_id", "path", {"type": "string", "minLength": 1, "maxLength": 256}, required=True),),
        errors=(403, 422, 503),
        tags=("feedback", "admin"),
    ),
    Operation(
        "POST",
        "/approvals/{token}",
        "Approve or reject a retraining waiting for a human (admin)",
        response=ApprovalOutcome,
        request=ApprovalDecision,
        params=(Param("token", "path", _ID, required=True, description="the approval id (logged and stored)"),),
        errors=(*_BODY_ERRORS, 404, 409, 503),
        tags=("retrain", "admin"),
    ),
    Operation(
        "POST",
        "/drift/evaluate",
        "Evaluate drift now for a model version and window",
        response=RunSummary,
        request=EvaluateRequest,
        errors=(*_BODY_ERRORS, 404, 409, 503),
        tags=("drift",),
    ),
    Operation(
        "GET",
        "/drift/latest",
        "The latest drift evaluation of a model",
        response=RunSummary,
        params=(
            Param("model", "query", {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, required=True),
            Param("model_version", "query", {"type": "integer", "minimum": 1}),
        ),
        errors=(403, 404, 422, 503),
        tags=("drift",),
    ),
)


def _error_schemas() -> dict[str, Any]:
    return {
        "FieldError": {
            "type": "object",
            "properties": {
                "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                "msg": {"type": "string"},
                "type": {"type": ["string", "null"]},
            },
            "required": ["loc", "msg"],
        },
        "Error": {
            "type": "object",
            "description": "Our answer ({statusCode, message, detail?}) or API Gateway's ({message})",
            "properties": {
                "statusCode": {"type": "integer"},
                "message": {"type": "string"},
                "detail": {"type": "array", "items": {"$ref": REF.format(model="FieldError")}},
            },
            "required": ["message"],
        },
    }


def instance_schema(schema: FeatureSchema | None) -> dict[str, Any]:
    """The model's features as a JSON schema object; a free-form object when no model is served."""
    if schema is None:
        return {"type": "object", "description": "feature name -> value (no model is served right now)"}
    properties: dict[str, Any] = {}
    for spec in schema.features:
        if spec.kind is FeatureKind.numeric:
            prop: dict[str, Any] = {
                "type": ["number", "null"] if spec.nullable else "number",
                "minimum": -MAX_MAGNITUDE,
                "maximum": MAX_MAGNITUDE,
            }
            if spec.minimum is not None and spec.maximum is not None:
                prop["x-training-minimum"], prop["x-training-maximum"] = spec.minimum, spec.maximum
                prop["description"] = f"seen in training: {spec.minimum:g} to {spec.maximum:g}; outside is flagged"
                prop["examples"] = [spec.minimum, spec.maximum]
        else:
            prop = {"type": ["string", "null"] if spec.nullable else "string", "maxLength": MAX_CATEGORY_LENGTH}
            if spec.categories:
                prop["x-training-categories"] = spec.categories
                prop["examples"] = spec.categories[:10]
                prop["description"] = "a category seen in training; others are served and flagged"
        if spec.sensitive:
            prop["x-sensitive"] = True
        properties[spec.name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [spec.name for spec in schema.features],
        "additionalProperties": False,
    }


def _label_schema(schema: FeatureSchema | None) -> dict[str, Any]:
    if schema is None:
        return {"type": ["string", "integer", "number"]}
    if schema.regression:
        return {"type": "number", "description": f"the true value of the target {schema.target!r}"}
    return {"enum": list(schema.classes), "description": f"one of the model's classes (target {schema.target!r})"}


def _type_model_fields(components: dict[str, Any], schema: FeatureSchema | None) -> None:
    """Replaces the free-form feature and label fields with the served model's types."""
    components["Instance"] = instance_schema(schema)
    predict = components["PredictRequest"]
    predict["properties"]["instance"] = {"$ref": REF.format(model="Instance")}
    predict["properties"]["instances"] = {
        "type": "array",
        "items": {"$ref": REF.format(model="Instance")},
        "minItems": 1,
        "maxItems": MAX_ROWS,
    }
    predict["oneOf"] = [{"required": ["instance"]}, {"required": ["instances"]}]
    label = _label_schema(schema)
    for name in ("FeedbackItem", "ReviewLabelRequest"):
        components[name]["properties"]["label"] = label
    feedback = components["FeedbackRequest"]
    feedback["properties"]["label"] = label
    feedback["properties"]["prediction_id"] = dict(_ID)
    items = feedback["properties"]["items"]["anyOf"][0]
    feedback["properties"]["items"] = items
    feedback["oneOf"] = [
        {"required": ["prediction_id", "label"], "not": {"required": ["items"]}},
        {"required": ["items"], "not": {"anyOf": [{"required": ["prediction_id"]}, {"required": ["label"]}]}},
    ]


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op), "tags": list(op.tags)}
    if op.params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema, "description": p.description}
            for p in op.params
        ]
    if op.request is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.request.__name__)}}},
        }
    if op.content_type == "text/html":
        ok_content: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
    elif op.response is None:
        ok_content = {"application/json": {"schema": {"type": "object"}}}
    else:
        ok_content = {"application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}}
    responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": ok_content}}
    # 400 on every route: API Gateway answers a request it cannot frame (bad Content-Length) before any code runs
    for status in sorted({*op.errors, 400, 403}) if op.errors else (400,):
        if status == 503 and op.response is HealthResponse:
            responses["503"] = {"description": _ERRORS[503], "content": ok_content}
            continue
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
    out["responses"] = responses
    return out


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}") for w in op.path.replace(".", "_").split("/") if w]
    return op.method.lower() + "_" + "_".join(words)


def document(
    feature_schema: FeatureSchema | None = None,
    server_url: str = "/",
    title: str = "loopml",
    topology: Topology = TOPOLOGY,
    api_key_required: bool = True,
) -> dict[str, Any]:
    """The whole API as OpenAPI 3.1, with the served model's features when ``feature_schema`` is given.

    ``api_key_required`` says whether API Gateway asks for ``x-api-key`` (always on AWS; locally only
    with ``--api-key``), so the document promises what the deployment does.
    """
    models: list[type[BaseModel]] = []
    for op in OPERATIONS:
        for model in (op.request, op.response):
            if model is not None and model not in models:
                models.append(model)
    requests = {op.request for op in OPERATIONS}
    _, definitions = models_json_schema(
        [(m, "validation" if m in requests else "serialization") for m in models], ref_template=REF
    )
    components = {**definitions.get("$defs", {}), **_error_schemas()}
    _type_model_fields(components, feature_schema)
    paths: dict[str, dict[str, Any]] = {}
    auth: dict[tuple[str, str], str] = {
        (route.method, route.path): route.auth for spec in topology.functions for route in spec.routes
    }
    for op in OPERATIONS:
        item = _operation(op)
        scheme = auth.get((op.method, op.path), "api_key")
        if scheme == "api_key" and not api_key_required:
            scheme = "none"
        item["security"] = [] if scheme == "none" else [{"admin": []}] if scheme == "iam" else [{"api_key": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "Every route of every loopml function. Admin routes need IAM auth on AWS and header "
            "x-loopml-admin-token locally.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "api_key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "admin": {"type": "apiKey", "in": "header", "name": "x-loopml-admin-token"},
            },
        },
    }


def server_url(path: str, request_path: str | None) -> str:
    """The base the client used: ``/dev`` behind an execute-api stage, ``/`` on the local stack.

    ``request_path`` is ``requestContext.path``, the path as the client sent it; ``path`` the route's path.
    """
    if request_path and request_path.endswith(path):
        base = request_path[: len(request_path) - len(path)]
        return base or "/"
    return "/"


SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: {spec_url}, dom_id: "#swagger-ui"}});</script>
</body></html>
"""


def swagger_page(spec_url: str, title: str = "loopml") -> str:
    return SWAGGER_HTML.format(title=title, spec_url=json.dumps(spec_url))

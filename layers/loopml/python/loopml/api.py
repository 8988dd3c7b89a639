"""What every API function shares: error mapping from domain errors to HTTP, and JSON helpers.

Bad input is the caller's to fix, so it is answered with a 4xx that names each field; only our own
faults are 5xx, and those never echo internals.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from loopml.errors import (
    ConfigurationError,
    InsufficientData,
    IntegrityError,
    InvalidInput,
    LoopmlError,
    ModelUnavailable,
    NotFound,
    TransientError,
    VersionConflict,
)
from loopml.observability import logger

RETRY_AFTER_S = 30
SWAGGER_PATH = "/swagger"


def enable_swagger_on_demand(app: APIGatewayRestResolver, event: dict[str, Any], title: str) -> None:
    """Swagger UI pulls in Powertools' OpenAPI models (~120 ms): pay for them on the first visit, not at cold start."""
    if event.get("path") == SWAGGER_PATH and not getattr(app, "_loopml_swagger", False):
        app.enable_swagger(path=SWAGGER_PATH, title=title, version="1")
        app._loopml_swagger = True  # type: ignore[attr-defined]


def error_response(status: HTTPStatus, message: str, **extra: Any) -> Response[Any]:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status is HTTPStatus.SERVICE_UNAVAILABLE else None
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body={"statusCode": status.value, "message": message, **extra},
        headers=headers,
    )


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", e.get("type", "invalid"))),
            "type": e.get("type"),
        }
        for e in errors
    ]


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def _request_validation(exc: RequestValidationError) -> Response[Any]:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(HTTPStatus.BAD_REQUEST, "request body is not valid JSON")
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "request validation failed", detail=_field_errors(errors)
        )

    @app.exception_handler(InvalidInput)
    def _invalid(exc: InvalidInput) -> Response[Any]:
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc), detail=_field_errors(exc.errors))

    @app.exception_handler(NotFound)
    def _not_found(exc: NotFound) -> Response[Any]:
        return error_response(HTTPStatus.NOT_FOUND, str(exc))

    @app.exception_handler([VersionConflict, InsufficientData])
    def _conflict(exc: LoopmlError) -> Response[Any]:
        return error_response(HTTPStatus.CONFLICT, str(exc))

    @app.exception_handler([ModelUnavailable, TransientError])
    def _unavailable(exc: LoopmlError) -> Response[Any]:
        return error_response(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    @app.exception_handler([IntegrityError, ConfigurationError])
    def _ours(exc: LoopmlError) -> Response[Any]:
        logger.exception("server-side fault")
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: the service is misconfigured")

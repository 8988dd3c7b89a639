"""The API Gateway emulator: REST proxy events in, proxy responses out, API Gateway's own errors."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loopml_dev.local.apigw import ApiGateway
from loopml_dev.local.runtime import InvokeResult
from tests.e2e.local.conftest import ADMIN_TOKEN, API_KEY, TEST_TOPOLOGY

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).parent / "fixtures" / "events"


def _request(stack, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    split = urlsplit(stack.api_url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=35)
    try:
        connection.request(method, path, body=body, headers={"User-Agent": "pytest", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


_FREE_FORM = {"headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters"}


def _shape(value, free_form: bool = False):
    """Keys (recursively) and types: what a saved sample event must share with a live one."""
    if isinstance(value, dict) and not free_form:
        return {key: _shape(item, key in _FREE_FORM) for key, item in value.items()}
    return type(value).__name__


def test_route_with_path_parameter_builds_the_rest_proxy_event(stack):
    status, headers, body = _request(
        stack, "GET", "/echo/42?status=201&a=1&a=2", headers={"X-Test": "one", "User-Agent": "pytest"}
    )

    assert status == 201
    assert headers["X-Echo-Path"] == "/echo/42"
    assert headers.get_all("X-Multi") == ["a", "b"]
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)["event"]
    assert event["resource"] == "/echo/{id}"
    assert event["path"] == "/echo/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"status": "201", "a": "2"}
    assert event["multiValueQueryStringParameters"] == {"status": ["201"], "a": ["1", "2"]}
    assert event["headers"]["X-Test"] == "one"
    assert event["multiValueHeaders"]["X-Test"] == ["one"]
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "test"
    assert context["resourcePath"] == "/echo/{id}"
    assert context["path"] == "/echo/42"  # as the client sent it: the local URL has no stage prefix
    assert context["httpMethod"] == "GET"
    assert context["accountId"] == "123456789012"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "pytest"
    assert abs(context["requestTimeEpoch"] / 1000 - time.time()) < 30
    assert context["requestId"] == headers["x-amzn-RequestId"]
    assert _shape(event) == _shape(json.loads((SAMPLES / "apigw_rest_path_parameter.json").read_text()))


def test_literal_route_wins_over_parameter_and_greedy_proxy_takes_the_rest(stack):
    _, _, special = _request(stack, "GET", "/echo/special")
    assert json.loads(special)["event"]["resource"] == "/echo/special"
    assert json.loads(special)["event"]["pathParameters"] is None

    status, _, body = _request(stack, "GET", "/files/a/b%20c/d.txt")
    event = json.loads(body)["event"]
    assert status == 200
    assert event["resource"] == "/files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b c/d.txt"}
    assert _shape(event) == _shape(json.loads((SAMPLES / "apigw_rest_greedy_proxy.json").read_text()))


def test_post_body_is_passed_as_text(stack):
    status, _, body = _request(
        stack, "POST", "/echo", body=b'{"rows": [[1, 2]]}', headers={"Content-Type": "application/json"}
    )
    event = json.loads(body)["event"]
    assert status == 200
    assert event["body"] == '{"rows": [[1, 2]]}'
    assert event["isBase64Encoded"] is False
    assert event["pathParameters"] is None
    assert _shape(event) == _shape(json.loads((SAMPLES / "apigw_rest_post_body.json").read_text()))


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("DELETE", "/echo/1"), ("GET", "/")])
def test_unknown_route_or_method_is_missing_authentication_token(stack, method, path):
    status, headers, body = _request(stack, method, path)
    assert status == 403
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_api_key_and_admin_token_routes(stack):
    status, _, body = _request(stack, "GET", "/keyed")
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})
    status, _, body = _request(stack, "GET", "/keyed", headers={"x-api-key": API_KEY})
    assert status == 200
    assert json.loads(body)["event"]["requestContext"]["identity"]["apiKey"] == API_KEY

    assert _request(stack, "GET", "/admin")[0] == 403
    assert _request(stack, "GET", "/admin", headers={"x-loopml-admin-token": "wrong"})[0] == 403
    assert _request(stack, "GET", "/admin", headers={"x-loopml-admin-token": ADMIN_TOKEN})[0] == 200


def test_function_error_and_malformed_proxy_response_are_502(stack):
    status, _, body = _request(stack, "GET", "/fail")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
    status, _, body = _request(stack, "GET", "/echo/1?raw=1")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_integration_timeout_is_504():
    def slow(function: str, payload: bytes) -> InvokeResult:
        time.sleep(1.0)
        return InvokeResult(200, b'{"statusCode": 200}', "1")

    api = ApiGateway(TEST_TOPOLOGY, slow, port=0, admin_token=ADMIN_TOKEN, integration_timeout_s=0.2)
    api.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
        connection.request("GET", "/echo/1")
        response = connection.getresponse()
        assert response.status == 504
        assert json.loads(response.read()) == {"message": "Endpoint request timed out"}
        connection.close()
    finally:
        api.stop()


def test_round_trip_overhead_stays_small(stack):
    split = urlsplit(stack.api_url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=5)
    timings = []
    try:
        for _ in range(60):
            started = time.perf_counter()
            connection.request("GET", "/echo/1")
            response = connection.getresponse()
            response.read()
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status == 200
    finally:
        connection.close()
    # ~0.6 ms measured on an idle 2-core machine; the bound leaves room for a loaded CI box.
    assert statistics.median(timings[10:]) < 15, timings


@pytest.mark.parametrize("method", ["TRACE", "BREW", "PATCH"])
def test_unknown_methods_are_answered_as_api_gateway_does_in_json(stack, method):
    status, headers, body = _request(stack, method, "/echo/1")
    assert status == 403 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Missing Authentication Token"}


def test_an_event_over_lambdas_payload_limit_is_413_in_json(stack):
    status, _, body = _request(stack, "POST", "/echo", body=b"x" * (6 * 1024 * 1024 + 1))
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}


def _raw(stack, request: bytes) -> str:
    """Send bytes no HTTP client would, read the answer until the server closes the connection."""
    import socket

    split = urlsplit(stack.api_url)
    chunks = []
    with socket.create_connection((split.hostname, split.port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_content_length_that_is_not_a_number_is_400_in_json(stack):
    answer = _raw(stack, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: MODEL_NAME\r\n\r\n")
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and json.loads(body)["message"].startswith("Invalid request body")


def test_a_request_line_http_cannot_parse_is_400_in_json(stack):
    head, _, body = _raw(stack, b"GET /echo/1 HTTP/9.9 extra\r\n\r\n").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and "application/json" in head
    assert "message" in json.loads(body)

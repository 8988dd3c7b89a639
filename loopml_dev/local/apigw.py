"""API Gateway (REST API, v1 proxy integration) emulator in front of the functions' aliases.

Routes come from every function's ``spec.routes``; path templates use ``{param}`` and a greedy final
``{proxy+}``. A literal segment wins over a parameter, which wins over ``{proxy+}``, as in API Gateway.
Each request becomes the proxy event API Gateway sends and is invoked on the function's alias through
the local runtime (alias weights honoured); the proxy response is mapped back.

Answers that mimic API Gateway, always JSON: unknown route or method (TRACE and made-up verbs
included) -> 403 ``{"message": "Missing Authentication Token"}``; a request whose Lambda event would
pass Lambda's 6 MB payload limit -> 413 ``{"message": "Request Too Long"}``; a request line or header
that HTTP cannot parse -> 400; handler error or malformed proxy response -> 502 ``{"message": "Internal
server error"}``; no answer within ``integration_timeout_s`` (29 s) -> 504 ``{"message": "Endpoint
request timed out"}``.

Auth, locally: with ``api_key`` set, routes declared ``auth="api_key"`` need header ``x-api-key`` with
that value (else 403 ``{"message": "Forbidden"}``); without it they are open, the default. Routes
declared ``auth="iam"`` need SigV4 on AWS; locally they need header ``x-loopml-admin-token`` with the
stack's admin token (else 403 ``Missing Authentication Token``), always. The stage is not part of the
local URL (``http://127.0.0.1:3000/predict``), so ``requestContext.path`` (the path as the client sent
it) has none either; the stage is reported in ``requestContext.stage``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from loopml.topology import Auth, Topology
from loopml_dev.local.runtime import InvokeResult
from loopml_dev.local.server import LoopbackHandler, LoopbackServer

API_ID = "local0api"
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
ADMIN_TOKEN_HEADER = "x-loopml-admin-token"  # noqa: S105 - a header name


@dataclass(frozen=True)
class CompiledRoute:
    function: str  # declared name
    method: str
    resource: str
    auth: Auth
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    rank: tuple[int, int, int]


def compile_route(function: str, method: str, resource: str, auth: Auth) -> CompiledRoute:
    segments = [s for s in resource.strip("/").split("/") if s]
    regex, params = "", []
    literals = variables = greedy = 0
    for index, segment in enumerate(segments):
        greedy_match = re.fullmatch(r"\{(\w+)\+\}", segment)
        variable = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy_match and index == len(segments) - 1:
            regex += rf"/(?P<{greedy_match.group(1)}>.+)"
            params.append(greedy_match.group(1))
            greedy = 1
        elif variable:
            regex += rf"/(?P<{variable.group(1)}>[^/]+)"
            params.append(variable.group(1))
            variables += 1
        else:
            regex += "/" + re.escape(segment)
            literals += 1
    pattern = re.compile(f"^{regex or '/'}$")
    # Most specific first: no greedy, then more literal segments, then fewer parameters.
    return CompiledRoute(function, method, resource, auth, pattern, tuple(params), (greedy, -literals, variables))


def routes_of(topology: Topology) -> list[CompiledRoute]:
    compiled = [
        compile_route(spec.name, route.method, route.path, route.auth)
        for spec in topology.functions
        for route in spec.routes
    ]
    return sorted(compiled, key=lambda r: r.rank)


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


class ApiGateway(LoopbackServer):
    """``ThreadingHTTPServer``; ``invoke(function_name, payload) -> InvokeResult`` runs the alias."""

    def __init__(
        self,
        topology: Topology,
        invoke: Callable[[str, bytes], InvokeResult],
        host: str = "127.0.0.1",
        port: int = 3000,
        stage: str = "local",
        account_id: str = "123456789012",
        api_key: str | None = None,
        admin_token: str = "",
        integration_timeout_s: float = 29.0,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        """``access_log`` receives one line per request: method, path, status, latency, what answered."""
        if not admin_token:
            raise ValueError("the API emulator needs an admin token: admin routes are never open")
        self.routes = routes_of(topology)
        self.invoke = invoke
        self.stage = stage
        self.account_id = account_id
        self.api_key = api_key
        self.admin_token = admin_token
        self.integration_timeout_s = integration_timeout_s
        self.access_log = access_log
        super().__init__("apigw", _ApiHandler, {"api": self}, port, host, pool_workers=32, wait_for_pool_on_stop=False)

    def match(self, method: str, path: str) -> tuple[CompiledRoute, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def build_event(
        self,
        route: CompiledRoute,
        path_params: dict[str, str],
        method: str,
        path: str,
        query: str,
        header_pairs: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> dict[str, Any]:
        headers, multi_headers = _multi(header_pairs)
        query_single, query_multi = _multi(parse_qsl(query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        now = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        text: str | None
        encoded = False
        if not body:
            text = None
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query_single,
            "multiValueQueryStringParameters": query_multi,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": format(abs(hash(route.resource)) % (36**6), "x")[:6],
                "resourcePath": route.resource,
                "httpMethod": method,
                "extendedRequestId": request_id.replace("-", "")[:16] + "=",
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": path,  # as the client sent it: the local URL has no stage prefix
                "accountId": self.account_id,
                "protocol": "HTTP/1.1",
                "stage": self.stage,
                "domainPrefix": API_ID,
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "sourceIp": source_ip,
                    "principalOrgId": None,
                    "accessKey": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": lowered.get("user-agent"),
                    "user": None,
                    "apiKey": lowered.get("x-api-key") if route.auth == "api_key" else None,
                    "apiKeyId": None,
                },
                "domainName": f"{API_ID}.execute-api.local",
                "apiId": API_ID,
            },
            "body": text,
            "isBase64Encoded": encoded,
        }


def _proxy_response(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """None when the function's answer is not a valid proxy response (API Gateway then says 502)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    status = document.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    headers: list[tuple[str, str]] = []
    single = document.get("headers") or {}
    multi = document.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return None
    for name, values in multi.items():
        if not isinstance(values, list):
            return None
        headers.extend((name, str(value)) for value in values)
    names = {name.lower() for name, _ in headers}
    headers.extend((name, str(value)) for name, value in single.items() if name.lower() not in names)
    body = document.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        return None
    elif document.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body)
        except ValueError:
            return None
    else:
        data = body.encode()
    return status, headers, data


def _model_version(body: bytes) -> str:
    """`` model vN`` when a (small) JSON answer names the model version that served it."""
    if not body.startswith(b"{") or len(body) > 65536:
        return ""
    try:
        version = json.loads(body).get("model_version")
    except (ValueError, AttributeError):
        return ""
    return f" model v{version}" if isinstance(version, int) else ""


class _ApiHandler(LoopbackHandler):
    api: ApiGateway

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str = "") -> None:
        self._status = status
        self.send_response(status)
        names = set()
        for name, value in headers:
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            names.add(name.lower())
            self.send_header(name, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", request_id or str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _message(self, status: int, message: str, extra: list[tuple[str, str]] | None = None) -> None:
        error_type = "ForbiddenException" if message == "Forbidden" else _ERROR_TYPES.get(status, "")
        headers = [("x-amzn-ErrorType", error_type), *(extra or [])]
        self._send(status, headers, json.dumps({"message": message}).encode())

    def _handle(self) -> None:
        started = time.perf_counter()
        self._status, self._answered = 0, ""
        try:
            self._serve()
        finally:
            if self.api.access_log is not None:
                path = urlsplit(self.path).path
                elapsed = (time.perf_counter() - started) * 1000
                self.api.access_log(f"[api] {self.command} {path} {self._status} {elapsed:.1f} ms{self._answered}")

    def _serve(self) -> None:
        try:
            body = self.read_body()
        except ValueError:  # a Content-Length or chunk size that is not a number
            self.close_connection = True
            self._message(400, "Invalid request body framing (Content-Length or chunk size)")
            return
        split = urlsplit(self.path)
        path = split.path if split.path == "/" else split.path.rstrip("/")
        api = self.api
        matched = api.match(self.command, path)
        if matched is None:
            self._message(403, "Missing Authentication Token")
            return
        route, params = matched
        if route.auth == "api_key" and api.api_key is not None and self.headers.get("x-api-key") != api.api_key:
            self._message(403, "Forbidden")
            return
        if route.auth == "iam" and not hmac.compare_digest(
            self.headers.get(ADMIN_TOKEN_HEADER, "").encode(), api.admin_token.encode()
        ):
            self._message(403, "Missing Authentication Token")
            return
        header_pairs = list(self.headers.items())
        present = {name.lower() for name, _ in header_pairs}
        for name, value in (
            ("X-Forwarded-For", self.client_address[0]),
            ("X-Forwarded-Port", str(api.port)),
            ("X-Forwarded-Proto", "http"),
        ):
            if name.lower() not in present:
                header_pairs.append((name, value))
        event = api.build_event(
            route, params, self.command, path, split.query, header_pairs, body, self.client_address[0]
        )
        payload = json.dumps(event).encode()
        if len(payload) > MAX_EVENT_BYTES:
            self._message(413, "Request Too Long")
            return
        future = api.pool.submit(api.invoke, route.function, payload)
        try:
            result = future.result(timeout=api.integration_timeout_s)
        except FutureTimeout:
            self._message(504, "Endpoint request timed out")
            return
        except Exception as exc:
            self._answered = f" {route.function}: integration failed: {exc}"
            self._message(502, "Internal server error")
            return
        mapped = None if result.function_error else _proxy_response(result.payload)
        if mapped is None:
            what = "function error" if result.function_error else "malformed proxy response"
            self._answered = f" {route.function}:{result.executed_version} {what} (loopml logs {route.function})"
            self._message(502, "Internal server error")
            return
        status, headers, data = mapped
        self._answered = f" {route.function}:{result.executed_version}" + _model_version(data)
        self._send(status, headers, data, event["requestContext"]["requestId"])

    def __getattr__(self, name: str) -> Any:
        """Every verb reaches ``_handle`` (TRACE, made-up ones): API Gateway answers them, never with HTML."""
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, oversized headers) as JSON, like API Gateway."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # a status line even when the request line was unreadable
        body = json.dumps({"message": message or HTTPStatus(code).phrase}).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


_ERROR_TYPES = {
    403: "MissingAuthenticationTokenException",
    401: "UnauthorizedException",
    502: "InternalServerErrorException",
    504: "IntegrationTimeout",
}

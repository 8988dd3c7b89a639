"""The AWS front door: the one endpoint every boto3 client of the local stack talks to.

It answers the Lambda Invoke API itself (moto's ``invoke`` runs no code) by running the function in
the local runtime, and forwards every other request to moto unchanged. Handler exceptions come back as
Lambda returns them (status 200, ``X-Amz-Function-Error: Unhandled``, ``{"errorMessage", "errorType",
"stackTrace"}``), so Step Functions Retry/Catch, whose interpreter calls this port, match on the
exception class name. Zips uploaded through it (create/update function code, publish layer version)
are kept by SHA-256 so the runtime can run exactly the code of each published version.
``InvocationType=Event`` answers 202 and runs the function in a background pool (no retries, no
destinations); ``DryRun`` answers 204 when the function and qualifier exist.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from loopml_dev.local.code_store import FunctionNotFound
from loopml_dev.local.runtime import Runtime
from loopml_dev.local.server import LoopbackHandler, LoopbackServer

_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations$")
_CODE_UPLOADS = (
    re.compile(r"^/2015-03-31/functions/?$"),
    re.compile(r"^/2015-03-31/functions/[^/]+/code$"),
    re.compile(r"^/2018-10-31/layers/[^/]+/versions$"),
)
_LAMBDA_API = re.compile(r"^/20\d\d-\d\d-\d\d/")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


def _service(headers: Any) -> str:
    """The SigV4 credential scope names the service: ``Credential=AK/date/region/SERVICE/aws4_request``."""
    auth = headers.get("Authorization") or ""
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    return match.group(1) if match else ""


TAIL_BYTES = 4096


class FrontDoor(LoopbackServer):
    """``ThreadingHTTPServer`` on loopback; ``start``/``stop`` own its thread."""

    def __init__(self, port: int, moto_port: int, runtime: Runtime, host: str = "127.0.0.1") -> None:
        self.moto_port = moto_port
        self.runtime = runtime
        self._local = threading.local()
        super().__init__("front-door", _Handler, {"front_door": self}, port, host, pool_workers=8)

    def moto_connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=120)
            self._local.connection = connection
        return connection

    def submit_event(self, function: str, payload: bytes, qualifier: str | None) -> None:
        def run() -> None:
            try:
                self.runtime.invoke(function, payload, qualifier)
            except Exception as exc:  # nobody waits for an Event invoke: report and move on
                print(f"[front-door] async invoke of {function} failed: {exc}", flush=True)

        self.pool.submit(run)


class _Handler(LoopbackHandler):
    front_door: FrontDoor

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self.read_body()
        split = urlsplit(self.path)
        invoke = _INVOKE.match(split.path) if self.command == "POST" else None
        if invoke and _service(self.headers) in ("lambda", ""):
            self._invoke(unquote(invoke.group("function")), split.query, body)
            return
        lambda_write = self.command not in ("GET", "HEAD") and _LAMBDA_API.match(split.path)
        if lambda_write and _service(self.headers) == "lambda":
            self._keep_zip(split.path, body)
            try:
                self._proxy(body)
            finally:
                self.front_door.runtime.invalidate()
            return
        self._proxy(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _invoke(self, function: str, query: str, body: bytes) -> None:
        qualifiers = parse_qs(query).get("Qualifier")
        qualifier = qualifiers[0] if qualifiers else None
        invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        runtime = self.front_door.runtime
        try:
            if invocation_type == "DryRun":
                runtime.resolve(function, qualifier)
                self._reply(204, b"")
            elif invocation_type == "Event":
                runtime.resolve(function, qualifier)  # a missing function fails now, as on AWS
                self.front_door.submit_event(function, body, qualifier)
                self._reply(202, b"")
            else:
                client_context = self.headers.get("X-Amz-Client-Context")
                if client_context:
                    client_context = base64.b64decode(client_context).decode()
                result = runtime.invoke(function, body, qualifier, client_context)
                headers = {
                    "Content-Type": "application/json",
                    "X-Amz-Executed-Version": result.executed_version,
                    "x-amzn-RequestId": result.request_id,
                }
                if result.function_error:
                    headers["X-Amz-Function-Error"] = result.function_error
                if (self.headers.get("X-Amz-Log-Type") or "").lower() == "tail":  # the last 4 KB, as Lambda does
                    headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()[-TAIL_BYTES:]).decode()
                self._reply(result.status, result.payload, headers)
        except FunctionNotFound as exc:
            self._error(404, "ResourceNotFoundException", str(exc))
        except Exception as exc:
            self._error(500, "ServiceException", f"{type(exc).__name__}: {exc}")

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"Type": "User" if status < 500 else "Service", "Message": message}).encode()
        self._reply(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": code})

    def _keep_zip(self, path: str, body: bytes) -> None:
        if not any(pattern.match(path) for pattern in _CODE_UPLOADS):
            return
        try:
            document = json.loads(body)
        except ValueError:
            return
        encoded = (
            document.get("ZipFile")
            or (document.get("Code") or {}).get("ZipFile")
            or (document.get("Content") or {}).get("ZipFile")
        )
        if isinstance(encoded, str):
            try:
                self.front_door.runtime.code_store.put(base64.b64decode(encoded))
            except (binascii.Error, ValueError):
                return

    def _proxy(self, body: bytes) -> None:
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        }
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            connection = self.front_door.moto_connection()
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()  # moto closed a kept-alive connection: retry once on a fresh one
                if attempt:
                    self._error(502, "ServiceException", "the moto server did not answer")
                    return
        self.send_response(response.status, response.reason)
        passthrough_length = self.command == "HEAD" or response.status in (204, 304)
        for name, value in response.getheaders():
            lowered = name.lower()
            if lowered in _HOP_BY_HOP or (lowered == "content-length" and not passthrough_length):
                continue
            self.send_header(name, value)
        if not passthrough_length:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

"""The loopback HTTP servers of the local stack (AWS front door, API Gateway) share one lifecycle."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHandler(BaseHTTPRequestHandler):
    """What both servers' request handlers share: keep-alive, no Nagle delay, quiet logs, body reading."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        return

    def read_body(self) -> bytes:
        """The request body, chunked (as botocore streams some uploads) or by Content-Length."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class LoopbackServer:
    """A ``ThreadingHTTPServer`` plus the serving thread and worker pool it owns.

    ``handler`` is subclassed with ``attributes`` so each request handler can reach its server object.
    """

    def __init__(
        self,
        name: str,
        handler: type[BaseHTTPRequestHandler],
        attributes: dict[str, Any],
        port: int,
        host: str = "127.0.0.1",
        pool_workers: int = 8,
        wait_for_pool_on_stop: bool = True,
    ) -> None:
        self._name = name
        self._wait_for_pool = wait_for_pool_on_stop
        self.pool = ThreadPoolExecutor(max_workers=pool_workers, thread_name_prefix=name)
        self.server = ThreadingHTTPServer((host, port), type(f"{handler.__name__}Bound", (handler,), attributes))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.pool.shutdown(wait=self._wait_for_pool, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(5)

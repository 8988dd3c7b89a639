"""What the benchmarks share: a moto server on a free loopback port for one run."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """In-process moto server (threads), so a benchmark measures our code and not a process start."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

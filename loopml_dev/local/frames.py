"""The pipe protocol between the local runtime and its workers, written once for both sides.

A frame is a 4-byte big-endian length and a JSON body. The worker loads this file by path (before the
function's ``sys.path`` is in place), so it uses the standard library only.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
# Printed by the worker after an invocation's output and before its result frame: the runtime has then
# read every line the invocation printed (stdout is a separate, asynchronously read stream).
END_OF_OUTPUT = "\x1eloopml-end-of-output"


class FrameTimeout(Exception):
    """The deadline passed before a whole frame arrived."""


class PeerExited(Exception):
    """The other side closed its end of the pipe."""


def read_frame(fd: int, deadline: float | None = None) -> dict[str, Any]:
    """The next frame; ``deadline`` is a ``time.monotonic()`` instant (None: wait as long as it takes)."""
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    frame: dict[str, Any] = json.loads(_read_exact(fd, length, deadline))
    return frame


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise FrameTimeout
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise PeerExited
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]

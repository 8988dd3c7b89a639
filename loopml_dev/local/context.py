"""A Lambda context object for calling handlers in-process (tests, benchmarks)."""

from __future__ import annotations

import time
import uuid


class StubContext:
    """What handlers and Powertools read from Lambda's context, for a function called directly."""

    def __init__(self, function: str, version: str = "1", memory_mb: int = 1024, timeout_s: float = 30.0) -> None:
        self.function_name = f"loopml-test-{function}"
        self.function_version = version
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}:live"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = f"req-{uuid.uuid4().hex[:12]}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

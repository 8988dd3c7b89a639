"""Logger, Metrics and Tracer, set up once for every function.

Service name and namespace come from the standard Powertools variables each function's declaration
sets, so handlers only import these three objects.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

# Routes such as /health emit no metric on purpose; Powertools would warn on every such invocation.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "loopml"))


class _NoTracer:
    """Tracer's decorator API without importing the X-Ray SDK (~200 ms of cold start)."""

    def capture_lambda_handler(self, handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return handler if handler is not None else (lambda fn: fn)

    capture_method = capture_lambda_handler

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None


def _tracing_on() -> bool:
    """Lambda sets the X-Ray daemon address only for functions with active tracing."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")
    return bool(os.environ.get("AWS_XRAY_DAEMON_ADDRESS")) and not disabled


def _make_tracer() -> Any:
    if not _tracing_on():
        return _NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()


tracer: Any = _make_tracer()

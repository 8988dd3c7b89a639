"""What CloudWatch derives from Lambda on AWS, which moto never does: metrics.

Two sources, published to moto's CloudWatch with ``put_metric_data`` from a background thread (never
on the invocation's path):

- Lambda's own ``AWS/Lambda`` metrics per invocation (``Invocations``, ``Errors``, ``Duration``) with
  the dimension sets Lambda uses: ``FunctionName``; ``FunctionName, Resource`` (``name:alias`` when
  invoked through an alias, ``name`` otherwise); ``FunctionName, Resource, ExecutedVersion`` for alias
  invocations, which is what canary alarms watch.
- Embedded Metric Format lines the handler prints (Powertools ``Metrics``), extracted as CloudWatch
  Logs extracts them on AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loopml import metric_names as names
from loopml_dev.local.periodic import Periodic

_BATCH = 500  # put_metric_data accepts up to 1000 values per call


def emf_metrics(line: str) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, MetricDatum) for each metric an EMF document declares; [] for any other line."""
    if not line.startswith("{") or '"_aws"' not in line:
        return []
    try:
        document = json.loads(line)
        directive = document["_aws"]
        timestamp = datetime.fromtimestamp(directive["Timestamp"] / 1000, UTC)
        out = []
        for block in directive["CloudWatchMetrics"]:
            for dimension_set in block.get("Dimensions") or [[]]:
                dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set]
                for metric in block["Metrics"]:
                    raw = document[metric["Name"]]
                    values = raw if isinstance(raw, list) else [raw]
                    datum: dict[str, Any] = {
                        "MetricName": metric["Name"],
                        "Dimensions": dimensions,
                        "Timestamp": timestamp,
                        "Unit": metric.get("Unit", "None"),
                    }
                    if len(values) == 1:
                        datum["Value"] = float(values[0])
                    else:
                        datum["Values"] = [float(v) for v in values]
                    out.append((block["Namespace"], datum))
        return out
    except (ValueError, KeyError, TypeError):
        return []  # not valid EMF: CloudWatch would keep it as a plain log line


class MetricsSink(Periodic):
    """Buffers metric data and flushes it every ``flush_interval_s`` (and on ``flush``/``stop``)."""

    name = "metrics"

    def __init__(
        self,
        cloudwatch: Any,
        flush_interval_s: float = 1.0,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        super().__init__(flush_interval_s, log)
        self._cloudwatch = cloudwatch
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def tick(self) -> object:
        self.flush()
        return None

    def stop(self) -> None:
        super().stop()
        self.flush()

    def record_invocation(
        self, function: str, qualifier: str | None, version: str, duration_ms: float, error: bool
    ) -> None:
        now = datetime.now(UTC)
        alias = qualifier if qualifier and qualifier != "$LATEST" and not qualifier.isdigit() else None
        resource = f"{function}:{qualifier}" if qualifier else function
        dimension_sets = [[("FunctionName", function)], [("FunctionName", function), ("Resource", resource)]]
        if alias:
            dimension_sets.append([("FunctionName", function), ("Resource", resource), ("ExecutedVersion", version)])
        data = []
        for dimension_set in dimension_sets:
            dimensions = [{"Name": name, "Value": value} for name, value in dimension_set]
            for name, value, unit in (
                (names.INVOCATIONS, 1.0, "Count"),
                (names.ERRORS, 1.0 if error else 0.0, "Count"),
                ("Duration", duration_ms, "Milliseconds"),
            ):
                data.append(
                    (
                        names.LAMBDA_NAMESPACE,
                        {"MetricName": name, "Dimensions": dimensions, "Timestamp": now, "Value": value, "Unit": unit},
                    )
                )
        with self._lock:
            self._pending.extend(data)

    def record_line(self, line: str) -> None:
        found = emf_metrics(line)
        if found:
            with self._lock:
                self._pending.extend(found)

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            by_namespace: dict[str, list[dict[str, Any]]] = {}
            for namespace, datum in pending:
                by_namespace.setdefault(namespace, []).append(datum)
            for namespace, data in by_namespace.items():
                for start in range(0, len(data), _BATCH):
                    try:
                        self._cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + _BATCH])
                    except Exception as exc:  # metrics are best effort locally; say why they are missing
                        self._log(f"[metrics] put_metric_data {namespace} failed: {type(exc).__name__}: {exc}")

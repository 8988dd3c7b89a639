"""The AWS side of a rollout: the inference function's alias, its metrics and alarms, the paused task.

Injected boto3 clients in; ``ClientError`` codes mapped to domain errors (``TransientError`` is what
the state machine retries).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml import metric_names as names
from loopml.adapters.aws import error_code, translate
from loopml.errors import NotFound
from loopml.retrain.errors import DeploymentFailed
from loopml.retrain.models import CanaryPolicy, VersionMetrics

LAMBDA_NAMESPACE = names.LAMBDA_NAMESPACE
CANARY_ALARMS = ("degraded", "latency", "errors")
TASK_GONE = frozenset({"TaskDoesNotExist", "InvalidToken", "TaskTimedOut"})


class InferenceAlias:
    """The inference function and its alias: publish a version pinned to a model, route traffic."""

    def __init__(
        self,
        client: Any,
        function: str,
        alias: str,
        sleep: Callable[[float], None] = time.sleep,
        max_wait_s: float = 120.0,
    ) -> None:
        self._lambda = client
        self.function = function
        self.alias = alias
        self._sleep = sleep
        self._max_wait_s = max_wait_s

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._lambda, operation)(FunctionName=self.function, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"lambda {operation} {self.function}") from exc

    def routing(self) -> tuple[str, dict[str, float]]:
        """The alias's primary version and its additional version weights."""
        alias = self._call("get_alias", Name=self.alias)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return str(alias["FunctionVersion"]), {str(k): float(v) for k, v in weights.items()}

    def environment(self, qualifier: str = "$LATEST") -> dict[str, str]:
        config = self._call("get_function_configuration", Qualifier=qualifier)
        return dict((config.get("Environment") or {}).get("Variables") or {})

    def publish(self, variables: dict[str, str], description: str) -> str:
        """Set environment variables on $LATEST, wait for the update, publish; returns the version."""
        env = {**self.environment(), **variables}
        self._call("update_function_configuration", Environment={"Variables": env})
        waited = 0.0
        while True:
            config = self._call("get_function_configuration")
            status = config.get("LastUpdateStatus") or "Successful"
            if status == "Successful":
                break
            if status == "Failed":
                raise DeploymentFailed(
                    f"{self.function}: configuration update failed: {config.get('LastUpdateStatusReason')}"
                )
            if waited >= self._max_wait_s:
                raise DeploymentFailed(f"{self.function}: still {status} after {self._max_wait_s:.0f} s")
            self._sleep(1.0)
            waited += 1.0
        return str(self._call("publish_version", Description=description[:256])["Version"])

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
        """All traffic to ``primary``, or ``weight`` of it (0-1) to ``canary``."""
        weights = {canary: round(weight, 4)} if canary else {}
        self._call(
            "update_alias",
            Name=self.alias,
            FunctionVersion=primary,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )


class ServingMetrics:
    """The inference function's CloudWatch metrics per model version, and the canary's alarms."""

    def __init__(self, client: Any, namespace: str, service: str, function: str, alias: str) -> None:
        self._cw = client
        self.namespace = namespace
        self.service = service
        self.function = function
        self.alias = alias

    def _model_dims(self, model: str, version: int) -> list[dict[str, str]]:
        return [
            {"Name": names.MODEL, "Value": model},
            {"Name": names.MODEL_VERSION, "Value": str(version)},
            {"Name": names.SERVICE, "Value": self.service},
        ]

    def _lambda_dims(self, lambda_version: str) -> list[dict[str, str]]:
        return [
            {"Name": "FunctionName", "Value": self.function},
            {"Name": "Resource", "Value": f"{self.function}:{self.alias}"},
            {"Name": "ExecutedVersion", "Value": lambda_version},
        ]

    def _points(
        self,
        namespace: str,
        name: str,
        dims: list[dict[str, str]],
        start: datetime,
        end: datetime,
        extended: str | None = None,
    ) -> list[dict[str, Any]]:
        start, end = start - timedelta(minutes=1), end + timedelta(minutes=1)
        period = max(60, math.ceil((end - start).total_seconds() / 60) * 60)
        request: dict[str, Any] = {
            "Namespace": namespace,
            "MetricName": name,
            "Dimensions": dims,
            "StartTime": start,
            "EndTime": end,
            "Period": period,
        }
        if extended:
            request["ExtendedStatistics"] = [extended]
        else:
            request["Statistics"] = ["Sum", "SampleCount", "Maximum"]
        try:
            points: list[dict[str, Any]] = self._cw.get_metric_statistics(**request).get("Datapoints", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"cloudwatch {namespace}/{name}") from exc
        return points

    def summary(self, model: str, version: int, lambda_version: str, start: datetime, end: datetime) -> VersionMetrics:
        dims = self._model_dims(model, version)

        def total(namespace: str, name: str, d: list[dict[str, str]]) -> float:
            return float(sum(p.get("Sum", 0.0) for p in self._points(namespace, name, d, start, end)))

        p99_points = self._points(self.namespace, names.LATENCY, dims, start, end, extended="p99")
        p99 = [p["ExtendedStatistics"]["p99"] for p in p99_points if "p99" in p.get("ExtendedStatistics", {})]
        if not p99:  # no percentiles (CloudWatch emulators): the maximum is an upper bound
            p99 = [p["Maximum"] for p in self._points(self.namespace, names.LATENCY, dims, start, end)]
        confidence = self._points(self.namespace, names.CONFIDENCE, dims, start, end)
        samples = sum(p.get("SampleCount", 0.0) for p in confidence)
        lambda_dims = self._lambda_dims(lambda_version)
        return VersionMetrics(
            predictions=total(self.namespace, names.PREDICTIONS, dims),
            degraded=total(self.namespace, names.DEGRADED, dims),
            invocations=total(LAMBDA_NAMESPACE, names.INVOCATIONS, lambda_dims),
            errors=total(LAMBDA_NAMESPACE, names.ERRORS, lambda_dims),
            latency_p99_ms=max(p99) if p99 else None,
            mean_confidence=sum(p.get("Sum", 0.0) for p in confidence) / samples if samples else None,
        )

    def alarm_names(self, model: str, version: int) -> list[str]:
        """The canary alarms of one model version, in the order ``create_canary_alarms`` makes them."""
        return [f"{self.function}-canary-{model}-v{version}-{kind}" for kind in CANARY_ALARMS]

    def create_canary_alarms(self, model: str, version: int, lambda_version: str, policy: CanaryPolicy) -> list[str]:
        degraded, latency, errors = self.alarm_names(model, version)
        common = {"Period": 60, "EvaluationPeriods": 1, "TreatMissingData": "notBreaching"}
        alarms: list[dict[str, Any]] = [
            {
                "AlarmName": degraded,
                "AlarmDescription": f"{model} v{version} canary served degraded answers",
                "Namespace": self.namespace,
                "MetricName": names.DEGRADED,
                "Dimensions": self._model_dims(model, version),
                "Statistic": "Sum",
                "Threshold": 0.0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
            {
                "AlarmName": latency,
                "AlarmDescription": f"{model} v{version} canary p99 latency above {policy.latency_alarm_ms} ms",
                "Namespace": self.namespace,
                "MetricName": names.LATENCY,
                "Dimensions": self._model_dims(model, version),
                "ExtendedStatistic": "p99",
                "Threshold": policy.latency_alarm_ms,
                "ComparisonOperator": "GreaterThanThreshold",
            },
            {
                "AlarmName": errors,
                "AlarmDescription": f"{model} v{version} canary (Lambda version {lambda_version}) raised errors",
                "Namespace": LAMBDA_NAMESPACE,
                "MetricName": names.ERRORS,
                "Dimensions": self._lambda_dims(lambda_version),
                "Statistic": "Sum",
                "Threshold": 0.0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
        ]
        for alarm in alarms:
            try:
                self._cw.put_metric_alarm(**alarm, **common)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, f"cloudwatch alarm {alarm['AlarmName']}") from exc
        return [a["AlarmName"] for a in alarms]

    def firing(self, names: Sequence[str]) -> list[str]:
        if not names:
            return []
        try:
            found = self._cw.describe_alarms(AlarmNames=list(names)).get("MetricAlarms", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "cloudwatch describe_alarms") from exc
        return sorted(a["AlarmName"] for a in found if a.get("StateValue") == "ALARM")

    def delete_alarms(self, names: Sequence[str]) -> None:
        if names:
            try:
                self._cw.delete_alarms(AlarmNames=list(names))
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "cloudwatch delete_alarms") from exc


class StepFunctionsResponder:
    """Answers a ``waitForTaskToken`` task."""

    def __init__(self, client: Any) -> None:
        self._sfn = client

    def _send(self, operation: str, **kwargs: Any) -> None:
        try:
            getattr(self._sfn, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in TASK_GONE:
                raise NotFound(f"task token: {error_code(exc)}") from exc
            raise translate(exc, f"states {operation}") from exc

    def succeed(self, token: str, output: dict[str, Any]) -> None:
        self._send("send_task_success", taskToken=token, output=json.dumps(output))

    def fail(self, token: str, error: str, cause: str) -> None:
        self._send("send_task_failure", taskToken=token, error=error, cause=cause[:32768])


@dataclass(frozen=True)
class Lane:
    """One model's inference function as the workflow drives it: its alias ``live`` and its metrics."""

    alias: InferenceAlias
    metrics: ServingMetrics

"""Local evaluation of CloudWatch metric alarms, which moto stores but never evaluates.

Every ``interval_s`` each metric alarm (not metric-math or composite ones) is evaluated as CloudWatch
does: the alarm's statistic over its last ``EvaluationPeriods`` periods, ``DatapointsToAlarm`` of them
breaching -> ALARM, ``TreatMissingData`` (missing, notBreaching, breaching, ignore) for periods without
data; the new state is written with ``set_alarm_state`` so ``describe_alarms`` (state machines, canary
checks) sees it. Alarm actions are not fired. Extended statistics (p99) are not supported by moto.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml_dev.local.periodic import Periodic

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def evaluate(alarm: dict[str, Any], datapoints: list[dict[str, Any]], now: datetime) -> tuple[str, str] | None:
    """New (state, reason) for ``alarm`` given its datapoints, or None to keep the current state."""
    statistic = alarm.get("Statistic")
    compare = _COMPARE.get(alarm.get("ComparisonOperator", ""))
    if statistic is None or compare is None:
        return None
    period = int(alarm["Period"])
    periods = int(alarm["EvaluationPeriods"])
    needed = int(alarm.get("DatapointsToAlarm") or periods)
    threshold = float(alarm["Threshold"])
    treat_missing = alarm.get("TreatMissingData") or "missing"
    start = now - timedelta(seconds=period * periods)
    buckets: dict[int, float] = {}
    for point in datapoints:
        index = int((point["Timestamp"] - start).total_seconds() // period)
        if 0 <= index < periods:
            buckets[index] = float(point[statistic])
    breaching = sum(1 for value in buckets.values() if compare(value, threshold))
    missing = periods - len(buckets)
    if treat_missing == "breaching":
        breaching += missing
    if not buckets and treat_missing in ("missing", "ignore"):
        return None if treat_missing == "ignore" else ("INSUFFICIENT_DATA", "no datapoints in the evaluation range")
    if breaching >= needed:
        return "ALARM", f"{breaching} of the last {periods} datapoints breached {threshold} (local evaluation)"
    return "OK", f"{breaching} of the last {periods} datapoints breached {threshold} (local evaluation)"


class AlarmEvaluator(Periodic):
    name = "alarm"

    def __init__(
        self, cloudwatch: Any, interval_s: float = 10.0, log: Callable[[str], None] = lambda message: None
    ) -> None:
        super().__init__(interval_s, log)
        self._cloudwatch = cloudwatch

    def tick(self) -> object:
        return self.evaluate_now()

    def evaluate_now(self) -> dict[str, str]:
        """Evaluates every metric alarm once; returns alarm name -> state after evaluation."""
        # moto truncates EndTime to the second and excludes it: round up so this second's data counts.
        now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        states = {}
        for page in self._cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                states[alarm["AlarmName"]] = self._evaluate_one(alarm, now)
        return states

    def _evaluate_one(self, alarm: dict[str, Any], now: datetime) -> str:
        current: str = alarm.get("StateValue", "INSUFFICIENT_DATA")
        if not alarm.get("MetricName") or not alarm.get("Statistic"):
            return current
        period = int(alarm["Period"])
        response = self._cloudwatch.get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions", []),
            StartTime=now - timedelta(seconds=period * int(alarm["EvaluationPeriods"])),
            EndTime=now,
            Period=period,
            Statistics=[alarm["Statistic"]],
        )
        decision = evaluate(alarm, response.get("Datapoints", []), now)
        if decision is None or decision[0] == current:
            return current
        state, reason = decision
        self._cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason)
        self._log(f"[alarm] {alarm['AlarmName']}: {current} -> {state} ({reason})")
        return state

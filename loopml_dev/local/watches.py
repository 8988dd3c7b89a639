"""Execution status changes, delivered as EventBridge delivers them on AWS (moto emits none).

A declared ``ExecutionWatch`` on a function asks for the "Step Functions Execution Status Change"
event of every execution of a state machine that ends in one of the watched statuses. This watcher
polls moto's executions once a second and invokes the function's alias once per ended execution.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loopml.topology import Topology
from loopml_dev.local.periodic import Periodic
from loopml_dev.local.runtime import InvokeResult
from loopml_dev.local.schedules import eventbridge_event


def status_change_event(execution: dict[str, Any], region: str, account_id: str) -> dict[str, Any]:
    """The event EventBridge sends for an execution described by ``describe_execution``."""

    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": millis(execution.get("startDate")),
        "stopDate": millis(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
    }
    resources = [execution["executionArn"]]
    return eventbridge_event(
        "Step Functions Execution Status Change", "aws.states", region, account_id, resources, detail
    )


class ExecutionWatcher(Periodic):
    name = "watch"

    def __init__(
        self,
        sfn: Any,
        topology: Topology,
        state_machine_arns: dict[str, str],
        invoke: Callable[[str, bytes], InvokeResult],
        region: str,
        account_id: str,
        interval_s: float = 1.0,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        super().__init__(interval_s, log)
        self._sfn = sfn
        self._watches = [
            (spec.name, state_machine_arns[w.state_machine], w.statuses)
            for spec in topology.functions
            for w in spec.execution_watches
            if w.state_machine in state_machine_arns
        ]
        self._invoke = invoke
        self._region, self._account = region, account_id
        self._delivered: set[tuple[str, str]] = set()

    def poll(self) -> int:
        """Deliver every newly ended execution once; returns how many were delivered."""
        delivered = 0
        for function, machine, statuses in self._watches:
            for status in statuses:
                pages = self._sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=machine, statusFilter=status
                )
                for execution in (e for page in pages for e in page.get("executions", [])):
                    key = (function, execution["executionArn"])
                    if key in self._delivered:
                        continue
                    self._delivered.add(key)
                    described = self._sfn.describe_execution(executionArn=execution["executionArn"])
                    event = status_change_event(described, self._region, self._account)
                    result = self._invoke(function, json.dumps(event).encode())
                    self._log(f"[watch] {execution['name']} {status} -> {function}: {result.payload[:200]!r}")
                    delivered += 1
        return delivered

    def wanted(self) -> bool:
        return bool(self._watches)

    def tick(self) -> object:
        return self.poll()

"""EventBridge schedules (``spec.schedules``), fired locally since moto never fires rules.

An enabled schedule fires every ``rate_minutes`` (the first time one period after start, as a new rate
rule does) with an asynchronous-style invoke of the function's alias. The payload is the schedule's
``input`` when it declares one (a constant target input, as CDK's ``RuleTargetInput.fromObject``
sends), else EventBridge's "Scheduled Event". ``trigger`` fires one now, enabled or not, and returns
the invocation result (tests, demos, ``loopml local`` commands).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopml.topology import Schedule, Topology
from loopml_dev.local.runtime import InvokeResult


def eventbridge_event(
    detail_type: str, source: str, region: str, account_id: str, resources: list[str], detail: dict[str, Any]
) -> dict[str, Any]:
    """The envelope EventBridge puts around every event it delivers to a target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def scheduled_event(rule_name: str, region: str, account_id: str) -> dict[str, Any]:
    rule = f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"
    return eventbridge_event("Scheduled Event", "aws.events", region, account_id, [rule], {})


@dataclass(frozen=True)
class _Entry:
    function: str
    schedule: Schedule


class Scheduler:
    def __init__(
        self,
        topology: Topology,
        invoke: Callable[[str, bytes], InvokeResult],
        rule_name: Callable[[str], str],
        region: str,
        account_id: str,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.entries = [_Entry(spec.name, s) for spec in topology.functions for s in spec.schedules]
        self.invoke = invoke
        self.rule_name = rule_name
        self.region = region
        self.account_id = account_id
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def payload(self, entry: _Entry) -> bytes:
        if entry.schedule.input:
            return json.dumps(entry.schedule.input).encode()
        event = scheduled_event(self.rule_name(entry.schedule.name), self.region, self.account_id)
        return json.dumps(event).encode()

    def trigger(self, name: str, function: str | None = None) -> InvokeResult:
        """Fires schedule ``name`` now and waits for the function's answer."""
        for entry in self.entries:
            if entry.schedule.name == name and function in (None, entry.function):
                return self.invoke(entry.function, self.payload(entry))
        known = ", ".join(f"{e.function}/{e.schedule.name}" for e in self.entries) or "none"
        raise KeyError(f"no schedule named {name!r} (declared: {known})")

    def start(self) -> None:
        if any(e.schedule.enabled for e in self.entries):
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        started = time.monotonic()
        next_run = {
            index: started + entry.schedule.rate_minutes * 60
            for index, entry in enumerate(self.entries)
            if entry.schedule.enabled
        }
        while not self._stop.is_set():
            now = time.monotonic()
            for index, due in next_run.items():
                entry = self.entries[index]
                if now >= due:
                    next_run[index] = due + entry.schedule.rate_minutes * 60
                    try:
                        result = self.invoke(entry.function, self.payload(entry))
                        if result.function_error:
                            self._log(
                                f"[schedule:{entry.schedule.name}] {entry.function} failed: {result.payload[:300]!r}"
                            )
                    except Exception as exc:
                        self._log(f"[schedule:{entry.schedule.name}] could not invoke {entry.function}: {exc}")
            self._stop.wait(max(0.05, min(next_run.values(), default=now + 1) - time.monotonic()))

"""Fault injection for drills and tests: make a step fail a given number of times per execution.

``FAULT_INJECTION="train:TransientError:1,deploy:TransientError:2"`` makes the first attempt of
``train`` (and the first two of ``deploy``) in every execution raise that loopml error, so Retry and
Catch can be exercised against the real state machine. Each injected failure is claimed with a
conditional write, so retries landing on other execution environments see the same count. Off
(empty) by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import loopml.errors as domain_errors
import loopml.retrain.errors as retrain_errors
from loopml import keys
from loopml.errors import ConfigurationError, LoopmlError, VersionConflict
from loopml.store import ObjectStore


@dataclass(frozen=True)
class Fault:
    step: str
    error: type[LoopmlError]
    times: int


def parse_faults(spec: str) -> list[Fault]:
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ConfigurationError(f"FAULT_INJECTION item {item!r}: expected step:ErrorName:times")
        error = getattr(retrain_errors, parts[1], None) or getattr(domain_errors, parts[1], None)
        if not (isinstance(error, type) and issubclass(error, LoopmlError)):
            raise ConfigurationError(f"FAULT_INJECTION item {item!r}: {parts[1]} is not a loopml error")
        faults.append(Fault(parts[0], error, int(parts[2])))
    return faults


class FaultInjector:
    def __init__(self, store: ObjectStore, spec: str) -> None:
        self._store = store
        self._faults = parse_faults(spec)

    def maybe_fail(self, step: str, model: str, run_id: str) -> None:
        for fault in self._faults:
            if fault.step != step:
                continue
            for attempt in range(fault.times):
                key = f"{keys.run_prefix(model, run_id)}faults/{step}-{attempt}"
                try:
                    self._store.put(key, b"injected", if_none_match=True)
                except VersionConflict:
                    continue
                raise fault.error(f"injected {fault.error.__name__} in step {step} (attempt {attempt + 1})")

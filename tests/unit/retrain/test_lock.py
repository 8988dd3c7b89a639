from __future__ import annotations

from datetime import timedelta

import pytest

from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.lock import RetrainLock
from loopml_dev.memory import MemoryObjectStore
from tests.unit.retrain.conftest import Clock


def test_one_holder_at_a_time() -> None:
    store, clock = MemoryObjectStore(), Clock()
    lock = RetrainLock(store, clock)
    lock.acquire("m", "run-a", timedelta(minutes=5))
    assert lock.acquire("m", "run-a", timedelta(minutes=5)).holder == "run-a"  # a retried step
    with pytest.raises(RetrainingInProgress, match="run-a"):
        lock.acquire("m", "run-b", timedelta(minutes=5))
    assert not lock.release("m", "run-b")
    assert lock.release("m", "run-a")
    assert lock.acquire("m", "run-b", timedelta(minutes=5)).holder == "run-b"
    lock.acquire("other", "run-c", timedelta(minutes=5))  # per model


def test_expired_lock_is_taken_over() -> None:
    store, clock = MemoryObjectStore(), Clock()
    lock = RetrainLock(store, clock)
    lock.acquire("m", "dead-run", timedelta(minutes=5))
    clock.now += timedelta(hours=3)
    assert lock.acquire("m", "run-b", timedelta(minutes=5)).holder == "run-b"
    assert lock.current("m").holder == "run-b"  # type: ignore[union-attr]

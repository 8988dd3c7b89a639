"""At most one retraining per model: a lock object created with a conditional write.

``retrain/locks/<model>.json`` names the execution holding it and when it expires (the run's longest
possible duration plus a margin). A second execution finds it and stops with ``RetrainingInProgress``;
an expired lock (its holder died without cleaning up) is deleted and taken over, again conditionally,
so two late-comers cannot both win it. Only the holder releases it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from loopml import keys
from loopml.errors import NotFound, VersionConflict
from loopml.retrain.errors import RetrainingInProgress
from loopml.store import ObjectStore

MARGIN = timedelta(hours=2)


class LockRecord(BaseModel):
    model: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def lock_key(model: str) -> str:
    return keys.lock_key(model)


class RetrainLock:
    def __init__(self, store: ObjectStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._store = store
        self._clock = clock

    def current(self, model: str) -> LockRecord | None:
        try:
            return LockRecord.model_validate_json(self._store.get(lock_key(model)))
        except NotFound:
            return None

    def acquire(self, model: str, holder: str, longest_run: timedelta) -> LockRecord:
        """Take the lock for ``holder`` (again, if it already holds it: a retried step is not a rival)."""
        now = self._clock()
        record = LockRecord(model=model, holder=holder, acquired_at=now, expires_at=now + longest_run + MARGIN)
        for _ in range(2):
            try:
                self._store.put(lock_key(model), record.model_dump_json().encode(), if_none_match=True)
                return record
            except VersionConflict:
                held = self.current(model)
                if held is None:
                    continue  # released in between: try again
                if held.holder == holder:
                    return held
                if held.expires_at > now:
                    raise RetrainingInProgress(
                        f"model {model!r} is already being retrained by {held.holder} "
                        f"(since {held.acquired_at.isoformat()}, lock expires {held.expires_at.isoformat()})"
                    ) from None
                self._store.delete(lock_key(model))  # expired: its holder died without releasing it
        raise RetrainingInProgress(f"model {model!r}: another execution took the expired lock first")

    def release(self, model: str, holder: str) -> bool:
        held = self.current(model)
        if held is None or held.holder != holder:
            return False
        self._store.delete(lock_key(model))
        return True

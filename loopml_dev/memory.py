"""In memory, every port the library defines: the object store, the feedback tables, the executions.

The one in-memory implementation every unit test and the feedback benchmark use. It keeps S3's and
DynamoDB's semantics where loopml relies on them (conditional writes, sorted listings, idempotent
deletes), and has switches to attack them: ``fail_gets`` (an S3 outage) and ``hidden_prefix`` (a
listing that misses a racing writer's keys).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable
from typing import IO, Any

from loopml.errors import NotFound, TransientError, VersionConflict
from loopml.feedback.models import IndexEntry, ReviewItem, SubjectStatus


class MemoryObjectStore:
    """``loopml.store.ObjectStore`` in memory."""

    def __init__(self, bucket: str = "models") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str | None] = {}
        self.puts = 0
        self.aborted = 0
        self.fail_gets = False
        self.hidden_prefix: str | None = None
        self._lock = threading.Lock()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> bytes:
        if self.fail_gets:
            raise TransientError(f"{key}: SlowDown")
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(key) from None

    def open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.get(key))

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, content_type: str | None = None) -> None:
        with self._lock:
            if if_none_match and key in self.objects:
                raise VersionConflict(key)
            self.objects[key] = body
            self.content_types[key] = content_type
            self.puts += 1

    def sink(self, key: str, content_type: str) -> _MemorySink:
        return _MemorySink(self, key, content_type)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list_keys(self, prefix: str) -> list[str]:
        hidden = self.hidden_prefix
        return sorted(k for k in list(self.objects) if k.startswith(prefix) and not (hidden and k.startswith(hidden)))

    def json(self, key: str) -> Any:
        return json.loads(self.get(key))


class MemoryExecutions:
    """``loopml.retrain.trigger.RetrainStarter`` in memory: executions by name, with switches."""

    def __init__(self, running_names: list[str] | None = None, fail_with: Exception | None = None) -> None:
        self.running_names = list(running_names or [])
        self.fail_with = fail_with
        self.started: list[tuple[str, dict[str, Any]]] = []

    def start(self, name: str, payload: dict[str, Any]) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        if any(n == name for n, _ in self.started):
            raise VersionConflict(name)  # Step Functions refuses a second execution with one name
        self.started.append((name, payload))
        return f"arn:aws:states:us-east-1:123456789012:execution:retrain:{name}"

    def running(self, model: str) -> list[str]:
        return list(self.running_names)


class _MemorySink:
    def __init__(self, store: MemoryObjectStore, key: str, content_type: str) -> None:
        self._store, self._key, self._content_type = store, key, content_type
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def close(self) -> None:
        self._store.put(self._key, b"".join(self._parts), content_type=self._content_type)

    def abort(self) -> None:
        self._store.aborted += 1


class MemoryPredictionIndex:
    def __init__(self) -> None:
        self.entries: dict[str, IndexEntry] = {}

    def get_many(self, prediction_ids: Iterable[str]) -> dict[str, IndexEntry]:
        return {pid: self.entries[pid] for pid in set(prediction_ids) if pid in self.entries}

    def put_many(self, entries: Iterable[IndexEntry], ttl_s: int) -> None:
        for entry in entries:
            self.entries[entry.prediction_id] = entry

    def mark_erased(self, prediction_ids: Iterable[str]) -> None:
        for pid in prediction_ids:
            old = self.entries.get(pid)
            if old is not None:
                self.entries[pid] = IndexEntry(
                    prediction_id=pid,
                    model=old.model,
                    model_version=old.model_version,
                    timestamp="",
                    erased=True,
                )


class MemorySubjects:
    def __init__(self) -> None:
        self.items: dict[str, SubjectStatus] = {}

    def _item(self, subject_hash: str) -> SubjectStatus:
        return self.items.setdefault(subject_hash, SubjectStatus(subject_hash=subject_hash))

    def get_many(self, subject_hashes: Iterable[str]) -> dict[str, SubjectStatus]:
        return {h: self.items[h].model_copy(deep=True) for h in set(subject_hashes) if h in self.items}

    def opt_out(self, subject_hash: str) -> None:
        self._item(subject_hash).opted_out = True

    def erase(self, subject_hash: str, erased_at: str) -> None:
        self._item(subject_hash).erased_at = erased_at

    def add_objects(self, subject_hash: str, keys: Iterable[str]) -> None:
        item = self._item(subject_hash)
        item.objects = sorted(set(item.objects) | set(keys))

    def remove_objects(self, subject_hash: str, keys: Iterable[str]) -> None:
        item = self._item(subject_hash)
        item.objects = sorted(set(item.objects) - set(keys))


class MemoryReviewList:
    def __init__(self) -> None:
        self.items: dict[str, ReviewItem] = {}

    def put_many(self, items: Iterable[ReviewItem], ttl_s: int) -> None:
        for item in items:
            self.items.setdefault(item.prediction_id, item)

    def pending(self) -> list[ReviewItem]:
        return [i for i in self.items.values() if i.status == "pending"]

    def get(self, prediction_id: str) -> ReviewItem | None:
        return self.items.get(prediction_id)

    def mark_reviewed(self, prediction_id: str, label: str | int | float) -> None:
        item = self.items.get(prediction_id)
        if item is not None:
            self.items[prediction_id] = item.model_copy(update={"status": "reviewed", "label": label})

    def delete_many(self, prediction_ids: Iterable[str]) -> int:
        return sum(self.items.pop(pid, None) is not None for pid in set(prediction_ids))

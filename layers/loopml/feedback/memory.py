"""In-memory implementations of the feedback ports: for unit tests and the benchmark's processing figure."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from loopml.errors import NotFound, VersionConflict
from loopml.feedback.models import IndexEntry, ReviewItem, SubjectStatus


class MemoryDatasetStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(key) from None

    def put(self, key: str, body: bytes, *, if_none_match: bool = False) -> None:
        with self._lock:
            if if_none_match and key in self.objects:
                raise VersionConflict(key)
            self.objects[key] = body
            self.puts += 1

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in list(self.objects) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


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

    def mark_reviewed(self, prediction_id: str, label: str | int) -> None:
        item = self.items.get(prediction_id)
        if item is not None:
            self.items[prediction_id] = item.model_copy(update={"status": "reviewed", "label": label})

    def delete_many(self, prediction_ids: Iterable[str]) -> int:
        return sum(self.items.pop(pid, None) is not None for pid in set(prediction_ids))

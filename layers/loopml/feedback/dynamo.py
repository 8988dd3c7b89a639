"""DynamoDB adapters for the feedback ports: injected low-level client in, domain errors out.

Every table has a string partition key ``id`` and TTL attribute ``expiration`` (the topology's
``TableSpec`` defaults). Reads and writes are batched (100 keys per ``BatchGetItem``, 25 items per
``BatchWriteItem``), the batches of one call run concurrently, and unprocessed keys/items are retried
with a short backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import translate
from loopml.errors import TransientError, VersionConflict
from loopml.feedback.models import IndexEntry, ReviewItem, SubjectStatus

GET_BATCH = 100
WRITE_BATCH = 25
ATTEMPTS = 5
PARALLEL = 8  # concurrent batch calls per invocation (the botocore pool holds 10 connections)
T = TypeVar("T")
R = TypeVar("R")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_POOL: ThreadPoolExecutor | None = None


def _parallel(work: Callable[[T], R], chunks: list[T]) -> list[R]:
    """Runs the chunks concurrently (boto3 clients are thread-safe); the first error is raised."""
    global _POOL
    if len(chunks) <= 1:
        return [work(c) for c in chunks]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="dynamodb")
    return list(_POOL.map(work, chunks))


class _Table:
    def __init__(self, client: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self._db = client
        self.table = table
        self._clock = clock

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._db, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"dynamodb {self.table} {operation}") from exc

    def _get_many(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        chunks = list(_chunks(sorted(set(keys)), GET_BATCH))
        found: list[dict[str, Any]] = []
        for part in _parallel(self._get_chunk, chunks):
            found.extend(part)
        return found

    def _get_chunk(self, chunk: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": [{"id": {"S": k}} for k in chunk]}}
        for attempt in range(ATTEMPTS):
            response = self._call("batch_get_item", RequestItems=request)
            found.extend(response.get("Responses", {}).get(self.table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.05 * 2**attempt)
        raise TransientError(f"dynamodb {self.table}: keys still unprocessed after {ATTEMPTS} tries")

    def _write_many(self, requests: list[dict[str, Any]]) -> None:
        _parallel(self._write_chunk, list(_chunks(requests, WRITE_BATCH)))

    def _write_chunk(self, chunk: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table: chunk}
        for attempt in range(ATTEMPTS):
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(0.05 * 2**attempt)
        raise TransientError(f"dynamodb {self.table}: items still unprocessed after {ATTEMPTS} tries")

    def _expiration(self, ttl_s: int) -> dict[str, str]:
        return {"N": str(int(self._clock()) + ttl_s)}


class DynamoPredictionIndex(_Table):
    def get_many(self, prediction_ids: Iterable[str]) -> dict[str, IndexEntry]:
        entries = {}
        for item in self._get_many(prediction_ids):
            pid = item["id"]["S"]
            entries[pid] = IndexEntry(
                prediction_id=pid,
                model=item["model"]["S"],
                model_version=int(item["model_version"]["N"]),
                timestamp=item.get("timestamp", {}).get("S", ""),
                subject_hash=item.get("subject_hash", {}).get("S"),
                opted_out=item.get("opted_out", {}).get("BOOL", False),
                erased=item.get("erased", {}).get("BOOL", False),
            )
        return entries

    def put_many(self, entries: Iterable[IndexEntry], ttl_s: int) -> None:
        expiration = self._expiration(ttl_s)
        requests = []
        for e in entries:
            item: dict[str, Any] = {
                "id": {"S": e.prediction_id},
                "model": {"S": e.model},
                "model_version": {"N": str(e.model_version)},
                "timestamp": {"S": e.timestamp},
                "expiration": expiration,
            }
            if e.subject_hash:
                item["subject_hash"] = {"S": e.subject_hash}
            if e.opted_out:
                item["opted_out"] = {"BOOL": True}
            requests.append({"PutRequest": {"Item": item}})
        self._write_many(requests)

    def mark_erased(self, prediction_ids: Iterable[str]) -> None:
        """Keeps only what is needed to ignore later feedback: id, model, version, erased."""
        for pid in sorted(set(prediction_ids)):
            try:
                self._call(
                    "update_item",
                    TableName=self.table,
                    Key={"id": {"S": pid}},
                    UpdateExpression="SET erased = :t REMOVE subject_hash, #ts",
                    ConditionExpression="attribute_exists(id)",
                    ExpressionAttributeNames={"#ts": "timestamp"},
                    ExpressionAttributeValues={":t": {"BOOL": True}},
                )
            except VersionConflict:  # never indexed: nothing to mark
                continue


class DynamoSubjects(_Table):
    def get_many(self, subject_hashes: Iterable[str]) -> dict[str, SubjectStatus]:
        return {
            item["id"]["S"]: SubjectStatus(
                subject_hash=item["id"]["S"],
                opted_out=item.get("opted_out", {}).get("BOOL", False),
                erased_at=item.get("erased_at", {}).get("S"),
                objects=sorted(item.get("objects", {}).get("SS", [])),
            )
            for item in self._get_many(subject_hashes)
        }

    def _update(self, subject_hash: str, expression: str, values: dict[str, Any]) -> None:
        self._call(
            "update_item",
            TableName=self.table,
            Key={"id": {"S": subject_hash}},
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )

    def opt_out(self, subject_hash: str) -> None:
        self._update(subject_hash, "SET opted_out = :t", {":t": {"BOOL": True}})

    def erase(self, subject_hash: str, erased_at: str) -> None:
        self._update(subject_hash, "SET erased_at = :at", {":at": {"S": erased_at}})

    def add_objects(self, subject_hash: str, keys: Iterable[str]) -> None:
        values = sorted(set(keys))
        if values:
            self._update(subject_hash, "ADD objects :k", {":k": {"SS": values}})

    def remove_objects(self, subject_hash: str, keys: Iterable[str]) -> None:
        values = sorted(set(keys))
        if values:
            self._update(subject_hash, "DELETE objects :k", {":k": {"SS": values}})


class DynamoReviewList(_Table):
    """Items carry the review item as JSON plus ``status``/``uncertainty`` attributes for the scan."""

    def put_many(self, items: Iterable[ReviewItem], ttl_s: int) -> None:
        expiration = self._expiration(ttl_s)
        self._write_many(
            [
                {
                    "PutRequest": {
                        "Item": {
                            "id": {"S": i.prediction_id},
                            "status": {"S": i.status},
                            "uncertainty": {"N": repr(float(i.uncertainty))},
                            "item": {"S": i.model_dump_json()},
                            "expiration": expiration,
                        }
                    }
                }
                for i in items
            ]
        )

    @staticmethod
    def _item(raw: dict[str, Any]) -> ReviewItem:
        item = ReviewItem.model_validate_json(raw["item"]["S"])
        label = raw.get("label", {}).get("S")
        return item.model_copy(
            update={
                "status": raw["status"]["S"],
                "label": json.loads(label) if label is not None else None,
            }
        )

    def pending(self) -> list[ReviewItem]:
        items: list[ReviewItem] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#s = :p",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":p": {"S": "pending"}},
        }
        while True:
            page = self._call("scan", **kwargs)
            items.extend(self._item(raw) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get(self, prediction_id: str) -> ReviewItem | None:
        raw = self._call("get_item", TableName=self.table, Key={"id": {"S": prediction_id}}).get("Item")
        return self._item(raw) if raw else None

    def mark_reviewed(self, prediction_id: str, label: str | int | float) -> None:
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"id": {"S": prediction_id}},
                UpdateExpression="SET #s = :r, label = :l",
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":r": {"S": "reviewed"}, ":l": {"S": json.dumps(label)}},
            )
        except VersionConflict:  # not on the review list: a reviewer may label any prediction
            return

    def delete_many(self, prediction_ids: Iterable[str]) -> int:
        removed = 0
        for pid in sorted(set(prediction_ids)):
            old = self._call("delete_item", TableName=self.table, Key={"id": {"S": pid}}, ReturnValues="ALL_OLD")
            removed += "Attributes" in old
        return removed

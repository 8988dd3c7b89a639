"""What the local stack keeps across restarts: moto holds everything in memory, this saves it to disk.

- S3 objects (models, captured data, registry, history) go to ``state_dir/s3/<bucket>/<key>``; only
  objects whose ETag changed are copied again, so a periodic snapshot is cheap.
- DynamoDB items (prediction index, review list, subjects: the privacy promise lives there) go to
  ``state_dir/dynamodb/<table>.json``, every declared table, in DynamoDB's own JSON.
- Messages waiting in the queues go to ``state_dir/sqs/<queue>.json`` on stop (drained) and are sent
  again on the next start. Messages in flight at that moment are not saved.

Every file is written to a temporary name and renamed, so a crash mid-write leaves the previous copy.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

STATE_FOLDERS = ("s3", "sqs", "dynamodb")


def encode_key(key: str) -> str:
    """S3 key -> relative file path; reversible, and never ``..``, ``.`` or an empty segment."""
    segments = []
    for segment in key.split("/"):
        encoded = quote(segment, safe=" !$&'()+,;=@[]~-_")
        segments.append({"": "%%", ".": "%2E", "..": "%2E%2E"}.get(encoded, encoded))
    return "/".join(segments)


def decode_key(relative: str) -> str:
    return "/".join("" if segment == "%%" else unquote(segment) for segment in relative.split("/"))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp-snapshot")
    tmp.write_bytes(data)
    tmp.replace(path)


def _to_json(value: Any) -> Any:
    """DynamoDB attribute values with binary parts as base64 (``{"B": ...}``, ``{"BS": [...]}``)."""
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    return value


def _from_json(value: Any, binary: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _from_json(v, binary=k in ("B", "BS")) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v, binary) for v in value]
    if binary and isinstance(value, str):
        return base64.b64decode(value)
    return value


class StatePersistence:
    """Snapshots and restores one moto's S3 buckets, declared tables and queues under ``state_dir``."""

    def __init__(self, state_dir: Path, clients: Callable[[str], Any]) -> None:
        self.state_dir = state_dir
        self._client = clients  # service name -> boto3 client talking to moto directly
        self._lock = threading.Lock()
        self._manifest: dict[str, dict[str, dict[str, Any]]] = {}

    # --- S3 -------------------------------------------------------------------------------------
    @property
    def _s3_dir(self) -> Path:
        return self.state_dir / "s3"

    def _manifest_path(self) -> Path:
        return self._s3_dir / "manifest.json"

    def _load_manifest(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            loaded: dict[str, dict[str, dict[str, Any]]] = json.loads(self._manifest_path().read_text())
            return loaded
        except (OSError, ValueError):
            return {}

    def snapshot(self, tables: Iterable[str] = ()) -> int:
        """Copies new and changed S3 objects and every table's items; returns how many objects were written."""
        with self._lock:
            written = self._snapshot_s3()
            for table in tables:
                self._snapshot_table(table)
        return written

    def _snapshot_s3(self) -> int:
        s3 = self._client("s3")
        written = 0
        manifest = self._manifest or self._load_manifest()
        current: dict[str, dict[str, dict[str, Any]]] = {}
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            saved = manifest.get(name, {})
            objects: dict[str, dict[str, Any]] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    key, etag = item["Key"], item["ETag"]
                    path = self._s3_dir / name / encode_key(key)
                    if saved.get(key, {}).get("etag") == etag and path.exists():
                        objects[key] = saved[key]
                        continue
                    obj = s3.get_object(Bucket=name, Key=key)
                    _write_atomic(path, obj["Body"].read())
                    objects[key] = {
                        "etag": etag,
                        "content_type": obj.get("ContentType"),
                        "metadata": obj.get("Metadata", {}),
                    }
                    written += 1
            for key in set(saved) - set(objects):
                (self._s3_dir / name / encode_key(key)).unlink(missing_ok=True)
            current[name] = objects
        _write_atomic(self._manifest_path(), json.dumps(current, indent=1, sort_keys=True).encode())
        self._manifest = current
        return written

    def restore_s3(self) -> int:
        s3 = self._client("s3")
        manifest = self._load_manifest()
        restored = 0
        for bucket, objects in manifest.items():
            try:
                s3.create_bucket(Bucket=bucket)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            for key, info in objects.items():
                path = self._s3_dir / bucket / encode_key(key)
                if not path.exists():
                    continue
                extra: dict[str, Any] = {"Metadata": info.get("metadata") or {}}
                if info.get("content_type"):
                    extra["ContentType"] = info["content_type"]
                response = s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **extra)
                info["etag"] = response["ETag"]
                restored += 1
        self._manifest = manifest
        return restored

    # --- DynamoDB -------------------------------------------------------------------------------
    def _table_path(self, table: str) -> Path:
        return self.state_dir / "dynamodb" / f"{table}.json"

    def _snapshot_table(self, table: str) -> None:
        items: list[dict[str, Any]] = []
        for page in self._client("dynamodb").get_paginator("scan").paginate(TableName=table):
            items.extend(_to_json(page.get("Items", [])))
        _write_atomic(self._table_path(table), json.dumps(items, separators=(",", ":")).encode())

    def restore_tables(self, tables: Iterable[str]) -> int:
        """Puts saved items back into the (freshly created, empty) tables; returns how many."""
        dynamodb = self._client("dynamodb")
        restored = 0
        for table in tables:
            path = self._table_path(table)
            if not path.exists():
                continue
            items = _from_json(json.loads(path.read_text()))
            for start in range(0, len(items), 25):
                requests: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
                while requests:  # BatchWriteItem may hand back what it did not write
                    requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            restored += len(items)
        return restored

    # --- SQS ------------------------------------------------------------------------------------
    def save_messages(self, queue_urls: dict[str, str]) -> None:
        """Drains each queue (main queues first, then DLQs) into ``state_dir/sqs``."""
        sqs = self._client("sqs")
        folder = self.state_dir / "sqs"
        for logical in sorted(queue_urls, key=lambda n: n.endswith("-dlq")):
            saved = []
            while True:
                messages = sqs.receive_message(
                    QueueUrl=queue_urls[logical],
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=600,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    entry: dict[str, Any] = {"MessageBody": message["Body"]}
                    attributes = {k: v for k, v in message.get("MessageAttributes", {}).items() if "StringValue" in v}
                    if attributes:
                        entry["MessageAttributes"] = attributes
                    saved.append(entry)
            path = folder / f"{logical}.json"
            if saved:
                _write_atomic(path, json.dumps(saved).encode())
            else:
                path.unlink(missing_ok=True)

    def restore_messages(self, queue_urls: dict[str, str]) -> int:
        folder = self.state_dir / "sqs"
        if not folder.is_dir():
            return 0
        sqs = self._client("sqs")
        restored = 0
        for path in folder.glob("*.json"):
            url = queue_urls.get(path.stem)
            if url is None:
                continue
            messages = json.loads(path.read_text())
            for start in range(0, len(messages), 10):
                chunk = messages[start : start + 10]
                sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), **m} for i, m in enumerate(chunk)])
                restored += len(chunk)
            path.unlink()
        return restored

"""S3 as the object store (``loopml.store.ObjectStore``): the registry, the dataset, reports, uploads, batch files.

Large objects are read as streams and written as multipart uploads. A multipart upload publishes
nothing until it completes, so a failed batch run leaves the previous output (if any) in place and the
retry rewrites the same key. Outputs below one part are a single PUT.
"""

from __future__ import annotations

import contextlib
import io
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import translate
from loopml.errors import LoopmlError

PART_BYTES = 8 * 1024 * 1024  # S3's minimum is 5 MiB for every part but the last


class _Raw(io.RawIOBase):
    """A botocore StreamingBody as a raw stream, so io.BufferedReader/TextIOWrapper can wrap it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class MultipartSink:
    def __init__(self, client: Any, bucket: str, key: str, content_type: str, part_bytes: int = PART_BYTES) -> None:
        self._s3 = client
        self.bucket, self.key, self.content_type = bucket, key, content_type
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._part_bytes:
            self._flush()

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3, method)(Bucket=self.bucket, Key=self.key, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"s3://{self.bucket}/{self.key} {method}") from exc

    def _flush(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._call("create_multipart_upload", ContentType=self.content_type)["UploadId"]
        number = len(self._parts) + 1
        etag = self._call("upload_part", UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer))["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self._buffer = bytearray()

    def close(self) -> None:
        if self._upload_id is None:
            self._call("put_object", Body=bytes(self._buffer), ContentType=self.content_type)
            return
        if self._buffer:
            self._flush()
        self._call("complete_multipart_upload", UploadId=self._upload_id, MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        if self._upload_id is not None:
            # best effort: the bucket's lifecycle rule aborts what is left after 7 days
            with contextlib.suppress(LoopmlError):
                self._call("abort_multipart_upload", UploadId=self._upload_id)
            self._upload_id = None


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.uri(key)) from exc
        return body

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, content_type: str | None = None) -> None:
        extra: dict[str, str] = {"IfNoneMatch": "*"} if if_none_match else {}
        if content_type:
            extra["ContentType"] = content_type
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.uri(key)) from exc

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.uri(key)) from exc

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.uri(prefix)) from exc
        return keys

    def open(self, key: str) -> IO[bytes]:
        try:
            stream = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.uri(key)) from exc
        return io.BufferedReader(_Raw(stream), buffer_size=1024 * 1024)

    def sink(self, key: str, content_type: str) -> MultipartSink:
        return MultipartSink(self._s3, self.bucket, key, content_type)

"""S3 as the registry's and the datasets' object store."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import translate


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

"""S3 object-created notifications as they arrive through SQS: one message body, zero or more uploads.

S3 sends an ``s3:TestEvent`` message when a notification is configured (ignored here) and URL-encodes
object keys (``incoming/default/my+file%281%29.csv``), so keys are decoded with ``unquote_plus``.
Used by the starter (``incoming/``) and batch scoring (``batch/input/``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopml.errors import InvalidInput


class S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    key: str
    size: int = 0
    etag: str | None = Field(default=None, alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")


class S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: S3Bucket
    object: S3Object


class S3Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event_name: str = Field(alias="eventName")
    event_time: str = Field(default="", alias="eventTime")
    s3: S3Entity


class S3Notification(BaseModel):
    """The body of one SQS message sent by S3: ``Records``, or the test event ``Event: s3:TestEvent``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    records: list[S3Record] = Field(default_factory=list, alias="Records")
    event: str | None = Field(default=None, alias="Event")


class Upload(BaseModel, frozen=True):
    """One created object, key decoded."""

    bucket: str
    key: str
    size: int
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_notification(body: str | dict[str, Any]) -> list[Upload]:
    """Created objects in one message; ``[]`` for the test event and for folder markers (``key/``)."""
    try:
        raw = json.loads(body) if isinstance(body, str) else body
        message = S3Notification.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"not an S3 event notification: {exc}") from None
    if message.event == "s3:TestEvent":
        return []
    uploads = []
    for record in message.records:
        if not record.event_name.startswith("ObjectCreated:"):
            continue
        key = unquote_plus(record.s3.object.key)
        if key.endswith("/"):
            continue
        uploads.append(
            Upload(bucket=record.s3.bucket.name, key=key, size=record.s3.object.size, etag=record.s3.object.etag)
        )
    return uploads

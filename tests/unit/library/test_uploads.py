"""S3 notifications as SQS message bodies: test events, encoded keys, other event types."""

from __future__ import annotations

import json

import pytest

from loopml.errors import InvalidInput
from loopml.uploads import parse_notification


def _record(key: str, event: str = "ObjectCreated:Put", size: int = 10) -> dict[str, object]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {"bucket": {"name": "b", "arn": "arn:aws:s3:::b"}, "object": {"key": key, "size": size, "eTag": "e"}},
    }


def test_keys_are_decoded_and_only_created_objects_count() -> None:
    body = json.dumps(
        {
            "Records": [
                _record("incoming/default/my+file%281%29.csv"),
                _record("incoming/default/gone.csv", "ObjectRemoved:Delete"),
                _record("incoming/default/", size=0),
            ]
        }
    )
    (upload,) = parse_notification(body)
    assert upload.key == "incoming/default/my file(1).csv"
    assert upload.uri == "s3://b/incoming/default/my file(1).csv"
    assert upload.size == 10 and upload.etag == "e"


def test_the_test_event_is_no_upload() -> None:
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T18:00:00.000Z", "Bucket": "b"}
    assert parse_notification(json.dumps(body)) == []


@pytest.mark.parametrize("body", ["not json", json.dumps({"Records": [{"eventName": "x"}]})])
def test_garbage_is_invalid_input(body: str) -> None:
    with pytest.raises(InvalidInput, match="not an S3 event notification"):
        parse_notification(body)

"""Which trigger sent an event, and the one clear error for an event a function does not serve.

Each handler accepts a few event shapes (API Gateway proxy events, SQS batches, EventBridge events,
Step Functions' task input). Anything else fails with ``UnsupportedEvent`` naming the function, what it
serves and the keys it got, instead of a ``KeyError`` deep inside a parser.
"""

from __future__ import annotations

from typing import Any

from loopml.errors import UnsupportedEvent


def is_api(event: Any) -> bool:
    """An API Gateway REST (v1) proxy event."""
    return isinstance(event, dict) and isinstance(event.get("httpMethod"), str) and "requestContext" in event


def is_sqs(event: Any) -> bool:
    """An SQS batch from an event source mapping (every record from SQS, with an id and a body)."""
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(
            isinstance(r, dict) and r.get("eventSource") == "aws:sqs" and "messageId" in r and "body" in r
            for r in records
        )
    )


def is_eventbridge(event: Any, source: str | None = None) -> bool:
    """An EventBridge event (a schedule's ``Scheduled Event``, a service's status change)."""
    if not isinstance(event, dict) or "detail-type" not in event or "source" not in event:
        return False
    return source is None or event.get("source") == source


def describe(event: Any) -> str:
    if isinstance(event, dict):
        keys = sorted(str(k) for k in event)[:12]
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            source = records[0].get("eventSource") or records[0].get("EventSource")
            return f"an event with Records from {source!r}"
        return f"an object with keys {keys}"
    return f"a JSON {type(event).__name__}"


def unsupported(function: str, serves: str, event: Any) -> UnsupportedEvent:
    return UnsupportedEvent(f"the {function} function serves {serves}; it was invoked with {describe(event)}")


def require_sqs(function: str, event: Any) -> dict[str, Any]:
    if not is_sqs(event):
        raise unsupported(function, "SQS batches from its event source mapping", event)
    result: dict[str, Any] = event
    return result

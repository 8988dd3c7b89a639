"""SQS event source mappings, run locally as Lambda's pollers run them.

One thread per mapping long-polls the queue, gathers up to ``batch_size`` messages within
``max_batching_window_s``, invokes the function's alias with the SQS event Lambda builds, then deletes
what succeeded. A response ``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` (partial batch
response, always enabled here as loopml's CDK enables it) deletes every other message; a function error,
a timeout, or an unknown/empty ``itemIdentifier`` deletes none. Messages left in the queue come back
after the visibility timeout, and moto's redrive policy moves them to the DLQ past ``maxReceiveCount``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from loopml_dev.local.runtime import InvokeResult

_MAX_RECEIVE = 10  # SQS's own cap per ReceiveMessage


def lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API ``MessageAttributes`` -> the lower-camel shape Lambda puts in each record."""
    converted = {}
    for name, value in attributes.items():
        binary = value.get("BinaryValue")
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": None if binary is None else base64.b64encode(binary).decode(),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return converted


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {
            key: attributes[key]
            for key in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "MessageGroupId",
                "MessageDeduplicationId",
                "SequenceNumber",
                "AWSTraceHeader",
            )
            if key in attributes
        },
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids(result: InvokeResult, message_ids: set[str]) -> set[str] | None:
    """Message ids to keep; None means the whole batch failed."""
    if result.function_error:
        return None
    try:
        response = json.loads(result.payload) if result.payload else None
    except ValueError:
        return set()
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return set()
    failures = response["batchItemFailures"]
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    kept = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in message_ids:
            return None  # Lambda treats an invalid identifier as a failure of the whole batch
        kept.add(identifier)
    return kept


class SqsPoller:
    """One event source mapping; ``start``/``stop`` own its thread."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        function: str,
        invoke: Callable[[str, bytes], InvokeResult],
        region: str,
        batch_size: int = 10,
        max_batching_window_s: float = 0.0,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.function = function
        self.invoke = invoke
        self.region = region
        self.batch_size = max(1, batch_size)
        self.window_s = max_batching_window_s
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"sqs-poller-{self.function}", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Asks the thread to finish its current long poll and batch; ``stop`` then waits for it."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(_MAX_RECEIVE, count),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # keep polling, as Lambda's poller does, but say why
                if self._stop.is_set():
                    return
                self._log(f"[sqs:{self.function}] poll failed: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)

    def poll_once(self, wait_s: int = 1) -> int:
        """Receives one batch and processes it; returns the number of records handed to the function."""
        batch = self._receive(self.batch_size, wait_s)
        if not batch:
            return 0
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.batch_size and time.monotonic() < deadline and not self._stop.is_set():
            more = self._receive(self.batch_size - len(batch), 0)
            if not more:
                self._stop.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            batch.extend(more)
        self.process(batch)
        return len(batch)

    def process(self, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in batch]}
        result = self.invoke(self.function, json.dumps(event).encode())
        self.batches += 1
        ids = {m["MessageId"] for m in batch}
        kept = failed_ids(result, ids)
        if kept is None:
            reason = result.payload.decode(errors="replace")[:300] if result.function_error else "invalid response"
            self._log(f"[sqs:{self.function}] batch of {len(batch)} failed, none deleted: {reason}")
            return
        done = [m for m in batch if m["MessageId"] not in kept]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if kept:
            self._log(f"[sqs:{self.function}] {len(kept)} of {len(batch)} records reported failed, kept")

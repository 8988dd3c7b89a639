"""SQS sending in batches of at most ten messages and 256 KiB, retrying only the entries SQS rejected."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import translate

MAX_ENTRIES = 10  # SendMessageBatch
MAX_BATCH_BYTES = 256 * 1024  # SendMessageBatch's limit on the sum of its bodies


def message_groups(bodies: list[str]) -> list[list[str]]:
    """Consecutive groups within both limits; a body alone over the size limit still goes alone."""
    groups: list[list[str]] = []
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8", "surrogatepass"))
        if not groups or len(groups[-1]) == MAX_ENTRIES or size + length > MAX_BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(body)
        size += length
    return groups


class SqsSender:
    def __init__(self, client: Any, queue_url: str, attempts: int = 2) -> None:
        self._sqs = client
        self.queue_url = queue_url
        self._attempts = attempts

    def __call__(self, bodies: list[str]) -> int:
        """Send every body; returns how many were still rejected after the retries."""
        failed = 0
        for group in message_groups(bodies):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(group)]
            for _ in range(self._attempts):
                try:
                    result = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                except (ClientError, BotoCoreError) as exc:
                    raise translate(exc, self.queue_url) from exc
                rejected = {f["Id"] for f in result.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in rejected]
                if not entries:
                    break
            failed += len(entries)
        return failed

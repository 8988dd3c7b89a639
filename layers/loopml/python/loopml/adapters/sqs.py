"""SQS sending in batches of ten, retrying only the entries SQS rejected."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import translate

BATCH = 10


class SqsSender:
    def __init__(self, client: Any, queue_url: str, attempts: int = 2) -> None:
        self._sqs = client
        self.queue_url = queue_url
        self._attempts = attempts

    def __call__(self, bodies: list[str]) -> int:
        """Send every body; returns how many were still rejected after the retries."""
        failed = 0
        for start in range(0, len(bodies), BATCH):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + BATCH])]
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

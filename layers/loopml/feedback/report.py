"""The consumer's answer to Lambda (partial batch response) and its metrics and log line."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from loopml.feedback.consumer import CommitResult
from loopml.observability import logger, metrics


def delivery_response(
    processed: Any, result: CommitResult, total: int, poison: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Poison messages (from the processor) plus messages whose writes failed, each reported once.

    ``poison`` samples are logged with sensitive features already masked by the consumer.
    """
    for sample in poison or []:
        logger.warning("poison capture message; SQS will retry it, then dead-letter it", extra=sample)
    failures = [f["itemIdentifier"] for f in processed.get("batchItemFailures", [])]
    poisoned = len(failures)
    failures += sorted(result.failed - set(failures))
    for name, value in (
        ("CapturedPredictions", result.predictions),
        ("CapturedFeedback", result.feedback),
        ("OptOuts", result.opt_outs),
        ("DuplicateRecords", result.duplicates),
        ("DroppedRecords", result.dropped),
        ("ReviewItems", result.review_items),
        ("PoisonMessages", poisoned),
        ("FailedMessages", len(result.failed)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    details = {
        "messages": total,
        "poison": poisoned,
        "predictions": result.predictions,
        "feedback": result.feedback,
        "duplicates": result.duplicates,
        "dropped": result.dropped,
        "objects": len(result.objects),
    }
    if result.error:
        logger.error("capture batch not stored; will be retried", extra={**details, "error": result.error})
    else:
        logger.info("capture batch stored", extra=details)
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failures]}

"""Batch scoring: CSV / JSON Lines files uploaded under ``batch/input/`` (S3 notifications through the
``batch`` queue) are scored by the model's champion into ``batch/output/``, bad rows listed in the
error report next to the output (see ``loopml.batch.models`` for the key convention).

A record fails alone (partial batch response) only when something transient failed: it is retried,
rewriting the same outputs, then dead-lettered.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml.batch import wiring
from loopml.batch.models import BatchSettings
from loopml.events import require_sqs
from loopml.observability import logger, metrics, tracer
from loopml.uploads import parse_notification

settings = BatchSettings.load()
scorer = wiring.build(settings)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    for upload in parse_notification(record.body):
        summary = scorer.handle(upload)
        if summary is not None:
            logger.info("batch scored", extra=summary.model_dump(mode="json"))
            metrics.add_metric(name="BatchRowsScored", unit=MetricUnit.Count, value=summary.scored)
            metrics.add_metric(name="BatchRowsRejected", unit=MetricUnit.Count, value=summary.rejected)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(process_partial_response(require_sqs("batch", event), record_handler, processor, context))

"""Starter: validates training data uploaded under ``incoming/<model>/`` (S3 notifications through the
``uploads`` queue) and starts the retraining state machine; the weekly schedule (off by default) starts
one directly with its constant input.

Each SQS record is one S3 notification; a record fails alone (partial batch response) only when
something transient failed, so it is retried and then dead-lettered. Rejections and refusals are
reports next to the upload, not failures.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml.events import require_sqs
from loopml.observability import logger, metrics, tracer
from loopml.starter import wiring
from loopml.starter.models import StarterSettings
from loopml.uploads import parse_notification

settings = StarterSettings.load()
starter = wiring.build(settings)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    for upload in parse_notification(record.body):
        outcome = starter.handle(upload)
        logger.info("upload processed", extra=outcome.model_dump())
        metrics.add_metric(name=f"Uploads{outcome.action.capitalize()}", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and "Records" in event:
        return dict(process_partial_response(require_sqs("starter", event), record_handler, processor, context))
    return starter.scheduled(event)

"""Feedback: POST /feedback, GET /review, POST /review/{prediction_id}, DELETE /subjects/{subject_id},
and the capture consumer (SQS: the capture and feedback queues), in one function.

API Gateway proxy events go to the resolver; SQS events (``Records``) to the batch processor, which
reports each poison message on its own (partial batch response) while the good ones are stored once.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml.api import api_resolver, caller_of, lane_model, path_param, resolve
from loopml.events import is_api, require_sqs
from loopml.feedback import wiring
from loopml.feedback.erasure import erase_subject
from loopml.feedback.models import (
    MAX_REVIEW_PAGE,
    ErasureReceipt,
    FeedbackRequest,
    FeedbackSettings,
    ReviewLabelRequest,
    ReviewPage,
)
from loopml.feedback.report import delivery_response
from loopml.observability import logger, metrics, tracer

settings = FeedbackSettings.load()
parts = wiring.build(settings)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

app = api_resolver()


def _accepted(body: Any) -> Response[str]:
    return Response(202, content_types.APPLICATION_JSON, body.model_dump_json())


@app.post("/feedback")
def post_feedback(body: FeedbackRequest) -> Response[str]:
    loc = ("body", "items") if body.items is not None else ("body",)
    return _accepted(parts.service.submit(body.all_items(), loc=loc, caller=caller_of(app), lane=lane_model(app)))


@app.get("/review")
def get_review(limit: Annotated[int, Query(ge=1, le=MAX_REVIEW_PAGE)] = 20) -> ReviewPage:
    return parts.service.review_page(limit, lane_model(app))


@app.post("/review/<prediction_id>")
def post_review(prediction_id: str, body: ReviewLabelRequest) -> Response[str]:
    prediction_id = path_param(app, "prediction_id")
    return _accepted(parts.service.review_label(prediction_id, body.label, body.comment, lane_model(app)))


@app.delete("/subjects/<subject_id>")
def delete_subject(subject_id: str) -> ErasureReceipt:
    subject_hash = parts.hash_subject(path_param(app, "subject_id"))
    return erase_subject(subject_hash, parts.store, parts.index, parts.subjects, parts.review)


def consume(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    delivery = parts.consumer.delivery()

    def record_handler(record: SQSRecord) -> None:
        delivery.add(record.message_id, record.body)

    with processor(event["Records"], record_handler, context):
        processor.process()
    return delivery_response(processor.response(), delivery.commit(), len(event["Records"]), delivery.poison)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_api(event):
        return resolve(app, "feedback", event, context)
    return consume(require_sqs("feedback", event), context)

"""Retraining steps for the ``retrain`` state machine, and ``POST /approvals/{token}`` (IAM) for humans.

Step Functions invokes this function with ``{"step": ..., "state": ...}``; API Gateway with a proxy
event; EventBridge with the status change of an execution that aborted or timed out (cleanup). Each is
parsed, handed to ``RetrainWorkflow``, and the result returned.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml.api import api_resolver, path_param, resolve
from loopml.events import is_api, is_eventbridge
from loopml.observability import logger, metrics, tracer
from loopml.retrain import wiring
from loopml.retrain.models import ApprovalDecision, ExecutionStatusChange, RetrainSettings, StepRequest

settings = RetrainSettings.load()
workflow = wiring.workflow(settings)

app = api_resolver()


@app.post("/approvals/<token>")
def decide(token: str, body: ApprovalDecision) -> dict[str, Any]:
    identity = app.current_event.request_context.identity
    actor = identity.user_arn or identity.caller or identity.source_ip or "unknown"
    return workflow.approvals.decide(path_param(app, "token"), body, actor).model_dump(mode="json")


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_api(event):
        return resolve(app, "retrain", event, context)
    if is_eventbridge(event, "aws.states"):  # an execution aborted or timed out: undo what it left
        outcome = workflow.cleanup_ended(ExecutionStatusChange.model_validate(event))
        return outcome.model_dump(mode="json") if outcome else {"ignored": event.get("detail", {}).get("name")}
    return workflow.run_step(StepRequest.parse(event))

"""Starting a retraining: one execution per model per time window.

The execution name is derived from the model and the trigger's time window, so two triggers in the
same window (a drift alarm and a schedule, a double click) start one execution: Step Functions
refuses a second execution with the same name (and its input differs or it has ended). A trigger
also refuses to start while an execution it started for the model is running. Inside the workflow
the model's lock (``loopml.retrain.lock``) stops runs started any other way from overlapping.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import error_code, translate
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput


def execution_name(model: str, now: datetime, window_minutes: int = 15) -> str:
    """``<model>-<UTC start of the window>``, e.g. ``default-20261125T1800``."""
    minute = (now.hour * 60 + now.minute) // window_minutes * window_minutes
    return f"{model}-{now:%Y%m%d}T{minute // 60:02d}{minute % 60:02d}"


def running_executions(client: Any, state_machine_arn: str, model: str) -> list[str]:
    """Names of running executions a trigger started for ``model``."""
    pattern = re.compile(rf"^{re.escape(model)}-\d{{8}}T\d{{4}}$")
    try:
        pages = client.get_paginator("list_executions").paginate(
            stateMachineArn=state_machine_arn, statusFilter="RUNNING"
        )
        names = [e["name"] for page in pages for e in page.get("executions", [])]
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, f"states list_executions {state_machine_arn}") from exc
    return [name for name in names if pattern.match(name)]


def start_retraining(
    client: Any, state_machine_arn: str, request: RetrainInput, now: datetime, window_minutes: int = 15
) -> str:
    """Starts the execution and returns its ARN; ``RetrainingInProgress`` if this window already has one."""
    name = execution_name(request.model, now, window_minutes)
    running = running_executions(client, state_machine_arn, request.model)
    if running:
        raise RetrainingInProgress(f"a retraining of {request.model!r} is already running: {running[0]}")
    payload = request.model_dump(mode="json", exclude_defaults=True)
    payload["model"], payload["reason"] = request.model, request.reason
    try:
        response = client.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            raise RetrainingInProgress(
                f"a retraining of {request.model!r} was already started in this {window_minutes}-minute "
                f"window (execution {name})"
            ) from exc
        raise translate(exc, f"states start_execution {name}") from exc
    return str(response["executionArn"])

"""Starting a retraining: one execution per model per time window.

The execution name is derived from the model and the trigger's time window, so two triggers in the
same window (a drift alarm and a schedule, a double click) start one execution: Step Functions
refuses a second execution with the same name (and its input differs or it has ended). A trigger
also refuses to start while any execution for the model is running (the drift function's included).
Inside the workflow the model's lock (``loopml.retrain.lock``) stops any overlap that slips through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loopml.adapters.stepfunctions import StepFunctionsStarter
from loopml.errors import VersionConflict
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput


def execution_name(model: str, now: datetime, window_minutes: int = 15) -> str:
    """``<model>-<UTC start of the window>``, e.g. ``default-20261125T1800``."""
    minute = (now.hour * 60 + now.minute) // window_minutes * window_minutes
    return f"{model}-{now:%Y%m%d}T{minute // 60:02d}{minute % 60:02d}"


def start_retraining(
    client: Any, state_machine_arn: str, request: RetrainInput, now: datetime, window_minutes: int = 15
) -> str:
    """Starts the execution and returns its ARN; ``RetrainingInProgress`` if this window already has one."""
    name = execution_name(request.model, now, window_minutes)
    starter = StepFunctionsStarter(client, state_machine_arn)
    running = starter.running(request.model)
    if running:
        raise RetrainingInProgress(f"a retraining of {request.model!r} is already running: {running[0]}")
    payload = request.model_dump(mode="json", exclude_defaults=True)
    payload["model"], payload["reason"] = request.model, request.reason
    try:
        return starter.start(name, payload)
    except VersionConflict:
        raise RetrainingInProgress(
            f"a retraining of {request.model!r} was already started in this {window_minutes}-minute "
            f"window (execution {name})"
        ) from None

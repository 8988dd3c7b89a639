"""Builds the drift function's collaborators once per execution environment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.stepfunctions import RetrainExecutions
from loopml.capture import CapturedRow
from loopml.drift.models import DriftSettings
from loopml.drift.publish import EmfPublisher
from loopml.drift.reports import ReportStore
from loopml.drift.service import DriftMonitor
from loopml.feedback.reader import read_captured
from loopml.registry import ModelRegistry
from loopml.retrain.trigger import RetrainTrigger


def monitor(settings: DriftSettings, metrics: Any, log: Any) -> DriftMonitor:
    store = S3ObjectStore(client("s3"), settings.model_bucket)

    def read_rows(model: str, start: datetime, end: datetime, version: int) -> Sequence[CapturedRow]:
        return read_captured(store, model, start, end, model_version=version)

    starter = (
        RetrainExecutions(client("stepfunctions"), settings.retrain_state_machine_arn)
        if settings.retrain_state_machine_arn
        else None
    )
    return DriftMonitor(
        settings,
        ModelRegistry(store),
        read_rows,
        ReportStore(store),
        RetrainTrigger(store, starter),
        EmfPublisher(metrics, settings.powertools_metrics_namespace, settings.powertools_service_name),
        log,
    )

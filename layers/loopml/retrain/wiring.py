"""Builds the retrain function's collaborators once per execution environment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.capture import CapturedRow
from loopml.feedback.reader import read_captured
from loopml.retrain.adapters import InferenceAlias, ServingMetrics, StepFunctionsResponder
from loopml.retrain.approvals import Approvals
from loopml.retrain.faults import FaultInjector
from loopml.retrain.models import RetrainSettings
from loopml.retrain.workflow import RetrainWorkflow


def workflow(settings: RetrainSettings) -> RetrainWorkflow:
    store = S3ObjectStore(client("s3"), settings.model_bucket)

    def labelled(model: str, start: datetime, end: datetime) -> Sequence[CapturedRow]:
        return read_captured(store, model, start, end, labelled_only=True)

    def captured(model: str, start: datetime, end: datetime) -> Sequence[CapturedRow]:
        return read_captured(store, model, start, end)

    return RetrainWorkflow(
        store,
        InferenceAlias(client("lambda"), settings.inference_function, settings.inference_alias),
        ServingMetrics(
            client("cloudwatch"),
            settings.powertools_metrics_namespace,
            settings.inference_service,
            settings.inference_function,
            settings.inference_alias,
        ),
        Approvals(store, StepFunctionsResponder(client("stepfunctions"))),
        labelled,
        FaultInjector(store, settings.fault_injection) if settings.fault_injection else None,
        captured,
    )

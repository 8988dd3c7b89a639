"""Builds the retrain function's collaborators once per execution environment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.capture import CapturedRow
from loopml.feedback.reader import read_captured
from loopml.names import lane_function
from loopml.retrain.adapters import InferenceAlias, Lane, ServingMetrics, StepFunctionsResponder
from loopml.retrain.approvals import Approvals
from loopml.retrain.errors import ModelNotServed
from loopml.retrain.faults import FaultInjector
from loopml.retrain.models import RetrainSettings
from loopml.retrain.workflow import RetrainWorkflow


def workflow(settings: RetrainSettings) -> RetrainWorkflow:
    store = S3ObjectStore(client("s3"), settings.model_bucket)

    def labelled(model: str, start: datetime, end: datetime) -> Sequence[CapturedRow]:
        return read_captured(store, model, start, end, labelled_only=True)

    def captured(model: str, start: datetime, end: datetime) -> Sequence[CapturedRow]:
        return read_captured(store, model, start, end)

    served = [m for m in settings.models.split(",") if m]
    lanes: dict[str, Lane] = {}

    def lane(model: str) -> Lane:
        """The model's inference function, made once; a model the deployment does not declare has none."""
        if model not in served:
            raise ModelNotServed(
                f"model {model!r} is not served by this deployment (it serves {', '.join(served)}): "
                "nothing was started or changed; declare it in loopml.topology.MODELS",
                [{"loc": ["model"], "msg": f"not served here; this deployment serves {served}", "type": "value_error"}],
            )
        if model not in lanes:
            function = lane_function(settings.inference_function, settings.model_name, model)
            lanes[model] = Lane(
                InferenceAlias(client("lambda"), function, settings.inference_alias),
                ServingMetrics(
                    client("cloudwatch"),
                    settings.powertools_metrics_namespace,
                    settings.inference_service,
                    function,
                    settings.inference_alias,
                ),
            )
        return lanes[model]

    return RetrainWorkflow(
        store,
        lane,
        Approvals(store, StepFunctionsResponder(client("stepfunctions"))),
        labelled,
        FaultInjector(store, settings.fault_injection) if settings.fault_injection else None,
        captured,
    )

"""Builds the starter function's collaborators once per execution environment."""

from __future__ import annotations

from datetime import datetime

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.registry import ModelRegistry
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import start_retraining
from loopml.starter.models import StarterSettings
from loopml.starter.service import UploadStarter


def build(settings: StarterSettings) -> UploadStarter:
    store = S3ObjectStore(client("s3"), settings.model_bucket)

    def start(request: RetrainInput, now: datetime) -> str:
        return start_retraining(
            client("stepfunctions"), settings.retrain_state_machine_arn, request, now, settings.window_minutes
        )

    return UploadStarter(store, ModelRegistry(store), start, settings.max_upload_bytes)

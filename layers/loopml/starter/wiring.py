"""Builds the starter function's collaborators once per execution environment."""

from __future__ import annotations

import uuid

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.stepfunctions import RetrainExecutions
from loopml.registry import ModelRegistry
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import RetrainTrigger, StartPolicy, Trigger, start_or_refuse
from loopml.starter.models import StarterSettings
from loopml.starter.service import UploadStarter


def build(settings: StarterSettings) -> UploadStarter:
    store = S3ObjectStore(client("s3"), settings.model_bucket)
    trigger = RetrainTrigger(store, RetrainExecutions(client("stepfunctions"), settings.retrain_state_machine_arn))
    policy = StartPolicy(
        cooldown_hours=0, max_starts_per_day=settings.max_starts_per_day, window_minutes=settings.window_minutes
    )

    def start(request: RetrainInput, kind: Trigger) -> str:
        return start_or_refuse(trigger, request, kind, policy, uuid.uuid4().hex[:12])

    return UploadStarter(store, ModelRegistry(store), start, settings.max_upload_bytes)

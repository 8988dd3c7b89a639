"""Builds the batch function's collaborators once per execution environment."""

from __future__ import annotations

from pathlib import Path

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.batch.models import BatchSettings
from loopml.batch.service import BatchScorer, Champions
from loopml.registry import ModelRegistry


def build(settings: BatchSettings) -> BatchScorer:
    store = S3ObjectStore(client("s3"), settings.model_bucket)
    champions = Champions(ModelRegistry(store), Path(settings.cache_dir))
    return BatchScorer(store, champions, settings.chunk_rows, settings.max_listed_errors)

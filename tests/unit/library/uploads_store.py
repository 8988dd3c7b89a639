"""An in-memory bucket for the starter and batch unit tests, plus a registered champion."""

from __future__ import annotations

from loopml.registry import ModelRegistry, serialize_bundle
from loopml.training import TrainedModel
from loopml.uploads import Upload
from loopml_dev.memory import MemoryObjectStore
from tests.conftest import make_metadata

BUCKET = "loopml-test-models"


def with_champion(trained: TrainedModel, model: str = "default") -> tuple[MemoryObjectStore, ModelRegistry, int]:
    bucket = MemoryObjectStore(BUCKET)
    registry = ModelRegistry(bucket)
    meta = registry.register(make_metadata(trained, model=model), serialize_bundle(trained.bundle))
    registry.set_alias(model, "champion", meta.version, actor="test", reason="first")
    return bucket, registry, meta.version


def upload(bucket: MemoryObjectStore, key: str, body: bytes) -> Upload:
    bucket.put(key, body)
    return Upload(bucket=BUCKET, key=key, size=len(body))

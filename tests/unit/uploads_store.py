"""An in-memory bucket for the starter and batch unit tests, plus a registered champion."""

from __future__ import annotations

import io
import json
from typing import IO, Any

from loopml.registry import ModelRegistry, serialize_bundle
from loopml.training import TrainedModel
from loopml.uploads import Upload
from tests.conftest import MemoryStore, make_metadata

BUCKET = "loopml-test-models"


class Bucket(MemoryStore):
    bucket = BUCKET

    def __init__(self) -> None:
        super().__init__()
        self.content_types: dict[str, str | None] = {}
        self.aborted = 0

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, content_type: str | None = None) -> None:
        super().put(key, body, if_none_match=if_none_match)
        self.content_types[key] = content_type

    def open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.get(key))

    def sink(self, key: str, content_type: str) -> Any:
        store = self

        class Sink:
            def __init__(self) -> None:
                self.parts: list[bytes] = []

            def write(self, data: bytes) -> None:
                self.parts.append(data)

            def close(self) -> None:
                store.put(key, b"".join(self.parts), content_type=content_type)

            def abort(self) -> None:
                store.aborted += 1

        return Sink()

    def json(self, key: str) -> Any:
        return json.loads(self.get(key))


def with_champion(trained: TrainedModel, model: str = "default") -> tuple[Bucket, ModelRegistry, int]:
    bucket = Bucket()
    registry = ModelRegistry(bucket)
    meta = registry.register(make_metadata(trained, model=model), serialize_bundle(trained.bundle))
    registry.set_alias(model, "champion", meta.version, actor="test", reason="first")
    return bucket, registry, meta.version


def upload(bucket: Bucket, key: str, body: bytes) -> Upload:
    bucket.put(key, body)
    return Upload(bucket=BUCKET, key=key, size=len(body))

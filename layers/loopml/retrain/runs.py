"""What a retraining run keeps in the models bucket, and how it reads it back verified.

A run writes its data snapshots under ``datasets/<model>/retrain/<run_id>/`` and its markers and staged
challenger under ``retrain/<model>/<run_id>/`` (``loopml.keys``). Everything is keyed by the run, so a
retried step finds what its earlier attempt did (a marker) instead of doing it twice, and every data
file is read back only if its SHA-256 is the one recorded when it was written.
"""

from __future__ import annotations

from typing import Any

from loopml import keys
from loopml.data import read_table, sha256_hex, write_csv
from loopml.errors import IntegrityError, InvalidInput, NotFound
from loopml.registry import DataLineage, ModelMetadata
from loopml.retrain.models import Challenger, RunConfig
from loopml.store import ObjectStore

CHALLENGER_ARTIFACT = "challenger.joblib"
CHALLENGER_METADATA = "challenger.json"
CHALLENGER_COMPILED = "challenger.onnx"


class RunStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def key_of(self, uri: str) -> str:
        """The key of an ``s3://`` URI in the models bucket; InvalidInput names any other location."""
        prefix = self.store.uri("")
        if not uri.startswith(prefix):
            raise InvalidInput(
                f"data_uri {uri!r} must be in the model bucket ({prefix}...)",
                [{"loc": ["data_uri"], "msg": f"must start with {prefix}", "type": "value_error"}],
            )
        return uri[len(prefix) :]

    def read(self, uri: str) -> tuple[bytes, str]:
        """An object of the bucket and its key; InvalidInput when it does not exist."""
        key = self.key_of(uri)
        try:
            return self.store.get(key), key
        except NotFound:
            raise InvalidInput(f"training data {uri} does not exist") from None

    def read_table(self, lineage: DataLineage, why: str) -> dict[str, list[Any]]:
        """The table ``lineage`` names, only if it is still the file it recorded (``why`` says whose)."""
        data, key = self.read(lineage.uri)
        if sha256_hex(data) != lineage.sha256:
            raise IntegrityError(f"{lineage.uri}: SHA-256 differs: {why}")
        return read_table(data, key)

    def snapshot(self, run: RunConfig, name: str, columns: dict[str, list[Any]]) -> DataLineage:
        data = write_csv(columns)
        key = keys.dataset_key(run.model, "retrain", run.run_id, f"{name}.csv")
        self.store.put(key, data)
        return DataLineage(uri=self.store.uri(key), sha256=sha256_hex(data), rows=len(next(iter(columns.values()))))

    def read_snapshot(self, lineage: DataLineage) -> dict[str, list[Any]]:
        return self.read_table(lineage, "not the snapshot taken for this run")

    def champion_data(self, meta: ModelMetadata) -> dict[str, list[Any]]:
        return self.read_table(meta.training_data, f"changed since champion v{meta.version} was trained on it")

    def marker(self, run: RunConfig, name: str) -> bytes | None:
        try:
            return self.store.get(keys.run_prefix(run.model, run.run_id) + name)
        except NotFound:
            return None

    def mark(self, run: RunConfig, name: str, body: bytes) -> None:
        self.store.put(keys.run_prefix(run.model, run.run_id) + name, body)

    def stage_challenger(
        self, run: RunConfig, artifact: bytes, meta: ModelMetadata, params: dict[str, Any], compiled: bytes | None
    ) -> Challenger:
        """The trained challenger (and its compiled form), staged under the run (registered only once the
        gate passed)."""
        prefix = keys.run_prefix(run.model, run.run_id)
        self.store.put(prefix + CHALLENGER_ARTIFACT, artifact)
        if compiled is not None:
            self.store.put(prefix + CHALLENGER_COMPILED, compiled)
        self.store.put(prefix + CHALLENGER_METADATA, meta.model_dump_json().encode())
        return Challenger(
            artifact_key=prefix + CHALLENGER_ARTIFACT,
            sha256=sha256_hex(artifact),
            metadata_key=prefix + CHALLENGER_METADATA,
            params=params,
            validation=meta.metrics,
            compiled_key=prefix + CHALLENGER_COMPILED if compiled is not None else None,
            compiled_sha256=sha256_hex(compiled) if compiled is not None else None,
        )

    def challenger(self, challenger: Challenger) -> tuple[ModelMetadata, bytes, bytes | None]:
        """The staged challenger's metadata, artifact and compiled form, each verified."""
        meta = ModelMetadata.model_validate_json(self.store.get(challenger.metadata_key))
        artifact = self._staged(challenger.artifact_key, challenger.sha256)
        compiled = None
        if challenger.compiled_key and challenger.compiled_sha256:
            compiled = self._staged(challenger.compiled_key, challenger.compiled_sha256)
        return meta, artifact, compiled

    def _staged(self, key: str, digest: str) -> bytes:
        data = self.store.get(key)
        if sha256_hex(data) != digest:
            raise IntegrityError(f"{key}: SHA-256 differs from the trained challenger")
        return data

"""Model registry: immutable numbered versions, aliases and an append-only history, in an object store.

Layout under ``models/<model>/``::

    v<N>/.claim               written first with if-none-match: whoever creates it owns number N
    v<N>/model.joblib         the pickled bundle
    v<N>/model.joblib.sha256  its SHA-256 (hex), also recorded in metadata.json
    v<N>/model.onnx(.sha256)  the compiled form, when the model converts (loopml.compiled): no pickle
    v<N>/metadata.json        written last: a version exists once this object does
    aliases/<alias>.json      champion, challenger: which version, since when, why
    history/<ts>-<id>.json    one immutable object per event (registered, alias moved, rolled back...)

Pickles run code when loaded, so ``load_bundle`` verifies the artifact's SHA-256 against the one
recorded at registration before unpickling anything; the compiled form is verified the same way before
onnxruntime parses it. joblib is imported only to unpickle: the compiled runtime never loads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from loopml import keys
from loopml.data import verify_sha256
from loopml.errors import IntegrityError, InvalidInput, ModelNotFound, NotFound, Unservable, VersionConflict
from loopml.names import Runtime, validate_model_name
from loopml.schema import FeatureSchema, contract_changes
from loopml.store import ObjectStore

ARTIFACT = keys.ARTIFACT
ALIASES = ("champion", "challenger")
HistoryAction = Literal[
    "registered", "alias_moved", "canary_started", "promoted", "rolled_back", "rejected", "inconclusive", "failed"
]


class DataLineage(BaseModel):
    uri: str
    sha256: str
    rows: int


class Parity(BaseModel):
    """How closely the compiled form scored the reference rows (``loopml.compilation``)."""

    family: str  # linear, trees, other: which tolerance applies
    rows: int
    max_abs_diff: float  # probabilities; regression: relative to the largest value's magnitude
    tolerance: float
    label_mismatches: int = 0


class CompiledForm(BaseModel):
    """The version's ONNX file: where it is, its SHA-256 (verified before loading), its parity."""

    key: str = ""
    sha256: str = ""
    parity: Parity


class ModelMetadata(BaseModel):
    model: str
    version: int
    created_at: datetime
    created_by: str
    library_versions: dict[str, str]
    training_data: DataLineage
    params: dict[str, Any]
    metrics: dict[str, float | int | None]
    feature_schema: FeatureSchema
    reference_profile: dict[str, Any] = Field(default_factory=dict)
    parent_version: int | None = None
    artifact_sha256: str
    artifact_key: str
    explainer: Literal["linear", "occlusion"]
    compiled: CompiledForm | None = None  # None: the scikit-learn runtime only; ``not_compiled`` says why
    not_compiled: str | None = None


def servable(meta: ModelMetadata, runtime: Runtime) -> str | None:
    """Why ``runtime`` cannot serve this version, or None: the compiled runtime needs a compiled form."""
    if runtime == "compiled" and meta.compiled is None:
        why = meta.not_compiled or "registered before compilation"
        which = f"v{meta.version}" if meta.version else "this version"
        return (
            f"model {meta.model!r} {which} has no compiled form ({why}) and its inference function runs "
            "the compiled runtime: declare runtime='sklearn' for this model (loopml.topology ModelSpec), or "
            "register a model that converts"
        )
    return None


def served_form(meta: ModelMetadata, runtime: Runtime) -> tuple[str, str, str]:
    """(file name, registered SHA-256, registry key) of the form ``runtime`` loads: the compiled ONNX or the
    pickle. Unservable, naming why, when the version has no such form."""
    if runtime == "sklearn":
        return ARTIFACT, meta.artifact_sha256, meta.artifact_key
    reason = servable(meta, runtime)
    if reason or meta.compiled is None:
        raise Unservable(reason)
    return keys.COMPILED, meta.compiled.sha256, meta.compiled.key


class AliasRecord(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime
    actor: str
    reason: str


class HistoryEvent(BaseModel, defer_build=True):  # not read at an inference function's cold start
    model: str
    at: datetime
    actor: str
    action: HistoryAction
    version: int | None = None
    previous_version: int | None = None
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class ContractChanged(InvalidInput):
    """A new version would change what callers send or what feedback labels mean."""


class ServedAt(BaseModel, defer_build=True):
    """Which version served a model at a moment, and why: the champion then, and a canary if one baked."""

    model: str
    at: datetime
    champion: int | None
    since: datetime | None = None  # when that version became the champion
    actor: str = ""
    reason: str = ""
    canary: int | None = None  # a version taking a share of the traffic then
    canary_since: datetime | None = None


_CANARY_ENDS = frozenset({"promoted", "rolled_back", "rejected", "inconclusive", "failed"})


def served_at(history: list[HistoryEvent], at: datetime) -> ServedAt:
    """From the deployment history alone: the last champion move at or before ``at``, and a canary
    started before ``at`` that nothing had ended by then (promotion, rollback, rejection, failure)."""
    model = history[0].model if history else ""
    served = ServedAt(model=model, at=at, champion=None)
    canary: HistoryEvent | None = None
    for event in sorted(history, key=lambda e: e.at):
        if event.at > at:
            break
        if event.action == "alias_moved" and event.details.get("alias") == "champion":
            served = served.model_copy(
                update={"champion": event.version, "since": event.at, "actor": event.actor, "reason": event.reason}
            )
        if event.action == "canary_started":
            canary = event
        elif canary is not None and event.action in _CANARY_ENDS and event.version == canary.version:
            canary = None
    if canary is not None and canary.version != served.champion:
        served = served.model_copy(update={"canary": canary.version, "canary_since": canary.at})
    return served


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("scikit-learn", "numpy", "scipy", "joblib", "loopml"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def serialize_bundle(bundle: dict[str, Any]) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(bundle, buffer, compress=3)
    return buffer.getvalue()


def sklearn_mismatch(saved: str | None, where: str) -> str | None:
    """Why a pickle saved with scikit-learn ``saved`` is not safe to load here, or None when it is.

    scikit-learn guarantees nothing across versions; within one minor release (1.9.0 and 1.9.1) its
    estimators keep their pickled state, so only a different major.minor is refused.
    """
    import sklearn

    runtime = sklearn.__version__
    if saved is None or saved.split(".")[:2] == runtime.split(".")[:2]:
        return None
    return (
        f"{where} was saved with scikit-learn {saved}; this runtime has {runtime}, and a pickle is not safe "
        f"to load across scikit-learn releases: refit or re-save the estimator with scikit-learn {runtime}"
    )


def verify_and_load(
    data: bytes, expected_sha256: str, where: str, saved_with: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Unpickle only bytes whose SHA-256 matches the recorded one, saved by a compatible scikit-learn
    (``saved_with``: the version's recorded library versions)."""
    verify_sha256(data, expected_sha256, where)
    reason = sklearn_mismatch((saved_with or {}).get("scikit-learn"), where)
    if reason:
        raise IntegrityError(reason)
    import joblib

    bundle = joblib.load(io.BytesIO(data))
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise IntegrityError(f"{where}: not a loopml model bundle")
    return bundle


def version_number(ref: str | int) -> int | None:
    """``3``, ``"v3"`` or ``"3"`` as 3; an alias name or ``"latest"`` needs the registry (None)."""
    text = str(ref).strip().lower().removeprefix("v")
    return int(text) if text.isdigit() else None


class ModelRegistry:
    def __init__(self, store: ObjectStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._clock = clock

    def _claimed_versions(self, model: str) -> list[int]:
        pattern = re.compile(rf"^{re.escape(keys.model_prefix(model))}v(\d+)/")
        numbers = {
            int(m.group(1))
            for key in self._store.list_keys(keys.model_prefix(model) + "v")
            if (m := pattern.match(key))
        }
        return sorted(numbers)

    def versions(self, model: str) -> list[int]:
        """Registered (complete) versions, oldest first."""
        prefix = keys.model_prefix(model)
        return sorted(
            int(key[len(prefix) + 1 :].split("/", 1)[0])
            for key in self._store.list_keys(prefix + "v")
            if key.endswith("/" + keys.METADATA)
        )

    def register(
        self,
        metadata: ModelMetadata,
        artifact: bytes,
        max_attempts: int = 50,
        new_contract: bool = False,
        compiled: bytes | None = None,
    ) -> ModelMetadata:
        """Allocate the next free version number atomically, upload, then publish the metadata.

        ``metadata.version``, ``artifact_sha256`` and ``artifact_key`` are filled in here, and with
        ``compiled`` (the ONNX bytes, whose parity ``metadata.compiled`` records) its key and SHA-256.
        A version whose features or target differ from the champion's (``schema.contract_changes``) is
        refused with the differences listed, unless ``new_contract``: callers and stored feedback rely on
        the champion's.
        """
        model = validate_model_name(metadata.model)
        if not new_contract:
            self.check_contract(model, metadata.feature_schema)
        claimed = self._claimed_versions(model)
        candidate = (claimed[-1] if claimed else 0) + 1
        for _ in range(max_attempts):
            claim = keys.version_prefix(model, candidate) + ".claim"
            try:
                self._store.put(claim, json.dumps({"at": self._clock().isoformat()}).encode(), if_none_match=True)
                break
            except VersionConflict:
                candidate += 1
        else:
            raise VersionConflict(f"could not allocate a version for {model} after {max_attempts} attempts")
        base = keys.version_prefix(model, candidate)
        digest = hashlib.sha256(artifact).hexdigest()
        self._store.put(base + ARTIFACT, artifact, if_none_match=True)
        self._store.put(base + ARTIFACT + ".sha256", f"{digest}  {ARTIFACT}\n".encode(), if_none_match=True)
        update: dict[str, Any] = {"version": candidate, "artifact_sha256": digest, "artifact_key": base + ARTIFACT}
        if compiled is not None:
            if metadata.compiled is None:
                raise InvalidInput("a compiled form is registered with its parity (metadata.compiled)")
            onnx_digest = hashlib.sha256(compiled).hexdigest()
            self._store.put(base + keys.COMPILED, compiled, if_none_match=True)
            self._store.put(
                base + keys.COMPILED + ".sha256", f"{onnx_digest}  {keys.COMPILED}\n".encode(), if_none_match=True
            )
            update["compiled"] = metadata.compiled.model_copy(
                update={"key": base + keys.COMPILED, "sha256": onnx_digest}
            )
        else:
            update["compiled"] = None
        final = metadata.model_copy(update=update)
        self._store.put(base + keys.METADATA, final.model_dump_json(indent=1).encode(), if_none_match=True)
        self.record(
            HistoryEvent(
                model=model,
                at=self._clock(),
                actor=metadata.created_by,
                action="registered",
                version=candidate,
                previous_version=metadata.parent_version,
                details={"metrics": metadata.metrics},
            )
        )
        return final

    def check_contract(self, model: str, schema: FeatureSchema) -> None:
        """ContractChanged, listing the differences, when ``schema`` is not the champion's contract."""
        try:
            champion = self.metadata(model, self.alias(model, "champion").version)
        except ModelNotFound:
            return
        changes = contract_changes(champion.feature_schema, schema)
        if changes:
            raise ContractChanged(
                f"{model}: this version does not take what champion v{champion.version} takes ("
                + "; ".join(changes)
                + "); register it under another model name, or pass --new-schema to replace the contract",
                [{"loc": ["feature_schema"], "msg": change, "type": "contract_changed"} for change in changes],
            )

    def metadata(self, model: str, version: int) -> ModelMetadata:
        try:
            raw = self._store.get(keys.version_prefix(model, version) + keys.METADATA)
        except NotFound:
            raise ModelNotFound(f"model {model!r} has no version {version}") from None
        return ModelMetadata.model_validate_json(raw)

    def artifact(self, metadata: ModelMetadata) -> bytes:
        return self.form(metadata, "sklearn")

    def form(self, metadata: ModelMetadata, runtime: Runtime) -> bytes:
        """The bytes ``runtime`` loads (``served_form``), unverified: the loader checks the SHA-256."""
        _, _, key = served_form(metadata, runtime)
        try:
            return self._store.get(key)
        except NotFound:
            raise IntegrityError(f"artifact {key} is missing") from None

    def load_bundle(self, model: str, version: int) -> tuple[dict[str, Any], ModelMetadata, bytes]:
        meta = self.metadata(model, version)
        data = self.artifact(meta)
        return verify_and_load(data, meta.artifact_sha256, meta.artifact_key, meta.library_versions), meta, data

    def resolve(self, model: str, ref: str | int) -> int:
        """A version number from ``3``, ``"v3"``, ``"3"``, an alias name, or ``"latest"``."""
        number = version_number(ref)
        if number is not None:
            return number
        text = str(ref).strip().lower()
        if text == "latest":
            versions = self.versions(model)
            if not versions:
                raise ModelNotFound(f"model {model!r} has no registered version")
            return versions[-1]
        return self.alias(model, text).version

    def alias(self, model: str, alias: str) -> AliasRecord:
        try:
            raw = self._store.get(keys.alias_key(model, alias))
        except NotFound:
            raise ModelNotFound(f"model {model!r} has no alias {alias!r}") from None
        return AliasRecord.model_validate_json(raw)

    def set_alias(self, model: str, alias: str, version: int, actor: str, reason: str) -> AliasRecord:
        self.metadata(model, version)  # refuse to point at a version that does not exist
        try:
            previous: int | None = self.alias(model, alias).version
        except ModelNotFound:
            previous = None
        record = AliasRecord(
            model=model, alias=alias, version=version, updated_at=self._clock(), actor=actor, reason=reason
        )
        self._store.put(keys.alias_key(model, alias), record.model_dump_json().encode())
        self.record(
            HistoryEvent(
                model=model,
                at=record.updated_at,
                actor=actor,
                action="alias_moved",
                version=version,
                previous_version=previous,
                reason=reason,
                details={"alias": alias},
            )
        )
        return record

    def record(self, event: HistoryEvent) -> None:
        """Append one event; keys sort by time, and an event is never overwritten."""
        stamp = event.at.strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{keys.history_prefix(event.model)}{stamp}-{uuid.uuid4().hex[:8]}.json"
        self._store.put(key, event.model_dump_json().encode(), if_none_match=True)

    def models(self) -> list[str]:
        """Every model with at least one registered version."""
        found = set()
        for key in self._store.list_keys(keys.MODELS):
            parts = key[len(keys.MODELS) :].split("/")
            if len(parts) == 3 and parts[1].startswith("v") and parts[2] == keys.METADATA:
                found.add(parts[0])
        return sorted(found)

    def history(self, model: str) -> list[HistoryEvent]:
        found = sorted(self._store.list_keys(keys.history_prefix(model)))
        return [HistoryEvent.model_validate_json(self._store.get(k)) for k in found]

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from loopml.errors import IntegrityError, InvalidInput, ModelNotFound
from loopml.registry import ModelRegistry, serialize_bundle
from loopml_dev.memory import MemoryObjectStore
from tests.conftest import make_metadata


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry(MemoryObjectStore())


def test_register_numbers_versions_and_records_hash(registry, trained):
    artifact = serialize_bundle(trained.bundle)
    first = registry.register(make_metadata(trained), artifact)
    second = registry.register(make_metadata(trained), artifact)
    assert (first.version, second.version) == (1, 2)
    assert first.artifact_sha256 == hashlib.sha256(artifact).hexdigest()
    assert registry.versions("default") == [1, 2]
    store = registry._store
    assert store.get("models/default/v1/model.joblib.sha256").decode().startswith(first.artifact_sha256)
    bundle, meta, _ = registry.load_bundle("default", 2)
    assert meta.version == 2 and "pipeline" in bundle


def test_concurrent_registrations_never_share_a_number(registry, trained):
    artifact = serialize_bundle(trained.bundle)
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: registry.register(make_metadata(trained), artifact).version, range(16)))
    assert sorted(versions) == list(range(1, 17))


def test_tampered_artifact_is_never_unpickled(registry, trained):
    meta = registry.register(make_metadata(trained), serialize_bundle(trained.bundle))
    registry._store.objects[meta.artifact_key] = b"\x80\x04evil"
    with pytest.raises(IntegrityError, match="does not match"):
        registry.load_bundle("default", 1)


def test_aliases_and_history(registry, trained):
    artifact = serialize_bundle(trained.bundle)
    registry.register(make_metadata(trained), artifact)
    registry.register(make_metadata(trained), artifact)
    registry.set_alias("default", "champion", 1, actor="ci", reason="first model")
    registry.set_alias("default", "champion", 2, actor="ci", reason="better")
    assert registry.resolve("default", "champion") == 2
    assert registry.resolve("default", "latest") == 2
    assert registry.resolve("default", "v1") == 1
    history = registry.history("default")
    assert [e.action for e in history] == ["registered", "registered", "alias_moved", "alias_moved"]
    assert history[-1].previous_version == 1 and history[-1].reason == "better"


def test_missing_things_are_named(registry, trained):
    with pytest.raises(ModelNotFound, match="no version 3"):
        registry.metadata("default", 3)
    with pytest.raises(ModelNotFound, match="no alias 'champion'"):
        registry.resolve("default", "champion")
    with pytest.raises(ModelNotFound, match="no registered version"):
        registry.resolve("default", "latest")
    with pytest.raises(ModelNotFound):
        registry.set_alias("default", "champion", 9, actor="x", reason="y")
    with pytest.raises(InvalidInput, match="invalid"):
        registry.versions("Bad Name")


def test_served_at_reads_the_deployment_history() -> None:
    from datetime import UTC, datetime, timedelta

    from loopml.registry import HistoryEvent, served_at

    t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def event(minutes: int, action: str, version: int, **details: object) -> HistoryEvent:
        return HistoryEvent(
            model="default",
            at=t0 + timedelta(minutes=minutes),
            actor="test",
            action=action,  # type: ignore[arg-type]
            version=version,
            reason=f"{action} v{version}",
            details=dict(details),
        )

    history = [
        event(0, "registered", 1),
        event(1, "alias_moved", 1, alias="champion"),
        event(10, "canary_started", 2),
        event(20, "promoted", 2),
        event(20, "alias_moved", 2, alias="champion"),
        event(30, "canary_started", 3),
        event(40, "rolled_back", 3),
    ]
    at = lambda minutes: served_at(history, t0 + timedelta(minutes=minutes))  # noqa: E731
    assert at(0).champion is None
    assert (at(5).champion, at(5).canary) == (1, None)
    assert (at(15).champion, at(15).canary) == (1, 2)  # v2 baking beside the champion
    assert (at(25).champion, at(25).reason, at(25).since) == (2, "alias_moved v2", t0 + timedelta(minutes=20))
    assert (at(35).champion, at(35).canary) == (2, 3)
    assert (at(45).champion, at(45).canary) == (2, None)  # the rolled-back canary no longer serves


def test_a_version_that_changes_the_contract_is_refused_unless_asked_for(trained) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from loopml.registry import ContractChanged, ModelRegistry, serialize_bundle
    from loopml.schema import FeatureKind
    from loopml_dev.memory import MemoryObjectStore
    from tests.conftest import make_metadata

    registry = ModelRegistry(MemoryObjectStore())
    first = registry.register(make_metadata(trained), serialize_bundle(trained.bundle))
    registry.set_alias("default", "champion", first.version, actor="test", reason="first")
    schema = trained.schema.model_copy(deep=True)
    dropped = schema.features.pop()
    schema.features[0].kind = (
        FeatureKind.categorical if schema.features[0].kind is FeatureKind.numeric else FeatureKind.numeric
    )
    schema.classes = ["no", "yes"]
    other = make_metadata(trained).model_copy(update={"feature_schema": schema})
    with pytest.raises(ContractChanged) as refused:
        registry.register(other, serialize_bundle(trained.bundle))
    message = str(refused.value)
    assert f"features no longer taken: ['{dropped.name}']" in message
    assert f"feature '{schema.features[0].name}' is" in message and "classes ['no', 'yes']" in message
    assert registry.versions("default") == [first.version]  # nothing was written
    assert registry.register(other, serialize_bundle(trained.bundle), new_contract=True).version == 2

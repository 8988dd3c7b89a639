from __future__ import annotations

import pytest

from loopml import keys
from loopml.errors import ModelUnavailable
from loopml.inference.service import ModelService
from loopml.registry import ModelRegistry, serialize_bundle
from loopml_dev.memory import MemoryObjectStore
from tests.conftest import make_metadata


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


# Every drill runs against both runtimes: what each loads is a different file with its own SHA-256.
@pytest.fixture(params=["compiled", "sklearn"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def served(runtime: str) -> str:
    """The registry file the runtime loads."""
    return keys.COMPILED if runtime == "compiled" else keys.ARTIFACT


def _service(store, tmp_path, ref="champion", clock=None, runtime="compiled") -> ModelService:
    return ModelService(
        ModelRegistry(store), "default", ref, tmp_path, retry_after_s=30, clock=clock or Clock(), runtime=runtime
    )


def _register(store, trained, champion: int | None = None):
    registry = ModelRegistry(store)
    meta = trained.register(registry, make_metadata(trained))
    if champion:
        registry.set_alias("default", "champion", champion, actor="t", reason="t")
    return meta


def test_loads_champion_and_caches_the_verified_copy(store, trained, tmp_path, runtime, served):
    _register(store, trained, champion=1)
    serving = _service(store, tmp_path, runtime=runtime).current()
    assert not serving.degraded and serving.metadata.version == 1
    assert (tmp_path / "default" / "v1" / served).exists()
    # a new environment with the same /tmp loads v1 from the cache even if the registry's artifact is gone
    del store.objects[f"models/default/v1/{served}"]
    assert _service(store, tmp_path, ref="1", runtime=runtime).current().metadata.version == 1


def test_corrupt_new_version_falls_back_to_last_verified_and_heals(store, trained, tmp_path, runtime, served):
    _register(store, trained, champion=1)
    _service(store, tmp_path, runtime=runtime).current()  # v1 verified and cached
    _register(store, trained)
    key = f"models/default/v2/{served}"
    good = store.objects[key]
    store.objects[key] = good[:-10] + b"0123456789"  # tampered: the SHA-256 differs, nothing is parsed
    clock = Clock()
    service = _service(store, tmp_path, ref="2", clock=clock, runtime=runtime)
    serving = service.current()
    assert serving.degraded and serving.metadata.version == 1 and serving.deployed_version == 2
    assert "IntegrityError" in (serving.reason or "")
    store.objects[key] = good
    assert service.current().degraded  # no retry before retry_after_s
    clock.now = 31
    healed = service.current()
    assert not healed.degraded and healed.metadata.version == healed.deployed_version == 2


def test_nothing_verified_means_unavailable(store, tmp_path):
    with pytest.raises(ModelUnavailable, match="no verified copy"):
        _service(store, tmp_path).current()


def test_the_compiled_runtime_refuses_a_version_without_a_compiled_form_naming_why(store, trained, tmp_path):
    registry = ModelRegistry(store)
    meta = make_metadata(trained).model_copy(update={"compiled": None, "not_compiled": "a custom transformer"})
    registry.register(meta, serialize_bundle(trained.bundle))
    registry.set_alias("default", "champion", 1, actor="t", reason="t")
    with pytest.raises(ModelUnavailable, match=r"no compiled form \(a custom transformer\).*runtime='sklearn'"):
        _service(store, tmp_path).current()
    assert not _service(store, tmp_path, runtime="sklearn").current().degraded


def test_registry_outage_after_load_keeps_serving_degraded(store, trained, tmp_path, runtime):
    _register(store, trained, champion=1)
    clock = Clock()
    service = _service(store, tmp_path, clock=clock, runtime=runtime)
    service.current()
    store.fail_gets = True
    service.load()
    serving = service.current()
    assert serving.degraded and "TransientError" in (serving.reason or "")
    assert serving.deployed_version == 1  # the alias cannot be resolved now: it still stands for what it resolved to


def test_an_alias_unresolvable_at_cold_start_stands_for_the_cached_copy(store, trained, tmp_path, runtime):
    _register(store, trained, champion=1)
    _service(store, tmp_path, runtime=runtime).current()  # v1 verified and cached
    store.fail_gets = True
    serving = _service(store, tmp_path, runtime=runtime).current()
    assert serving.degraded and serving.metadata.version == serving.deployed_version == 1


def test_a_cached_copy_from_another_registry_is_not_served(
    store, trained, tmp_path, loan_columns, loan_schema, runtime
):
    from loopml.training import TrainingParams, train

    _register(store, trained, champion=1)
    _service(store, tmp_path, runtime=runtime).current()  # caches this registry's v1
    other_store = MemoryObjectStore()
    other = train(loan_columns, loan_schema, TrainingParams(regularization_c=0.01))
    other_meta = _register(other_store, other, champion=1)
    serving = _service(other_store, tmp_path, runtime=runtime).current()
    assert not serving.degraded
    assert serving.metadata.artifact_sha256 == other_meta.artifact_sha256

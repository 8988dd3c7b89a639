from __future__ import annotations

import pytest

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


def _service(store, tmp_path, ref="champion", clock=None) -> ModelService:
    return ModelService(ModelRegistry(store), "default", ref, tmp_path, retry_after_s=30, clock=clock or Clock())


def _register(store, trained, champion: int | None = None):
    registry = ModelRegistry(store)
    meta = registry.register(make_metadata(trained), serialize_bundle(trained.bundle))
    if champion:
        registry.set_alias("default", "champion", champion, actor="t", reason="t")
    return meta


def test_loads_champion_and_caches_the_verified_copy(store, trained, tmp_path):
    _register(store, trained, champion=1)
    serving = _service(store, tmp_path).current()
    assert not serving.degraded and serving.metadata.version == 1
    assert (tmp_path / "default" / "v1" / "model.joblib").exists()
    # a new environment with the same /tmp loads v1 from the cache even if the registry's artifact is gone
    del store.objects["models/default/v1/model.joblib"]
    assert _service(store, tmp_path, ref="1").current().metadata.version == 1


def test_corrupt_new_version_falls_back_to_last_verified_and_heals(store, trained, tmp_path):
    _register(store, trained, champion=1)
    _service(store, tmp_path).current()  # v1 verified and cached
    meta2 = _register(store, trained)
    good = store.objects[meta2.artifact_key]
    store.objects[meta2.artifact_key] = good[:-10] + b"0123456789"
    clock = Clock()
    service = _service(store, tmp_path, ref="2", clock=clock)
    serving = service.current()
    assert serving.degraded and serving.metadata.version == 1
    assert "IntegrityError" in (serving.reason or "")
    store.objects[meta2.artifact_key] = good
    assert service.current().degraded  # no retry before retry_after_s
    clock.now = 31
    healed = service.current()
    assert not healed.degraded and healed.metadata.version == 2


def test_nothing_verified_means_unavailable(store, tmp_path):
    with pytest.raises(ModelUnavailable, match="no verified copy"):
        _service(store, tmp_path).current()


def test_registry_outage_after_load_keeps_serving_degraded(store, trained, tmp_path):
    _register(store, trained, champion=1)
    clock = Clock()
    service = _service(store, tmp_path, clock=clock)
    service.current()
    store.fail_gets = True
    service.load()
    serving = service.current()
    assert serving.degraded and "TransientError" in (serving.reason or "")


def test_a_cached_copy_from_another_registry_is_not_served(store, trained, tmp_path, loan_columns, loan_schema):
    from loopml.training import TrainingParams, train

    _register(store, trained, champion=1)
    _service(store, tmp_path).current()  # caches this registry's v1
    other_store = MemoryObjectStore()
    other = train(loan_columns, loan_schema, TrainingParams(regularization_c=0.01))
    other_meta = _register(other_store, other, champion=1)
    serving = _service(other_store, tmp_path).current()
    assert not serving.degraded
    assert serving.metadata.artifact_sha256 == other_meta.artifact_sha256

"""Fixtures shared by the whole suite: small bundled data, a trained model, and moto."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopml.schema import FeatureSchema, SchemaConfig, infer_schema
from loopml.training import TrainedModel, TrainingParams, train
from loopml_dev import datasets

ROOT = Path(__file__).resolve().parents[1]
SENSITIVE_CONFIG = SchemaConfig.model_validate({"features": {"gender": {"sensitive": True}}})


@pytest.fixture(scope="session")
def loan_columns() -> dict[str, list[Any]]:
    return datasets.loan_default(3000, seed=7)


@pytest.fixture(scope="session")
def loan_schema(loan_columns: dict[str, list[Any]]) -> FeatureSchema:
    return infer_schema(loan_columns, datasets.TARGET, SENSITIVE_CONFIG)


@pytest.fixture(scope="session")
def trained(loan_columns: dict[str, list[Any]], loan_schema: FeatureSchema) -> TrainedModel:
    return train(loan_columns, loan_schema, TrainingParams())


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Credentials and region for moto; clears the per-process client cache around each test."""
    from loopml.adapters.aws import clear_clients

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clear_clients()
    yield
    clear_clients()


def load_handler(function: str, module_name: str | None = None) -> ModuleType:
    """Import ``functions/<function>/app.py`` fresh, as Lambda would in a new execution environment."""
    name = module_name or f"loopml_test_{function}_app"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_metadata(trained: TrainedModel, model: str = "default", version: int = 0) -> Any:
    """Registry metadata for a trained model without a reference profile (unit tests of the registry),
    with its compiled form's parity when it has one (register with ``trained.register``)."""
    from loopml.registry import CompiledForm, DataLineage, ModelMetadata

    return ModelMetadata(
        model=model,
        version=version,
        created_at="2026-11-25T00:00:00Z",
        created_by="test",
        library_versions={},
        training_data=DataLineage(uri="memory://loan", sha256="0" * 64, rows=3000),
        params=trained.params.model_dump(),
        metrics=trained.metrics.model_dump(),
        feature_schema=trained.schema,
        artifact_sha256="",
        artifact_key="",
        explainer="linear",
        compiled=CompiledForm(parity=trained.compiled.parity) if trained.compiled else None,
        not_compiled=trained.not_compiled,
    )


RAW_S3_EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "loopml-dev-models"}, "object": {"key": "incoming/default/x.csv", "size": 1}},
        }
    ]
}
"""An S3 event sent straight to a function that consumes S3 notifications through SQS: the wrong shape."""


def work_unit(nodeid: str) -> str:
    """Which tests one worker runs together, one after another: a module, so module fixtures start once
    (and the README's tests, the only ones on `make up`'s default ports and state dir, never overlap),
    except the CDK tests, which share one synthesis and one layer build and so run whole on one worker."""
    path = nodeid.split("::", 1)[0]
    return "tests/infra" if path.startswith("tests/infra/") else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Two workers share the suite (``-n 2``) by ``work_unit``. A scheduler of our own, not ``--dist
    loadgroup``: xdist 3.8 marks groups by rewriting ``item._nodeid``, which pytest 9 no longer reads, so
    its groups silently fell apart and one module's tests ran on both workers, each with its own stack."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)

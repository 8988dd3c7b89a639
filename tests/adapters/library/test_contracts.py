"""Each handler serves exactly the routes the declaration gives it, and reads exactly the environment
the declaration sets: the declaration is the only place either is written down."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from loopml.names import lane_relative
from loopml.settings import FunctionSettings
from loopml.topology import TOPOLOGY, FunctionSpec
from tests.conftest import load_handler

READ_BY_POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"}
FUNCTIONS = [spec.name for spec in TOPOLOGY.functions]


def settings_class(function: str) -> type[FunctionSettings]:
    """By convention ``loopml.<function>.models.<Function>Settings``: one settings model per function."""
    found: type[FunctionSettings] = getattr(
        importlib.import_module(f"loopml.{function}.models"), f"{function.title()}Settings"
    )
    return found


def declared_environment(spec: FunctionSpec) -> dict[str, str]:
    """The declaration's variables with values of the right shape (what CDK or the local stack resolves)."""
    values = {"url": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}
    env = dict(spec.environment)
    for variable, ref in spec.resources.items():
        if ref.attribute == "arn":
            env[variable] = f"arn:aws:states:us-east-1:123456789012:stateMachine:{ref.name}"
        else:
            env[variable] = values.get(ref.attribute, f"loopml-test-{ref.name}")
    return env


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_settings_model_reads_what_the_declaration_sets(function: str) -> None:
    spec = TOPOLOGY.function(function)
    model = settings_class(function)
    fields = {name.upper() for name in model.model_fields}
    required = {name.upper() for name, field in model.model_fields.items() if field.is_required()}
    declared = set(declared_environment(spec))
    assert required <= declared, f"{function}: required but never declared: {sorted(required - declared)}"
    unread = declared - fields - READ_BY_POWERTOOLS
    assert not unread, f"{function}: declared but read by nothing: {sorted(unread)}"
    model.load(declared_environment(spec))  # and the declared values validate


@pytest.fixture
def declared_env(aws_env: None, request: pytest.FixtureRequest) -> Iterator[FunctionSpec]:
    spec = TOPOLOGY.function(request.param)
    saved = dict(os.environ)
    os.environ.update(declared_environment(spec))
    try:
        with mock_aws():
            yield spec
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("declared_env", FUNCTIONS, indirect=True)
def test_each_resolver_serves_exactly_its_declared_routes(declared_env: FunctionSpec) -> None:
    spec = declared_env
    module = load_handler(spec.name)
    app: Any = getattr(module, "app", None)
    served = set() if app is None else {(r.method, r.path) for r in app._static_routes + app._dynamic_routes}
    # a model's lane serves its routes under /models/<model> (loopml.api.without_lane)
    declared = {(r.method, lane_relative(r.path).replace("{", "<").replace("}", ">")) for r in spec.routes}
    assert served == declared, f"{spec.name}: served {sorted(served)}, declared {sorted(declared)}"

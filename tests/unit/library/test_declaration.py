"""The declaration, the code and the samples stay in step: one name per concept everywhere."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from loopml.topology import TOPOLOGY, Topology
from tests.conftest import ROOT


def test_every_declared_function_has_code_events_and_a_library_package() -> None:
    declared = {spec.folder for spec in TOPOLOGY.functions}
    assert declared == {p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()}
    assert declared == {p.name for p in (ROOT / "events").iterdir() if p.is_dir()}
    library = ROOT / "layers" / "loopml"
    for name in declared:
        assert (library / name).is_dir(), f"layers/loopml/{name} missing for the function {name}"


def test_every_sample_event_is_json_of_a_known_trigger_shape() -> None:
    for path in sorted((ROOT / "events").glob("*/*.json")):
        event = json.loads(path.read_text())
        shapes = {
            "api": "httpMethod" in event and "requestContext" in event,
            "sqs": "Records" in event,
            "schedule": event.get("detail-type") == "Scheduled Event",
            "execution status": event.get("detail-type") == "Step Functions Execution Status Change",
            "state machine": "step" in event or "model" in event,
        }
        assert any(shapes.values()), f"{path.relative_to(ROOT)} is not an API, SQS, schedule or workflow event"


# --- the declaration refuses what CDK or AWS would refuse, for the local stack and CDK alike ----------
def _with(**changes: object) -> dict[str, object]:
    """TOPOLOGY as plain data with one function changed (or anything else): validated again."""
    data = TOPOLOGY.model_dump()
    for name, value in changes.items():
        data[name] = value
    return data


def _changed_function(name: str, **fields: object) -> dict[str, object]:
    data = TOPOLOGY.model_dump()
    data["functions"] = [{**f, **fields} if f["name"] == name else f for f in data["functions"]]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _changed_function(
                "inference", grants=[{"kind": "bucket", "name": "nope", "access": "read", "prefixes": ["models/"]}]
            ),
            "function 'inference': bucket 'nope' is referenced but not declared",
        ),
        (
            _changed_function("inference", grants=[{"kind": "queue", "name": "capture", "access": "start"}]),
            "access 'start' does not apply to a queue ('capture'; it takes consume, send)",
        ),
        (
            _changed_function("inference", resources={"X": {"kind": "table", "name": "review", "attribute": "url"}}),
            "a table has no 'url' attribute",
        ),
        (
            _changed_function("drift", resources={"X": {"kind": "state_machine", "name": "elsewhere"}}),
            "function 'drift' X: state_machine 'elsewhere' is referenced but not declared",
        ),
        (_changed_function("feedback", timeout_s=600), "queue 'capture' has a 120s visibility timeout"),
        (
            _changed_function("drift", routes=[{"method": "POST", "path": "/predict"}]),
            "route POST /predict is declared twice (inference, drift)",
        ),
        (
            _changed_function("starter", event_sources=[{"queue": "missing"}]),
            "function 'starter': queue 'missing' is referenced but not declared",
        ),
    ],
    ids=["undeclared grant", "wrong access", "wrong attribute", "undeclared ref", "slow consumer", "route", "queue"],
)
def test_a_declaration_cdk_would_refuse_is_refused_everywhere(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Topology.model_validate(change)
    assert message in str(caught.value)


def test_the_declaration_as_it_is_validates() -> None:
    assert Topology.model_validate(_with()) == TOPOLOGY

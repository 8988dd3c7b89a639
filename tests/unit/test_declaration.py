"""The declaration, the code and the samples stay in step: one name per concept everywhere."""

from __future__ import annotations

import json

from loopml.topology import TOPOLOGY
from tests.conftest import ROOT


def test_every_declared_function_has_code_events_and_a_library_package() -> None:
    declared = {spec.name for spec in TOPOLOGY.functions}
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

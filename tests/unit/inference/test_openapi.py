"""The one OpenAPI document: every declared route documented (and nothing else), valid OpenAPI 3.1,
the served model's features typed, admin routes marked as such."""

from __future__ import annotations

from openapi_spec_validator import validate

from loopml.names import lane_relative
from loopml.openapi import OPERATIONS, document, server_url
from loopml.schema import SchemaConfig, infer_schema
from loopml.topology import TOPOLOGY
from loopml_dev import datasets


def _schema():
    config = SchemaConfig.model_validate({"features": {"gender": {"sensitive": True}}})
    return infer_schema(datasets.loan_default(300, seed=1), datasets.TARGET, config)


def test_every_declared_route_is_documented_and_nothing_else():
    declared = {(r.method, lane_relative(r.path)) for spec in TOPOLOGY.functions for r in spec.routes}
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert documented == declared
    queries = {(r.method, lane_relative(r.path)): set(r.query) for spec in TOPOLOGY.functions for r in spec.routes}
    for op in OPERATIONS:
        assert {p.name for p in op.params if p.where == "query"} == queries[(op.method, op.path)], op.path


def test_the_document_is_valid_openapi_with_the_features_typed():
    schema = _schema()
    doc = document(schema)
    validate(doc)
    instance = doc["components"]["schemas"]["Instance"]
    assert instance["required"] == schema.names and instance["additionalProperties"] is False
    age, region = instance["properties"]["age"], instance["properties"]["region"]
    assert age["type"] in ("number", ["number", "null"]) and "x-training-minimum" in age
    assert region["x-training-categories"] == schema.feature("region").categories
    assert instance["properties"]["gender"]["x-sensitive"] is True
    assert doc["components"]["schemas"]["FeedbackItem"]["properties"]["label"]["enum"] == schema.classes
    validate(document(None))


def test_security_follows_the_declaration_and_the_deployment():
    doc = document(None)
    assert doc["paths"]["/subjects/{subject_id}"]["delete"]["security"] == [{"admin": []}]
    assert doc["paths"]["/approvals/{token}"]["post"]["security"] == [{"admin": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/predict"]["post"]["security"] == [{"api_key": []}]
    assert document(None, api_key_required=False)["paths"]["/predict"]["post"]["security"] == []
    for item in doc["paths"].values():
        for op in item.values():
            assert "403" in op["responses"] or not op["security"], op["operationId"]


def test_the_server_url_is_the_base_the_client_used():
    assert server_url("/openapi.json", "/dev/openapi.json") == "/dev"
    assert server_url("/openapi.json", "/openapi.json") == "/"
    assert server_url("/openapi.json", None) == "/"

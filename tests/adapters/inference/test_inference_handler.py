"""The inference handler against moto: real proxy events in, HTTP-shaped answers and SQS captures out."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopml.adapters.s3 import S3ObjectStore
from loopml.registry import ModelRegistry
from loopml_dev.local.context import StubContext
from tests.conftest import ROOT, load_handler, make_metadata

BUCKET = "loopml-test-models"
EVENTS = ROOT / "events" / "inference"


Context = partial(StubContext, "inference", version="7", memory_mb=2048, timeout_s=29)


@pytest.fixture
def deployed(aws_env, monkeypatch, trained, tmp_path) -> Iterator[tuple[ModuleType, Any, str]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="loopml-test-capture")["QueueUrl"]
        registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
        trained.register(registry, make_metadata(trained))
        registry.set_alias("default", "champion", 1, actor="test", reason="first")
        for name, value in {
            "MODEL_BUCKET": BUCKET,
            "CAPTURE_QUEUE_URL": queue_url,
            "MODEL_NAME": "default",
            "MODEL_VERSION": "champion",
            "CACHE_DIR": str(tmp_path / "cache"),
            "AWS_LAMBDA_FUNCTION_VERSION": "7",
            "POWERTOOLS_SERVICE_NAME": "inference",
            "POWERTOOLS_METRICS_NAMESPACE": "loopml",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        yield load_handler("inference"), sqs, queue_url


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text())
    data.update(changes)
    return data


def call(module: ModuleType, evt: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    out = module.handler(evt, Context())
    headers = dict(out.get("headers") or {})
    headers.update({k: v[-1] for k, v in (out.get("multiValueHeaders") or {}).items()})
    return out["statusCode"], json.loads(out["body"]), headers


def captured(sqs, queue_url) -> list[dict[str, Any]]:
    records = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return records
        for m in got:
            records.extend(json.loads(m["Body"])["records"])


def test_single_prediction_is_answered_and_captured(deployed):
    module, sqs, queue_url = deployed
    status, body, _ = call(module, event("predict_single.json"))
    assert status == 200, body
    (p,) = body["predictions"]
    assert body["model_version"] == 1 and body["lambda_version"] == "7" and body["degraded"] is False
    assert p["prediction"] in (0, 1)
    assert p["confidence"] == pytest.approx(max(p["probabilities"].values()))
    assert p["model_version"] == 1 and p["lambda_version"] == "7"
    assert len(p["prediction_id"]) == 32
    (record,) = captured(sqs, queue_url)
    assert record["prediction_id"] == p["prediction_id"]
    assert record["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert record["features"] == json.loads(event("predict_single.json")["body"])["instance"]


def test_batch_with_explanations(deployed):
    module, sqs, queue_url = deployed
    evt = event("predict_batch.json", queryStringParameters={"explain": "true"})
    status, body, _ = call(module, evt)
    assert status == 200
    assert len(body["predictions"]) == 3 and body["explainer"] == "linear"
    assert all(set(p["explanation"]) >= {"age", "purpose"} for p in body["predictions"])
    assert len(captured(sqs, queue_url)) == 3


def _body(**payload: Any) -> str:
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("body", "status", "locs"),
    [
        ("{not json", 400, None),
        (_body(instance={"age": 30}, instances=[{"age": 30}]), 422, [["body"]]),
        (_body(rows=[]), 422, [["body", "rows"]]),
        (_body(instances=[]), 422, [["body", "instances"]]),
        (_body(instances=[{}] * 1001), 422, [["body", "instances"]]),
        (_body(instances=[1]), 422, [["body", "instances", 0]]),
    ],
)
def test_malformed_requests_get_4xx_naming_the_field(deployed, body, status, locs):
    module, _, _ = deployed
    got, answer, _ = call(module, event("predict_single.json", body=body))
    assert got == status, answer
    if locs:
        assert [d["loc"][: len(locs[0])] for d in answer["detail"]][:1] == locs


def _query(**params: list[str]) -> dict[str, Any]:
    return {"queryStringParameters": {k: v[-1] for k, v in params.items()}, "multiValueQueryStringParameters": params}


@pytest.mark.parametrize(
    ("changes", "status", "detail"),
    [
        (_query(explain=["TRUE"]), 200, None),
        (_query(explain=["1"]), 200, None),
        (_query(explain=["yes"]), 200, None),
        (_query(explain=["maybe"]), 422, (["query", "explain"], "bool_parsing")),
        (_query(explain=[""]), 422, (["query", "explain"], "bool_parsing")),
        (_query(explain=["true", "false"]), 422, (["query", "explain"], "multiple_values")),
        ({"body": None}, 422, (["body"], "missing")),
        ({"body": "null"}, 422, (["body"], "missing")),
        ({"body": "[]"}, 422, (["body"], "model_type")),
        ({"body": '{"instance": {}, "consent": "maybe"}'}, 422, (["body", "consent"], "bool_parsing")),
        ({"body": '{"instance": NaN}'}, 422, (["body", "instance"], "dict_type")),
    ],
)
def test_the_predict_route_reads_its_query_and_body_as_typed_routes_do(deployed, changes, status, detail):
    """/predict parses its own input (no validation middleware on the hot path): the same 4xx, named."""
    module, sqs, queue_url = deployed
    got, answer, _ = call(module, event("predict_single.json", **changes))
    assert got == status, answer
    if detail is None:
        assert answer["explainer"] == "linear" and answer["predictions"][0]["explanation"]
        return
    assert answer["message"] == "request validation failed"
    assert [(d["loc"], d["type"]) for d in answer["detail"]] == [detail]
    assert captured(sqs, queue_url) == []


def test_rows_that_are_not_objects_are_named_among_good_ones(deployed):
    module, sqs, queue_url = deployed
    good = json.loads(event("predict_single.json")["body"])["instance"]
    status, answer, _ = call(module, event("predict_single.json", body=_body(instances=[good, "row", [1], good])))
    assert status == 422, answer
    assert [(d["loc"], d["type"]) for d in answer["detail"]] == [
        (["body", "instances", 1], "type_error"),
        (["body", "instances", 2], "type_error"),
    ]
    assert captured(sqs, queue_url) == []


def test_bad_feature_values_are_named(deployed):
    module, sqs, queue_url = deployed
    instance = json.loads(event("predict_single.json")["body"])["instance"]
    instance.pop("age")
    instance["credit_score"] = "NaN"
    instance["extra"] = 1
    status, answer, _ = call(module, event("predict_single.json", body=_body(instance=instance)))
    assert status == 422
    assert {(d["loc"][-1], d["type"]) for d in answer["detail"]} == {
        ("age", "missing"),
        ("credit_score", "float_type"),
        ("extra", "extra_forbidden"),
    }
    assert captured(sqs, queue_url) == []


def test_model_health_and_openapi(deployed):
    module, _, _ = deployed
    status, meta, _ = call(module, event("get_model.json"))
    assert status == 200 and meta["version"] == 1 and "reference_profile" not in meta
    assert meta["feature_schema"]["target"] == "default"
    status, meta, _ = call(module, event("get_model.json", **_query(profile=["true"])))
    assert status == 200 and "reference_profile" in meta
    status, answer, _ = call(module, event("get_model.json", **_query(profile=["sometimes"])))
    assert status == 422 and answer["detail"][0]["loc"] == ["query", "profile"]
    status, health, _ = call(module, event("get_health.json"))
    assert status == 200 and health["status"] == "ok" and health["model_version"] == 1
    status, spec, _ = call(module, event("get_health.json", path="/openapi.json", resource="/openapi.json"))
    assert status == 200 and "/predict" in spec["paths"]


def test_a_fallback_answers_degraded_and_its_metrics_count_against_the_deployed_version(
    deployed, trained, monkeypatch, capsys
):
    """A canary whose artifact fails serves the champion's verified copy: the answers name v1, but the
    canary check reads metrics by version, so they must count as v2's (degraded), not swell v1's."""
    module, _, _ = deployed
    assert call(module, event("predict_single.json"))[0] == 200  # v1 verified and cached in this /tmp
    s3 = boto3.client("s3")
    canary = trained.register(ModelRegistry(S3ObjectStore(s3, BUCKET)), make_metadata(trained))
    s3.put_object(Bucket=BUCKET, Key=canary.compiled.key, Body=b"tampered")
    monkeypatch.setenv("MODEL_VERSION", str(canary.version))
    capsys.readouterr()

    status, body, _ = call(load_handler("inference"), event("predict_batch.json"))

    assert status == 200 and body["degraded"] is True and body["model_version"] == 1, body
    assert "IntegrityError" in body["degraded_reason"]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (served,) = [m for m in emf if "Degraded" in m]
    assert served["model_version"] == str(canary.version) and served["Degraded"] == [3]
    assert served["Predictions"] == [3]


@pytest.mark.parametrize("runtime", ["compiled", "sklearn"])
def test_tampered_model_with_nothing_cached_answers_503(aws_env, monkeypatch, trained, tmp_path, runtime):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        queue_url = boto3.client("sqs").create_queue(QueueName="q")["QueueUrl"]
        registry = ModelRegistry(S3ObjectStore(s3, BUCKET))
        meta = trained.register(registry, make_metadata(trained))
        served = meta.compiled.key if runtime == "compiled" else meta.artifact_key  # the file that runtime loads
        s3.put_object(Bucket=BUCKET, Key=served, Body=b"tampered")
        for name, value in {
            "MODEL_RUNTIME": runtime,
            "MODEL_BUCKET": BUCKET,
            "CAPTURE_QUEUE_URL": queue_url,
            "MODEL_VERSION": "1",
            "CACHE_DIR": str(tmp_path / "cache"),
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        module = load_handler("inference")
        status, body, headers = call(module, event("predict_single.json"))
        assert status == 503 and headers.get("Retry-After") == "30"
        assert "cannot be loaded" in body["message"]
        status, health, _ = call(module, event("get_health.json"))
        assert status == 503 and health["status"] == "unavailable"


def test_missing_configuration_names_the_variable(aws_env, monkeypatch):
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    monkeypatch.setenv("CAPTURE_QUEUE_URL", "x")
    from loopml.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MODEL_BUCKET is not set"):
        load_handler("inference")


def test_the_models_lane_serves_the_same_routes_under_its_prefix(deployed):
    module, _, _ = deployed
    status, body, _ = call(module, event("predict_lane.json"))
    assert status == 200 and body["model"] == "default" and len(body["predictions"]) == 1
    spec = event("predict_lane.json", httpMethod="GET", body=None, path="/models/default/openapi.json",
                 resource="/models/default/openapi.json")  # fmt: skip
    spec["requestContext"] = {**spec["requestContext"], "path": "/dev/models/default/openapi.json"}
    status, document, _ = call(module, spec)
    assert status == 200 and document["servers"] == [{"url": "/dev/models/default"}]


def test_every_sample_event_parses_through_the_handler_models():
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from loopml.inference.models import PredictRequest

    files = sorted(Path(EVENTS).glob("*.json"))
    assert len(files) >= 5
    for path in files:
        evt = APIGatewayProxyEvent(json.loads(path.read_text()))
        assert evt.http_method in {"GET", "POST"} and evt.request_context.request_id
        if evt.http_method == "POST":
            PredictRequest.model_validate(evt.json_body)


def test_swagger_page_is_served(deployed):
    module, _, _ = deployed
    page = event("get_health.json", path="/swagger", resource="/swagger")
    page["requestContext"] = {**page["requestContext"], "path": "/dev/swagger"}
    out = module.handler(page, Context())
    assert out["statusCode"] == 200 and out["multiValueHeaders"]["Content-Type"] == ["text/html"]
    assert "swagger-ui" in out["body"] and '"/dev/openapi.json"' in out["body"]
    spec = event("get_health.json", path="/openapi.json", resource="/openapi.json")
    spec["requestContext"] = {**spec["requestContext"], "path": "/dev/openapi.json"}
    document = json.loads(module.handler(spec, Context())["body"])
    assert document["servers"] == [{"url": "/dev"}]
    assert {"/predict", "/feedback", "/drift/evaluate", "/approvals/{token}"} <= set(document["paths"])
    assert "age" in document["components"]["schemas"]["Instance"]["properties"]


def _instance() -> dict[str, Any]:
    return json.loads(event("predict_single.json")["body"])["instance"]


@pytest.mark.parametrize(
    ("changes", "status", "says"),
    [
        ({"body": base64.b64encode(b"\xff\xfe{\x00}\x00").decode(), "isBase64Encoded": True}, 400, "not valid UTF-8"),
        ({"headers": {"content-type": "multipart/form-data"}}, 415, "unsupported media type"),
        ({"headers": {"Content-Type": "application/json; charset=latin-1"}}, 415, "unsupported charset"),
        ({"body": "[" * 10_000 + "]" * 10_000}, 400, "nested too deeply"),
        ({"body": '{"instance": {"age": ' + "9" * 5000 + "}}"}, 400, "too long to read"),
        ({"body": "x" * (6 * 1024 * 1024 + 1)}, 413, "over"),
    ],
)
def test_unreadable_bodies_get_a_named_4xx(deployed, changes, status, says):
    module, sqs, queue_url = deployed
    got, answer, _ = call(module, event("predict_single.json", **changes))
    assert got == status and says in answer["message"], answer
    assert captured(sqs, queue_url) == []


def test_non_finite_and_overlong_values_are_422_naming_the_field(deployed):
    module, sqs, queue_url = deployed
    for huge in ("1e400", "9" * 400):
        too_big = json.dumps({"instance": _instance()}).replace('"age": 41.0', f'"age": {huge}')
        got, answer, _ = call(module, event("predict_single.json", body=too_big))
        assert got == 422 and {"loc": ["body", "instance", "age"]}.items() <= answer["detail"][0].items(), answer
    long_value = {**_instance(), "region": "r" * 6_000_000}
    got, answer, _ = call(module, event("predict_single.json", body=json.dumps({"instance": long_value})))
    assert got == 422 and answer["detail"][0]["loc"] == ["body", "instance", "region"], answer
    assert answer["detail"][0]["type"] == "string_too_long"
    assert captured(sqs, queue_url) == []


def test_one_lone_surrogate_in_1000_rows_rejects_the_request_before_any_id_is_issued(deployed):
    module, sqs, queue_url = deployed
    rows = [_instance() for _ in range(1000)]
    body = json.dumps({"instances": rows})
    marker = '"region": "north"'
    at = [i for i in range(len(body)) if body.startswith(marker, i)][617]
    body = body[:at] + '"region": "\\ud800"' + body[at + len(marker) :]
    got, answer, _ = call(module, event("predict_single.json", body=body))
    assert got == 422, answer
    assert answer["detail"][0]["loc"] == ["body", "instances", 617, "region"]
    assert "prediction_id" not in json.dumps(answer)
    assert captured(sqs, queue_url) == []


@pytest.mark.parametrize(
    "wrong",
    [
        {"Records": [{"messageId": "m", "body": "{}", "eventSource": "aws:sqs"}]},
        {"Records": [{"eventSource": "aws:s3", "s3": {}}]},
        {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
        [],
    ],
)
def test_an_event_of_the_wrong_shape_is_one_named_error(deployed, wrong):
    from loopml.errors import UnsupportedEvent

    module, _, _ = deployed
    with pytest.raises(UnsupportedEvent, match="the inference function serves API Gateway REST proxy events"):
        module.handler(wrong, Context())

"""The adapters against moto in-process (no network): Lambda alias, CloudWatch, Step Functions."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loopml.errors import NotFound, TransientError
from loopml.retrain.adapters import InferenceAlias, ServingMetrics, StepFunctionsResponder
from loopml.retrain.models import CanaryPolicy


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buffer.getvalue()


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def alias(aws: None) -> InferenceAlias:
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName="inference",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _zip()},
        Environment={"Variables": {"MODEL_NAME": "default", "MODEL_VERSION": "champion"}},
    )
    version = lam.publish_version(FunctionName="inference")["Version"]
    lam.create_alias(FunctionName="inference", Name="live", FunctionVersion=version)
    return InferenceAlias(lam, "inference", "live", sleep=lambda s: None)


def test_publish_and_route(alias: InferenceAlias) -> None:
    primary, weights = alias.routing()
    assert weights == {}
    canary = alias.publish({"MODEL_VERSION": "2"}, "default v2 canary")
    assert canary != primary
    assert alias.environment(canary) == {"MODEL_NAME": "default", "MODEL_VERSION": "2"}
    alias.route(primary, canary, 0.1)
    assert alias.routing() == (primary, {canary: 0.1})
    alias.route(canary)
    assert alias.routing() == (canary, {})


def test_missing_function_is_not_found(aws: None) -> None:
    with pytest.raises(NotFound):
        InferenceAlias(boto3.client("lambda"), "nope", "live").routing()


def test_metrics_summary_and_alarms(aws: None) -> None:
    cw = boto3.client("cloudwatch")
    metrics = ServingMetrics(cw, "loopml", "inference", "inference", "live")
    now = datetime.now(UTC)
    dims = [
        {"Name": "model", "Value": "default"},
        {"Name": "model_version", "Value": "2"},
        {"Name": "service", "Value": "inference"},
    ]
    data: list[dict[str, Any]] = [
        {"MetricName": "Predictions", "Dimensions": dims, "Timestamp": now, "Value": 10.0},
        {"MetricName": "Degraded", "Dimensions": dims, "Timestamp": now, "Value": 2.0},
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now, "Value": 12.0},
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now, "Value": 30.0},
        {"MetricName": "Confidence", "Dimensions": dims, "Timestamp": now, "Value": 0.6},
        {"MetricName": "Confidence", "Dimensions": dims, "Timestamp": now, "Value": 0.8},
    ]
    cw.put_metric_data(Namespace="loopml", MetricData=data)
    lambda_dims = [
        {"Name": "FunctionName", "Value": "inference"},
        {"Name": "Resource", "Value": "inference:live"},
        {"Name": "ExecutedVersion", "Value": "7"},
    ]
    cw.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": lambda_dims, "Timestamp": now, "Value": 4.0},
            {"MetricName": "Errors", "Dimensions": lambda_dims, "Timestamp": now, "Value": 1.0},
        ],
    )
    summary = metrics.summary("default", 2, "7", now - timedelta(minutes=1), now)
    assert (summary.predictions, summary.degraded, summary.invocations, summary.errors) == (10, 2, 4, 1)
    assert summary.latency_p99_ms == 30.0  # no percentiles in moto: the maximum
    assert summary.mean_confidence == pytest.approx(0.7)
    assert metrics.summary("default", 3, "8", now - timedelta(minutes=1), now).predictions == 0

    names = metrics.create_canary_alarms("default", 2, "7", CanaryPolicy())
    assert metrics.firing(names) == []
    cw.set_alarm_state(AlarmName=names[0], StateValue="ALARM", StateReason="test")
    assert metrics.firing(names) == [names[0]]
    metrics.delete_alarms(names)
    assert cw.describe_alarms(AlarmNames=names)["MetricAlarms"] == []


def test_responder_maps_gone_tokens(aws: None) -> None:
    class Gone:
        def send_task_success(self, **_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "x"}}, "SendTaskSuccess")

        def send_task_failure(self, **_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "SendTaskFailure")

    responder = StepFunctionsResponder(Gone())
    with pytest.raises(NotFound):
        responder.succeed("t", {})
    with pytest.raises(TransientError):
        responder.fail("t", "ApprovalRejected", "no")

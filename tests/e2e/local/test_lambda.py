"""The Lambda Invoke API at the front door: versions, aliases, errors, timeouts, Step Functions."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


def _invoke(stack, function: str, payload: dict, **kwargs):
    response = stack.client("lambda").invoke(
        FunctionName=stack.function_name(function), Payload=json.dumps(payload).encode(), **kwargs
    )
    return response, json.loads(response["Payload"].read())


def test_invoke_runs_the_published_version_with_its_code_layer_and_environment(stack, function_log):
    response, body = _invoke(stack, "echo", {"hello": "world"}, Qualifier="live")

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == stack.deployment.versions["echo"]
    assert body["event"] == {"hello": "world"}
    assert body["version"] == response["ExecutedVersion"]
    code_dir, layer_dir = body["sys_path_head"][:2]
    assert code_dir.startswith(str(stack.state_dir / "code"))
    assert layer_dir.endswith("/python")
    assert layer_dir.startswith(str(stack.state_dir / "code"))
    assert body["loopml_file"].startswith(layer_dir), "loopml must come from the published layer"
    assert body["tmp"].startswith(str(stack.state_dir / "tmp")), "each environment has its own temp folder"
    assert body["env"] == {
        "AWS_ENDPOINT_URL": stack.aws_endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "loopml-test-echo",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "LOOPML_LOCAL_RUNTIME": "1",
        "RESULTS_BUCKET": "loopml-test-results",
        "STATIC": "yes",
    }
    context = body["context"]
    assert context["function_name"] == "loopml-test-echo"
    assert context["function_version"] == response["ExecutedVersion"]
    assert context["invoked_function_arn"].endswith(":function:loopml-test-echo:live")
    assert context["memory_limit_in_mb"] == 256
    assert 0 < context["remaining_ms"] <= 2000
    expected = f"[loopml-test-echo:{response['ExecutedVersion']}] echo invoked request {context['aws_request_id']}"
    # output is forwarded by a reader thread, asynchronously
    wait_for(lambda: expected in function_log.lines, 5, "the handler's output forwarded", interval_s=0.02)


def test_qualifier_forms_name_colon_alias_and_full_arn(stack):
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stack.function_name('echo')}:live"
    by_arn = json.loads(stack.client("lambda").invoke(FunctionName=arn, Payload=b"{}")["Payload"].read())
    assert by_arn["context"]["invoked_function_arn"] == arn
    latest = stack.client("lambda").invoke(FunctionName=stack.function_name("echo"), Payload=b"{}")
    assert latest["ExecutedVersion"] == "$LATEST"


def test_handler_exception_is_reported_like_lambda(stack):
    response, body = _invoke(stack, "fail", {"mode": "boom"}, Qualifier="live")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "PoisonError"
    assert body["errorMessage"] == "cannot handle 'boom'"
    assert any("app.py" in frame for frame in body["stackTrace"])
    assert not any("worker.py" in frame for frame in body["stackTrace"])


def test_runtime_exit_is_an_error_and_the_next_invoke_gets_a_fresh_worker(stack):
    response, body = _invoke(stack, "fail", {"mode": "exit"}, Qualifier="live")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]

    _, again = _invoke(stack, "fail", {"mode": "flaky", "key": "after-exit", "fail_times": 0}, Qualifier="live")
    assert again == {"attempts": 1, "key": "after-exit"}


def test_init_failure_is_reported_like_lambda_and_retried_on_the_next_invoke(stack):
    for _ in range(2):
        response, body = _invoke(stack, "broken", {}, Qualifier="live")
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Runtime.ImportModuleError"
        assert body["errorMessage"] == (
            "Unable to import module 'app': No module named 'loopml_dependency_that_is_not_in_any_layer'"
        )
    assert not [s for s in stack.cold_starts() if s.function == "loopml-test-broken"]


def test_post_invoke_hooks_run_after_the_response(stack):
    s3 = stack.client("s3")
    _invoke(stack, "echo", {}, Qualifier="live")  # warm, so the timing below is the invocation's
    started = time.monotonic()
    _invoke(stack, "echo", {"post_invoke": "after/marker"}, Qualifier="live")
    assert time.monotonic() - started < 0.8, "the 1 s hook must not delay the response"
    listed = lambda: s3.list_objects_v2(Bucket="loopml-test-results", Prefix="after/").get("KeyCount")  # noqa: E731
    wait_for(listed, 10, "the post-invoke hook's object", interval_s=0.05)
    assert s3.get_object(Bucket="loopml-test-results", Key="after/marker")["Body"].read() == b"after"


def test_a_call_outside_the_functions_grants_is_refused_as_on_aws(stack):
    """echo may write after/ of the results bucket and nothing else: moto would serve any call."""
    stack.client("s3").put_object(Bucket="loopml-test-results", Key="private/x", Body=b"secret")
    _, body = _invoke(stack, "echo", {"read": "private/x"}, Qualifier="live")
    assert body["error"]["Code"] == "AccessDenied"
    assert "s3:GetObject on resource: loopml-test-results/private/x" in body["error"]["Message"]
    assert "assumed-role/loopml-test-echo" in body["error"]["Message"]
    _, granted_but_write_only = _invoke(stack, "echo", {"read": "after/marker"}, Qualifier="live")
    assert granted_but_write_only["error"]["Code"] == "AccessDenied"  # "write" does not read


def test_timeout_kills_the_worker_and_reports_sandbox_timedout(stack):
    started = time.monotonic()
    response, body = _invoke(stack, "echo", {"sleep": 5}, Qualifier="live")
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]
    assert 1.9 < elapsed < 4.5
    _, fine = _invoke(stack, "echo", {"after": "timeout"}, Qualifier="live")
    assert fine["event"] == {"after": "timeout"}


def test_unknown_function_and_alias_are_resource_not_found(stack):
    lam = stack.client("lambda")
    with pytest.raises(ClientError) as missing:
        lam.invoke(FunctionName="loopml-test-nope", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as alias:
        lam.invoke(FunctionName=stack.function_name("echo"), Qualifier="nope", Payload=b"{}")
    assert alias.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_dry_run_and_event_invocation_types(stack):
    lam = stack.client("lambda")
    dry = lam.invoke(FunctionName=stack.function_name("echo"), InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204

    record = {
        "messageId": "event-invoke",
        "body": "async",
        "attributes": {"ApproximateReceiveCount": "1"},
    }
    queued = lam.invoke(
        FunctionName=stack.function_name("sqs_consumer"),
        Qualifier="live",
        InvocationType="Event",
        Payload=json.dumps({"Records": [record]}).encode(),
    )
    assert queued["StatusCode"] == 202
    s3 = stack.client("s3")
    listed = wait_for(
        lambda: (
            (found := s3.list_objects_v2(Bucket="loopml-test-results", Prefix="processed/async/"))["KeyCount"] and found
        ),
        10,
        "the asynchronous invocation's object",
        interval_s=0.1,
    )
    assert [o["Key"] for o in listed["Contents"]] == ["processed/async/event-invoke-1"]


def test_cold_start_is_measured_per_worker(stack):
    _invoke(stack, "echo", {}, Qualifier="live")
    stats = [s for s in stack.cold_starts() if s.function == "loopml-test-echo"]
    assert stats
    for worker in stats:
        assert worker.init_ms is not None
        assert 0 < worker.init_ms < worker.cold_start_ms
        assert worker.invocations >= 1


def test_step_functions_retry_on_custom_error_then_catch(stack):
    sfn = stack.client("stepfunctions")
    arn = stack.deployment.state_machines["retry-catch"]
    execution = sfn.start_execution(
        stateMachineArn=arn,
        name="retry-catch-1",
        input=json.dumps({"mode": "flaky", "key": "sfn", "fail_times": 2}),
    )["executionArn"]
    described = wait_for(
        lambda: (found := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and found,
        30,
        "the execution ended",
        interval_s=0.2,
    )

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["flaky"] == {"attempts": 3, "key": "sfn"}, "FlakyError must be retried until success"
    assert output["caught"]["Error"] == "PoisonError"
    assert json.loads(output["caught"]["Cause"])["errorType"] == "PoisonError"


def test_redeploy_publishes_a_version_and_alias_weights_split_traffic(stack):
    lam = stack.client("lambda")
    name = stack.function_name("echo")
    first = stack.deployment.versions["echo"]
    assert stack.redeploy("echo") == first, "unchanged code and configuration must not publish"

    second = stack.redeploy("echo", {"MARK": "canary"})
    assert second != first
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == second
    lam.update_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion=first,
        RoutingConfig={"AdditionalVersionWeights": {second: 0.3}},
    )
    try:
        executed = Counter()
        for _ in range(100):
            response = lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
            body = json.loads(response["Payload"].read())
            executed[response["ExecutedVersion"]] += 1
            assert body["version"] == response["ExecutedVersion"]
            assert body["mark"] == ("canary" if response["ExecutedVersion"] == second else None)
        assert set(executed) == {first, second}
        assert 12 <= executed[second] <= 50, executed  # 30 expected; binomial sd ~4.6
    finally:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second, RoutingConfig={})


def test_concurrent_invokes_scale_out_to_separate_workers(stack):
    from concurrent.futures import ThreadPoolExecutor

    def call(index: int) -> tuple[float, int]:
        started = time.monotonic()
        result = stack.invoke("echo", {"sleep": 1.0, "index": index})
        assert result.function_error is None, result.payload
        return time.monotonic() - started, json.loads(result.payload)["event"]["index"]

    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(call, range(3)))
    assert sorted(index for _, index in results) == [0, 1, 2]
    assert time.monotonic() - started < 2.7, "three 1 s invocations must run side by side"
    live = [s for s in stack.cold_starts() if s.function == "loopml-test-echo"]
    assert len({s.pid for s in live}) >= 3


def test_front_door_proxies_s3_faithfully_including_multipart_and_head(stack):
    import io

    s3 = stack.client("s3")
    big = bytes(range(256)) * (9 * 4096)  # 9 MiB: boto3 switches to a multipart upload
    s3.upload_fileobj(io.BytesIO(big), "loopml-test-results", "big/blob.bin")
    head = s3.head_object(Bucket="loopml-test-results", Key="big/blob.bin")
    assert head["ContentLength"] == len(big)
    assert s3.get_object(Bucket="loopml-test-results", Key="big/blob.bin")["Body"].read() == big
    ranged = s3.get_object(Bucket="loopml-test-results", Key="big/blob.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == big[10:20]
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="loopml-test-results", Key="big/none")
    assert missing.value.response["Error"]["Code"] == "404"


def test_lambda_and_emf_metrics_reach_cloudwatch_and_alarms_are_evaluated(stack):
    from datetime import UTC, datetime, timedelta

    cloudwatch = stack.client("cloudwatch")
    name = stack.function_name("fail")
    cloudwatch.put_metric_alarm(
        AlarmName="fail-live-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Dimensions=[{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:live"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    assert stack.evaluate_alarms()["fail-live-errors"] in ("OK", "ALARM")
    _invoke(stack, "fail", {"mode": "metric"}, Qualifier="live")
    assert stack.evaluate_alarms()["fail-live-errors"] == "ALARM"
    alarm = cloudwatch.describe_alarms(AlarmNames=["fail-live-errors"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"

    _invoke(stack, "echo", {"emf": {"Predictions": 3}}, Qualifier="live")

    def emitted() -> list[dict[str, Any]]:
        stack.flush_metrics()
        now = datetime.now(UTC)
        points: list[dict[str, Any]] = cloudwatch.get_metric_statistics(
            Namespace="loopml-test",
            MetricName="Predictions",
            Dimensions=[{"Name": "service", "Value": "echo"}],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return points

    # logs reach CloudWatch asynchronously, locally as on AWS
    stats = wait_for(emitted, 5, "the EMF metric in CloudWatch", interval_s=0.1)
    assert sum(point["Sum"] for point in stats) == 3


def test_log_type_tail_returns_the_invocations_log_and_each_function_has_its_file(stack):
    import base64

    response = stack.client("lambda").invoke(
        FunctionName=stack.function_name("echo"), Qualifier="live", Payload=b"{}", LogType="Tail"
    )
    request_id = json.loads(response["Payload"].read())["context"]["aws_request_id"]
    tail = base64.b64decode(response["LogResult"]).decode()
    lines = tail.splitlines()
    assert lines[0].startswith(f"START RequestId: {request_id} Version: {response['ExecutedVersion']}")
    assert f"echo invoked request {request_id}" in lines and "echo stderr line" in lines
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ") and "Max Memory Used:" in lines[-1]
    assert len(base64.b64decode(response["LogResult"])) <= 4096
    no_tail = stack.client("lambda").invoke(FunctionName=stack.function_name("echo"), Qualifier="live", Payload=b"{}")
    assert "LogResult" not in no_tail
    logged = (stack.state_dir / "logs" / "echo.log").read_text()
    assert f"\t{response['ExecutedVersion']}\techo invoked request {request_id}\n" in logged

"""What the synthesized template must guarantee, checked on the real and the sample declaration."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import assertions

from infra.constructs.nag import RESOURCELESS_ACTIONS
from loopml.topology import dlq_name, physical_name
from tests.infra.test_parity_and_lint import rate_minutes

if TYPE_CHECKING:
    from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra

Match = assertions.Match


def _logical_id(synth: Synth, type_: str, **props: Any) -> str:
    found = [
        k
        for k, v in synth.resources(type_).items()
        if all(v.get("Properties", {}).get(p) == value for p, value in props.items())
    ]
    assert len(found) == 1, f"expected one {type_} with {props}, found {found}"
    return found[0]


def _stage(synth: Synth) -> str:
    return synth.stack.deployment.stage


def _name(synth: Synth, name: str) -> str:
    return physical_name(_stage(synth), name)


def test_buckets_are_encrypted_private_tls_only_and_logged(synth: Synth) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == len(synth.topology.buckets) + 1  # + the access-log bucket
    policies = synth.resources("AWS::S3::BucketPolicy")
    for logical, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert bucket["DeletionPolicy"] == "Retain"
        tls_denials = [
            s
            for p in policies.values()
            if p["Properties"]["Bucket"] == {"Ref": logical}
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert tls_denials, f"{logical} accepts plain HTTP"
    declared = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(declared) == len(synth.topology.buckets)
    for bucket in declared:
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["captured-to-infrequent-access"]["Prefix"] == "captured/"
        assert rules["captured-to-infrequent-access"]["Transitions"] == [
            {"StorageClass": "STANDARD_IA", "TransitionInDays": 30}
        ]
        assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0


def test_every_queue_has_an_alarmed_dlq(synth: Synth) -> None:
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 2 * len(synth.topology.queues)
    topic = next(iter(synth.resources("AWS::SNS::Topic")))
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    for spec in synth.topology.queues:
        dlq = _logical_id(synth, "AWS::SQS::Queue", QueueName=_name(synth, dlq_name(spec.name)))
        synth.assertions.has_resource_properties(
            "AWS::SQS::Queue",
            {
                "QueueName": _name(synth, spec.name),
                "SqsManagedSseEnabled": True,
                "VisibilityTimeout": spec.visibility_timeout_s,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                    "maxReceiveCount": spec.max_receive_count,
                },
            },
        )
        depth_alarms = [
            a["Properties"]
            for a in alarms
            if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}} in a["Properties"]["Dimensions"]
        ]
        assert len(depth_alarms) == 1
        assert depth_alarms[0]["Threshold"] == 0
        assert depth_alarms[0]["ComparisonOperator"] == "GreaterThanThreshold"
        assert {"Ref": topic} in depth_alarms[0]["AlarmActions"]
    for logical in queues:  # every queue (DLQs too) refuses plain HTTP
        synth.assertions.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": logical}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                    )
                },
            },
        )


def test_each_function_has_its_own_role_and_a_live_alias(synth: Synth) -> None:
    functions = synth.declared_functions()
    assert len(functions) == len(synth.topology.functions)
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}
    assert len(roles) == len(functions)
    for spec in synth.topology.functions:
        logical = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, spec.name))
        props = functions[logical]["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert len(props["Layers"]) == (3 if spec.layer_set == "compile" else 2)  # the sample passes one list
        assert props["MemorySize"] == spec.memory_mb
        assert props["Timeout"] == spec.timeout_s
        env = props["Environment"]["Variables"]
        assert set(spec.environment) | set(spec.resources) <= set(env)
        synth.assertions.has_resource_properties(
            "AWS::Lambda::Alias", {"Name": spec.alias, "FunctionName": {"Ref": logical}}
        )


def test_inference_serves_the_context_model_from_the_champion(synth: Synth) -> None:
    logical = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, "inference"))
    env = synth.template["Resources"][logical]["Properties"]["Environment"]["Variables"]
    assert env["MODEL_VERSION"] == "champion"
    assert env["MODEL_NAME"] == synth.stack.deployment.model
    for spec in synth.topology.functions:  # every function naming a model names the context's
        if "MODEL_NAME" in spec.environment:
            fn = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, spec.name))
            variables = synth.template["Resources"][fn]["Properties"]["Environment"]["Variables"]
            assert variables["MODEL_NAME"] == synth.stack.deployment.model


def test_queue_consumers_poll_through_the_alias_with_partial_batch_failures(sample: Synth) -> None:
    mappings = sample.resources("AWS::Lambda::EventSourceMapping")
    expected = [(f, s) for f in sample.topology.functions for s in f.event_sources]
    assert len(mappings) == len(expected) > 0
    aliases = sample.resources("AWS::Lambda::Alias")
    for spec, source in expected:
        function = _logical_id(sample, "AWS::Lambda::Function", FunctionName=_name(sample, spec.name))
        alias = next(k for k, v in aliases.items() if v["Properties"]["FunctionName"] == {"Ref": function})
        queue = _logical_id(sample, "AWS::SQS::Queue", QueueName=_name(sample, source.queue))
        sample.assertions.has_resource_properties(
            "AWS::Lambda::EventSourceMapping",
            {
                "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
                "BatchSize": source.batch_size,
                "MaximumBatchingWindowInSeconds": source.max_batching_window_s,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
        )
        (mapping,) = [
            m for m in mappings.values() if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
        ]
        # the alias (function-name:live), never the unqualified function
        target = json.dumps(mapping["Properties"]["FunctionName"])
        assert json.dumps({"Ref": alias}) in target and f":{spec.alias}" in target


def test_schedules_target_the_alias_and_honour_enabled(sample: Synth) -> None:
    rules = sample.resources("AWS::Events::Rule")
    expected = [(f, s) for f in sample.topology.functions for s in f.schedules]
    assert len(rules) == len(expected) > 0
    for spec, schedule in expected:
        rule = rules[_logical_id(sample, "AWS::Events::Rule", Name=_name(sample, f"{spec.name}-{schedule.name}"))]
        props = rule["Properties"]
        assert rate_minutes(props["ScheduleExpression"]) == schedule.rate_minutes
        assert props["State"] == ("ENABLED" if schedule.enabled else "DISABLED")
        (target,) = props["Targets"]
        function = _logical_id(sample, "AWS::Lambda::Function", FunctionName=_name(sample, spec.name))
        alias = next(
            k
            for k, v in sample.resources("AWS::Lambda::Alias").items()
            if v["Properties"]["FunctionName"] == {"Ref": function}
        )
        assert target["Arn"] == {"Ref": alias}
        if schedule.input:
            assert json.loads(target["Input"]) == schedule.input


def _route_table(synth: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> method properties, paths rebuilt from the resource tree."""
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path_of(ref: Any) -> str:
        if isinstance(ref, dict) and "Ref" in ref and ref["Ref"] in resources:
            props = resources[ref["Ref"]]["Properties"]
            return f"{path_of(props['ParentId'])}/{props['PathPart']}"
        return ""  # the API's root resource

    return {
        (m["Properties"]["HttpMethod"], path_of(m["Properties"]["ResourceId"]) or "/"): m["Properties"]
        for m in synth.resources("AWS::ApiGateway::Method").values()
    }


def test_api_routes_have_their_declared_auth_and_proxy_to_the_alias(synth: Synth) -> None:
    table = _route_table(synth)
    aliases = synth.resources("AWS::Lambda::Alias")
    for spec in synth.topology.functions:
        function = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, spec.name))
        alias = next(k for k, v in aliases.items() if v["Properties"]["FunctionName"] == {"Ref": function})
        for route in spec.routes:
            method = table[(route.method, route.path)]
            assert method["ApiKeyRequired"] is (route.auth == "api_key")
            assert method["AuthorizationType"] == {"iam": "AWS_IAM"}.get(route.auth, "NONE")
            assert method["Integration"]["Type"] == "AWS_PROXY"
            assert {"Ref": alias} in method["Integration"]["Uri"]["Fn::Join"][1]
            assert "RequestValidatorId" in method
            if route.method in ("POST", "PUT"):
                assert "application/json" in method["RequestModels"]
    if any(r.auth == "api_key" for f in synth.topology.functions for r in f.routes):
        synth.assertions.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
        synth.assertions.has_resource_properties(
            "AWS::ApiGateway::UsagePlan", {"Throttle": Match.object_like({"RateLimit": Match.any_value()})}
        )
    synth.assertions.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "TracingEnabled": True,
            "MethodSettings": Match.array_with([Match.object_like({"ThrottlingRateLimit": Match.any_value()})]),
        },
    )


DATA_SERVICES = ("s3", "sqs", "dynamodb", "states", "lambda", "kms", "sns")


def test_no_wildcard_action_on_data(synth: Synth) -> None:
    policies = list(synth.resources("AWS::IAM::Policy").values())
    assert policies
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                assert action != "*"
                service, _, verb = action.partition(":")
                assert verb != "*", f"{action} grants a whole service"
                if statement.get("Resource") == "*":
                    assert action in RESOURCELESS_ACTIONS, f"{action} on every resource"
                    assert service not in DATA_SERVICES
                if service in DATA_SERVICES and "*" in verb:
                    # grant_* action families are prefixes of object-level verbs, never "s3:*"
                    assert re.fullmatch(r"[A-Z][A-Za-z]+\*", verb), action


def test_grants_follow_the_declaration(sample: Synth) -> None:
    """Only the declared accesses: a reader cannot write, a writer cannot delete."""

    def actions_of(function: str) -> set[str]:
        fn = _logical_id(sample, "AWS::Lambda::Function", FunctionName=_name(sample, function))
        role = sample.template["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0]
        found: set[str] = set()
        for policy in sample.resources("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                for s in policy["Properties"]["PolicyDocument"]["Statement"]:
                    found.update(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        return found

    inference, worker, admin = actions_of("inference"), actions_of("worker"), actions_of("admin")
    assert "s3:GetObject*" in inference and not any(a.startswith(("s3:Put", "s3:Delete")) for a in inference)
    assert "sqs:SendMessage" in inference and "sqs:ReceiveMessage" not in inference
    assert "s3:PutObject" in worker and not any(a.startswith("s3:Delete") for a in worker)
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "states:StartExecution", "states:DescribeExecution"} <= worker
    assert any(a.startswith("dynamodb:PutItem") for a in worker)
    assert {"lambda:UpdateAlias", "lambda:PublishVersion", "lambda:InvokeFunction"} <= admin
    assert "states:StartExecution" not in admin and "sqs:SendMessage" not in admin


def test_state_machines_log_trace_and_may_invoke_their_functions(sample: Synth) -> None:
    machines = sample.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == len(sample.topology.state_machines)
    for spec in sample.topology.state_machines:
        logical = _logical_id(sample, "AWS::StepFunctions::StateMachine", StateMachineName=_name(sample, spec.name))
        props = machines[logical]["Properties"]
        assert props["TracingConfiguration"] == {"Enabled": True}
        assert props["LoggingConfiguration"]["Level"] == "ALL"
        assert set(props["DefinitionSubstitutions"]) == set(spec.substitutions)
        role = props["RoleArn"]["Fn::GetAtt"][0]
        invokes = [
            s
            for p in sample.resources("AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Action"] == "lambda:InvokeFunction"
        ]
        assert invokes


def test_provisioned_concurrency_comes_from_context(sample: Synth) -> None:
    function = _logical_id(sample, "AWS::Lambda::Function", FunctionName=_name(sample, "inference"))
    sample.assertions.has_resource_properties(
        "AWS::Lambda::Alias",
        {
            "FunctionName": {"Ref": function},
            "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2},
        },
    )


def test_dashboard_and_service_alarms(synth: Synth) -> None:
    synth.assertions.has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": _name(synth, f"{synth.stack.deployment.model}-model")}
    )
    body = json.dumps(synth.resources("AWS::CloudWatch::Dashboard"))
    for text in ("Drift scores", "Canary vs champion", "ApproximateAgeOfOldestMessage", "Throttles", "Latency"):
        assert text in body
    names = {a["Properties"].get("AlarmName") for a in synth.resources("AWS::CloudWatch::Alarm").values()}
    assert {_name(synth, "api-5xx"), _name(synth, "api-p99-latency")} <= names
    synth.assertions.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    synth.assertions.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _s3_object_grants(synth: Synth, function: str) -> dict[str, set[str]]:
    """Object-key pattern -> S3 actions, for the function's role."""
    fn = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, function))
    role = synth.template["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0]
    found: dict[str, set[str]] = {}
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if not any(a.startswith("s3:") for a in actions):
                continue
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                parts = resource.get("Fn::Join", ["", []])[1] if isinstance(resource, dict) else [resource]
                suffix = "".join(p for p in parts if isinstance(p, str))
                if suffix.startswith("/"):
                    found.setdefault(suffix[1:], set()).update(a for a in actions if a.startswith("s3:"))
    return found


def test_each_function_reaches_only_the_bucket_prefixes_it_owns(real: Synth) -> None:
    from loopml import keys

    synth = real
    writes = ("s3:Put", "s3:Delete", "s3:Abort")
    for spec in synth.topology.functions:
        grants = _s3_object_grants(synth, spec.name)
        declared = {keys.object_pattern(p) for g in spec.grants if g.kind == "bucket" for p in g.prefixes}
        assert grants and set(grants) == declared, (spec.name, sorted(grants))
        assert "*" not in grants, f"{spec.name} reaches the whole bucket"
        if spec.name != "retrain":  # only the registering role may write the registry
            registry_writes = grants.get(keys.object_pattern(keys.MODELS), set())
            assert not any(a.startswith(writes) for a in registry_writes), (spec.name, registry_writes)
    assert set(_s3_object_grants(synth, "inference")) == {keys.object_pattern(keys.MODELS)}
    assert not any(a.startswith(writes) for a in _s3_object_grants(synth, "inference")["models/*"])


def _layer_kinds(synth: Synth, function: str) -> list[str]:
    """The function's layers by construct (``Layers/Serving`` → ``serving``), in path order."""
    logical = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, function))
    refs = [ref["Ref"] for ref in synth.template["Resources"][logical]["Properties"]["Layers"]]
    return [
        next(k for k in ("deps", "serving", "compile", "loopml") if ref.lower().startswith("layers" + k))
        for ref in refs
    ]


def test_each_function_runs_with_its_declared_layer_set(real: Synth) -> None:
    """Compiled-runtime inference: the slim layer, no scikit-learn; retrain: the compile layer too."""
    assert _layer_kinds(real, "inference") == ["serving", "loopml"]
    assert _layer_kinds(real, "retrain") == ["deps", "compile", "loopml"]
    for name in ("feedback", "drift", "starter", "batch"):
        assert _layer_kinds(real, name) == ["deps", "loopml"], name
    logical = _logical_id(real, "AWS::Lambda::Function", FunctionName=_name(real, "inference"))
    properties = real.template["Resources"][logical]["Properties"]
    assert properties["MemorySize"] == 512 and properties["Environment"]["Variables"]["MODEL_RUNTIME"] == "compiled"
    assert "SnapStart" not in properties


def test_a_models_runtime_and_snap_start_come_from_its_declaration(tmp_path: Path) -> None:
    from infra.app import build_app
    from loopml.topology import ModelSpec, declaration
    from tests.infra.conftest import SKIP_BUNDLING, _synth

    topology = declaration((ModelSpec(name="default", snap_start=True), ModelSpec(name="legacy", runtime="sklearn")))
    app, stack = build_app(dict(SKIP_BUNDLING), str(tmp_path), topology)
    synth = _synth(app, stack, topology)
    first = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, "inference"))
    assert synth.template["Resources"][first]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    legacy = _logical_id(synth, "AWS::Lambda::Function", FunctionName=_name(synth, "inference-legacy"))
    properties = synth.template["Resources"][legacy]["Properties"]
    assert properties["Environment"]["Variables"]["MODEL_RUNTIME"] == "sklearn" and properties["MemorySize"] == 2048
    assert "SnapStart" not in properties
    assert _layer_kinds(synth, "inference-legacy") == ["deps", "loopml"]

"""Mistakes in the declaration or in a construct fail synth with a message that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_iam as iam

from infra.constructs.deployment import Deployment, parse_provisioned
from infra.constructs.function import DeclaredFunction, MissingFunctionCode
from infra.constructs.nag import flatten, reason_for, wildcard_findings
from infra.stack import UnexplainedWildcard
from loopml.topology import FunctionSpec, Route, Topology
from tests.infra.conftest import SAMPLE_TOPOLOGY, Synth, build_sample

pytestmark = pytest.mark.infra


def test_a_declared_function_without_code_fails_synth(tmp_path: Path) -> None:
    topology = SAMPLE_TOPOLOGY.model_copy(
        update={"functions": (*SAMPLE_TOPOLOGY.functions, FunctionSpec(name="feedback", description="x"))}
    )
    with pytest.raises(MissingFunctionCode, match=r"'feedback' is declared .* functions/feedback/app\.py"):
        build_sample(tmp_path, topology=topology)  # writes handlers for the sample's functions only


def test_a_hand_written_wildcard_is_not_silently_acknowledged(tmp_path: Path) -> None:
    def sloppy(*args: Any, **kwargs: Any) -> DeclaredFunction:
        construct = DeclaredFunction(*args, **kwargs)
        construct.handler.role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
        return construct

    topology = Topology(
        buckets=SAMPLE_TOPOLOGY.buckets,
        queues=SAMPLE_TOPOLOGY.queues,
        functions=(FunctionSpec(name="inference", description="x", routes=(Route(method="GET", path="/health"),)),),
    )
    with pytest.raises(UnexplainedWildcard, match=r"Action::s3:\*.*Resource::\*|Resource::\*.*Action::s3:\*"):
        build_sample(tmp_path, topology=topology, function_constructs={"inference": sloppy})


def test_finding_ids_match_cdk_nag_rendering() -> None:
    arn = {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket12", "Arn"]}, "/*"]]}
    assert flatten(arn) == "<Bucket12.Arn>/*"
    assert flatten({"Ref": "AWS::Region"}) == "<AWS::Region>"
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject*", "s3:GetBucket*"], "Resource": [arn]},
            {"Effect": "Allow", "Action": "xray:PutTraceSegments", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        ]
    }
    findings = dict(wildcard_findings(document))
    assert set(findings) == {
        "Action::s3:GetObject*",
        "Action::s3:GetBucket*",
        "Resource::<Bucket12.Arn>/*",
        "Resource::*",
    }
    assert reason_for("Resource::*", frozenset({"xray:PutTraceSegments"}))
    assert reason_for("Resource::*", frozenset({"xray:PutTraceSegments", "s3:GetObject"})) is None
    assert reason_for("Action::s3:*", frozenset({"s3:*"})) is None
    assert reason_for("Action::dynamodb:*", frozenset({"dynamodb:*"})) is None


def test_context_parsing() -> None:
    context = {"stage": "prod", "model": "churn", "provisioned_concurrency": "inference=3", "log_retention_days": 90}
    deployment = Deployment.from_context(context.get)
    assert (deployment.stage, deployment.model) == ("prod", "churn")
    assert deployment.provisioned_concurrency == {"inference": 3}
    assert deployment.name("capture") == "loopml-prod-capture"
    assert Deployment.from_context({}.get).stage == "dev"
    assert parse_provisioned({"inference": "2"}) == {"inference": 2}
    with pytest.raises(ValueError, match="architecture"):
        Deployment.from_context({"architecture": "sparc"}.get)
    with pytest.raises(ValueError, match="log_retention_days"):
        Deployment.from_context({"log_retention_days": 31}.get)


def _physical_names(template: dict[str, Any]) -> set[str]:
    props = ("FunctionName", "QueueName", "TableName", "StateMachineName", "Name", "TopicName", "AlarmName")
    props += ("DashboardName", "LayerName", "UsagePlanName", "LogGroupName")
    return {
        value
        for resource in template["Resources"].values()
        for prop in props
        if isinstance(value := resource.get("Properties", {}).get(prop), str)
    }


def test_two_stages_live_side_by_side(sample: Synth, tmp_path: Path) -> None:
    """Every physical name carries the stage, so two stages never collide in one account."""
    app, stack = build_sample(tmp_path, stage="prod")
    prod = _physical_names(app.synth().get_stack_artifact(stack.artifact_id).template)
    test = _physical_names(sample.template)
    for stage, names in (("prod", prod), ("test", test)):
        assert len(names) > 20
        assert all(f"loopml-{stage}-" in n or n == "live" for n in names), names
    assert prod & test == {"live"}


def test_arm64_is_an_option(tmp_path: Path) -> None:
    """Layers are built per architecture; arm64 cannot be executed here, so only synth is checked."""
    from infra.app import build_app
    from tests.infra.conftest import REAL_HANDLER, SKIP_BUNDLING

    if not REAL_HANDLER.is_file():
        pytest.skip("functions/inference/app.py is not written yet")
    app, stack = build_app({**SKIP_BUNDLING, "architecture": "arm64", "stage": "arm"}, str(tmp_path))
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    functions = [
        r
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and not k.startswith("BucketNotificationsHandler")  # CDK's own
    ]
    layers = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert functions and all(f["Properties"]["Architectures"] == ["arm64"] for f in functions)
    assert {tuple(x["Properties"]["CompatibleArchitectures"]) for x in layers} == {("arm64",)}
    assert any(x["Properties"]["LayerName"] == "loopml-arm-deps-arm64" for x in layers)

"""The template matches the declaration exactly, passes cfn-lint, and has no unacknowledged cdk-nag finding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cdk_nag import AwsSolutionsChecks

from loopml.topology import dlq_name, physical_name

if TYPE_CHECKING:
    from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra


def rate_minutes(expression: str) -> int:
    """``rate(1 hour)`` -> 60: CDK writes rates in the largest whole unit."""
    count, unit = expression.removeprefix("rate(").removesuffix(")").split()
    return int(count) * {"minute": 1, "hour": 60, "day": 1440}[unit.removesuffix("s")]


def _names(synth: Synth, type_: str, prop: str) -> set[str]:
    return {r["Properties"][prop] for r in synth.resources(type_).values()}


def _routes(synth: Synth) -> set[tuple[str, str]]:
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path_of(ref: Any) -> str:
        if isinstance(ref, dict) and ref.get("Ref") in resources:
            props = resources[ref["Ref"]]["Properties"]
            return f"{path_of(props['ParentId'])}/{props['PathPart']}"
        return ""

    return {
        (m["Properties"]["HttpMethod"], path_of(m["Properties"]["ResourceId"]) or "/")
        for m in synth.resources("AWS::ApiGateway::Method").values()
    }


def test_template_matches_the_declaration(synth: Synth) -> None:
    """Local stack and cloud read the same TOPOLOGY: nothing may be added or dropped on the way."""
    topology, stage = synth.topology, synth.stack.deployment.stage

    def name(n: str) -> str:
        return physical_name(stage, n)

    assert {f["Properties"]["FunctionName"] for f in synth.declared_functions().values()} == {
        name(f.name) for f in topology.functions
    }
    assert _names(synth, "AWS::SQS::Queue", "QueueName") == {
        name(n) for q in topology.queues for n in (q.name, dlq_name(q.name))
    }
    assert _routes(synth) == {(r.method, r.path) for f in topology.functions for r in f.routes}
    rules = synth.resources("AWS::Events::Rule").values()
    assert {
        (r["Properties"]["Name"], rate_minutes(r["Properties"]["ScheduleExpression"]), r["Properties"]["State"])
        for r in rules
        if "ScheduleExpression" in r["Properties"]
    } == {
        (name(f"{f.name}-{s.name}"), s.rate_minutes, "ENABLED" if s.enabled else "DISABLED")
        for f in topology.functions
        for s in f.schedules
    }
    assert {
        (r["Properties"]["Name"], tuple(r["Properties"]["EventPattern"]["detail"]["status"]))
        for r in rules
        if "EventPattern" in r["Properties"]
    } == {
        (name(f"{f.name}-watch-{w.state_machine}"), w.statuses) for f in topology.functions for w in f.execution_watches
    }
    assert _names(synth, "AWS::StepFunctions::StateMachine", "StateMachineName") == {
        name(m.name) for m in topology.state_machines
    }
    assert _names(synth, "AWS::DynamoDB::Table", "TableName") == {name(t.name) for t in topology.tables}
    assert {(f"{e.queue}", f.name) for f in topology.functions for e in f.event_sources} == {
        (
            _queue_name_of(synth, m["Properties"]["EventSourceArn"]).removeprefix(name("")),
            _function_name_of_alias(synth, m["Properties"]["FunctionName"]).removeprefix(name("")),
        )
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
    }
    bucket_names = [json.dumps(b["Properties"]["BucketName"]) for b in synth.resources("AWS::S3::Bucket").values()]
    for bucket in topology.buckets:
        assert sum(f'"{name(bucket.name)}-"' in n for n in bucket_names) == 1
    assert _notifications(synth) == {
        (b.name, n.prefix, n.suffix, n.queue) for b in topology.buckets for n in topology.notifications(b.name)
    }
    assert len(synth.cdk_handlers()) == (1 if _notifications(synth) else 0)


def _notifications(synth: Synth) -> set[tuple[str, str, str, str]]:
    """(bucket, prefix, suffix, queue) of every object-created notification, by declared names."""
    stage = synth.stack.deployment.stage
    found = set()
    for custom in synth.resources("Custom::S3BucketNotifications").values():
        props = custom["Properties"]
        bucket_name = json.dumps(synth.template["Resources"][props["BucketName"]["Ref"]]["Properties"]["BucketName"])
        bucket = next(b.name for b in synth.topology.buckets if f'"{physical_name(stage, b.name)}-"' in bucket_name)
        for config in props["NotificationConfiguration"].get("QueueConfigurations", []):
            assert config["Events"] == ["s3:ObjectCreated:*"]
            rules = {r["Name"].lower(): r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
            queue = _queue_name_of(synth, config["QueueArn"]).removeprefix(physical_name(stage, ""))
            found.add((bucket, rules.get("prefix", ""), rules.get("suffix", ""), queue))
    return found


def test_every_notified_queue_is_declared() -> None:
    """Partial topologies may leave a notified queue out; the real declaration never does."""
    from loopml.topology import TOPOLOGY

    queues = {q.name for q in TOPOLOGY.queues}
    for bucket in TOPOLOGY.buckets:
        assert {n.queue for n in bucket.notifications} <= queues
        assert TOPOLOGY.notifications(bucket.name) == bucket.notifications


def _queue_name_of(synth: Synth, arn: dict[str, list[str]]) -> str:
    return synth.template["Resources"][arn["Fn::GetAtt"][0]]["Properties"]["QueueName"]


def _function_name_of_alias(synth: Synth, target: Any) -> str:
    """Event source mappings name ``<function>:<alias>``; only an alias target counts."""
    text = json.dumps(target)
    for logical, alias in synth.resources("AWS::Lambda::Alias").items():
        if json.dumps({"Ref": logical}) in text:
            function = alias["Properties"]["FunctionName"]["Ref"]
            return synth.template["Resources"][function]["Properties"]["FunctionName"]
    raise AssertionError(f"event source mapping does not target an alias: {text}")


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synth) -> None:
    result = AwsSolutionsChecks(synth.app).validate_scope(synth.stack)
    findings = [(v.rule_name, [r.construct_path for r in v.violating_resources]) for v in result.violations]
    assert result.success, findings


def test_every_acknowledgement_has_a_written_reason(synth: Synth) -> None:
    from aws_cdk import Validations

    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    entries = [
        (rule, reason)
        for node in synth.stack.node.find_all()
        for meta in node.node.metadata
        if meta.type == key
        for rule, reason in meta.data.items()
    ]
    assert entries
    for rule, reason in entries:
        text = reason if isinstance(reason, str) else json.dumps(reason)
        assert len(text) > 40, f"{rule}: reason too thin: {text!r}"


def test_cfn_lint_reports_no_errors(synth: Synth) -> None:
    template = next(Path(synth.outdir).glob(f"{synth.stack.artifact_id}.template.json"))
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", str(template)], capture_output=True, text=True, check=False
    )
    # parseable: file:line:col:endline:endcol:RULE:message; exit code bit 2 means errors (4 warnings)
    errors = [
        line for line in result.stdout.splitlines() if line.split(":")[5:6] and line.split(":")[5].startswith("E")
    ]
    assert result.returncode & 3 == 0 and not errors, result.stdout + result.stderr

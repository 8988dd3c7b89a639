"""Synthesizes the CDK app once per session (jsii start-up is slow) for every infra test.

Two stacks are synthesized: the real one from ``loopml.topology.TOPOLOGY`` (layer bundling skipped, so
no pip run) and a sample declaration that exercises what the real one does not use yet (tables, event
sources, schedules, IAM routes, state machines, cross-function grants) against a temporary functions
folder with trivial handlers.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

from aws_cdk import App, assertions  # noqa: E402

from infra.app import FEATURE_FLAGS, build_app  # noqa: E402
from infra.constructs.deployment import Deployment  # noqa: E402
from infra.stack import LoopmlStack  # noqa: E402
from loopml.topology import (  # noqa: E402
    BucketSpec,
    EventSource,
    FunctionSpec,
    Grant,
    Notification,
    QueueSpec,
    Ref,
    Route,
    Schedule,
    StateMachineSpec,
    TableSpec,
    Topology,
)

SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}
REAL_HANDLER = ROOT / "functions" / "inference" / "app.py"

SAMPLE_TOPOLOGY = Topology(
    buckets=(
        BucketSpec(name="models"),
        BucketSpec(
            name="captures",
            notifications=(
                Notification(prefix="drop/", queue="capture", suffix=".csv"),
                Notification(prefix="other/", queue="feedback"),
                Notification(prefix="ignored/", queue="undeclared"),  # a subset topology leaves it out
            ),
        ),
    ),
    queues=(QueueSpec(name="capture", visibility_timeout_s=180), QueueSpec(name="feedback", max_receive_count=5)),
    tables=(TableSpec(name="idempotency"),),
    functions=(
        FunctionSpec(
            name="inference",
            description="serves",
            environment={"MODEL_NAME": "declared"},
            resources={
                "MODEL_BUCKET": Ref(kind="bucket", name="models"),
                "CAPTURE_QUEUE_URL": Ref(kind="queue", name="capture", attribute="url"),
                # declared later: resolved by name before it is built
                "WORKER_FUNCTION": Ref(kind="function", name="worker"),
            },
            grants=(
                Grant(kind="bucket", name="models", access="read", prefixes=("models/",)),
                Grant(kind="queue", name="capture", access="send"),
            ),
            routes=(Route(method="POST", path="/predict"), Route(method="GET", path="/health", auth="none")),
        ),
        FunctionSpec(
            name="worker",
            description="drains captures",
            timeout_s=30,
            resources={
                "CAPTURE_BUCKET": Ref(kind="bucket", name="captures"),
                "TABLE": Ref(kind="table", name="idempotency"),
                "RETRAIN_ARN": Ref(kind="state_machine", name="retraining", attribute="arn"),
            },
            grants=(
                Grant(kind="bucket", name="captures", access="write", prefixes=("captured/",)),
                Grant(kind="queue", name="capture", access="consume"),
                Grant(kind="table", name="idempotency", access="read_write"),
                Grant(kind="state_machine", name="retraining", access="start"),
                Grant(kind="state_machine", name="retraining", access="read"),
            ),
            event_sources=(EventSource(queue="capture", batch_size=50, max_batching_window_s=5),),
            schedules=(
                Schedule(name="hourly", rate_minutes=60, input={"action": "compact"}),
                Schedule(name="paused", rate_minutes=5, enabled=False),
            ),
        ),
        FunctionSpec(
            name="admin",
            description="operator actions",
            resources={"INFERENCE_FUNCTION": Ref(kind="function", name="inference")},
            grants=(
                Grant(kind="function", name="inference", access="update_function"),
                Grant(kind="function", name="inference", access="invoke"),
                Grant(kind="bucket", name="models", access="read_write", prefixes=("models/",)),
            ),
            routes=(Route(method="POST", path="/admin/{model}/promote", auth="iam"),),
        ),
    ),
    state_machines=(
        StateMachineSpec(
            name="retraining",
            definition="statemachine/retraining.asl.json",
            substitutions={"AdminArn": Ref(kind="function", name="admin", attribute="arn")},
        ),
    ),
)

ASL = {
    "StartAt": "Promote",
    "States": {
        "Promote": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${AdminArn}", "Payload.$": "$"},
            "End": True,
        }
    },
}


@dataclass
class Synth:
    """One synthesized stack: the template as a dict and as ``assertions.Template``."""

    app: App
    stack: LoopmlStack
    template: dict[str, Any]
    assertions: assertions.Template
    outdir: Path
    topology: Topology

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def cdk_handlers(self) -> set[str]:
        """Functions CDK adds itself (the bucket-notifications custom resource), not declared ones."""
        return {k for k in self.resources("AWS::Lambda::Function") if k.startswith("BucketNotificationsHandler")}

    def declared_functions(self) -> dict[str, dict[str, Any]]:
        handlers = self.cdk_handlers()
        return {k: v for k, v in self.resources("AWS::Lambda::Function").items() if k not in handlers}


def _synth(app: App, stack: LoopmlStack, topology: Topology) -> Synth:
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template = artifact.template
    return Synth(app, stack, template, assertions.Template.from_json(template), Path(assembly.directory), topology)


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app as ``make synth`` builds it (dev stage, default model), without building layers."""
    if not REAL_HANDLER.is_file():
        pytest.skip("functions/inference/app.py is not written yet")
    from loopml.topology import TOPOLOGY

    app, stack = build_app(dict(SKIP_BUNDLING), str(tmp_path_factory.mktemp("cdk-real")))
    return _synth(app, stack, TOPOLOGY)


def write_functions(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "app.py").write_text("def handler(event, context):\n    return event\n")
    return root


def build_sample(tmp: Path, stage: str = "test", model: str = "churn", **overrides: Any) -> tuple[App, LoopmlStack]:
    functions_root = write_functions(tmp / "functions", [f.name for f in SAMPLE_TOPOLOGY.functions])
    infra_root = tmp / "infra"
    (infra_root / "statemachine").mkdir(parents=True, exist_ok=True)
    (infra_root / "statemachine" / "retraining.asl.json").write_text(json.dumps(ASL))
    app = App(context={**FEATURE_FLAGS, **SKIP_BUNDLING}, outdir=str(tmp / "cdk.out"))
    deployment = Deployment(
        stage=stage,
        model=model,
        functions_root=functions_root,
        infra_root=infra_root,
        provisioned_concurrency={"inference": 2},
    )
    stack = LoopmlStack(
        app,
        deployment.name("stack"),
        deployment=deployment,
        topology=overrides.pop("topology", SAMPLE_TOPOLOGY),
        **overrides,
    )
    return app, stack


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A declaration using every construct feature, against trivial handlers."""
    tmp = tmp_path_factory.mktemp("cdk-sample")
    app, stack = build_sample(tmp)
    return _synth(app, stack, SAMPLE_TOPOLOGY)


@pytest.fixture(scope="session")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The real app declaring two models: each lane's function, alias, routes, schedule and grants."""
    from loopml.topology import ModelSpec, declaration

    topology = declaration((ModelSpec(name="default"), ModelSpec(name="wine")))
    app, stack = build_app(dict(SKIP_BUNDLING), str(tmp_path_factory.mktemp("cdk-two")), topology)
    return _synth(app, stack, topology)


@pytest.fixture(params=["real", "sample", "two_models"])
def synth(request: pytest.FixtureRequest) -> Synth:
    return request.getfixturevalue(request.param)

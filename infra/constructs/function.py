"""``LoopmlFunction``: one declared ``FunctionSpec`` as a Lambda function behind its ``live`` alias.

Everything callers see (API routes, queue pollers, schedules, state machines) targets the alias, so a
rollout is an alias update and a rollback is another one. The function gets its own role whose only
permissions come from ``spec.grants`` through ``grant_*`` (plus writing its own log group and X-Ray).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.nag import acknowledge
from infra.constructs.resources import FunctionHandle, Resources, pascal
from loopml.topology import FunctionSpec

if TYPE_CHECKING:
    from infra.constructs.api import LoopmlApi


class MissingFunctionCode(FileNotFoundError):
    """A function is declared in loopml.topology but its code folder or handler module is missing."""


def function_code_dir(deployment: Deployment, spec: FunctionSpec) -> str:
    """``functions/<name>/``, checked so a declared-but-unwritten function fails synth clearly."""
    folder = deployment.functions_root / spec.folder
    module = spec.handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
    if not folder.is_dir():
        raise MissingFunctionCode(
            f"function {spec.name!r} is declared in loopml.topology but {folder} does not exist: "
            f"write functions/{spec.folder}/{module} or remove the declaration"
        )
    if not (folder / module).is_file():
        raise MissingFunctionCode(
            f"function {spec.name!r}: handler {spec.handler!r} needs {folder / module}, which does not exist"
        )
    return str(folder)


class LoopmlFunction(Construct):
    """Function + role + log group + published version + alias, wired from the declaration."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        deployment: Deployment,
        resources: Resources,
        layers: Sequence[lambda_.ILayerVersion],
        defaults: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        """``defaults`` apply where the declaration is silent; ``overrides`` win over it."""
        super().__init__(scope, construct_id)
        self.spec = spec
        code = function_code_dir(deployment, spec)
        function_name = deployment.name(spec.name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=deployment.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: only what loopml.topology grants it",
        )
        # Instead of the AWS-managed basic execution policy (logs on every log group).
        self.log_group.grant_write(self.role)
        # The `model` context picks the registry model of this deployment for every function naming one.
        model = {"MODEL_NAME": deployment.model} if "MODEL_NAME" in spec.environment else {}
        environment = {**(defaults or {}), **spec.environment, **model, **(overrides or {})}
        environment.update({var: resources.resolve(ref) for var, ref in spec.resources.items()})
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=spec.description,
            code=lambda_.Code.from_asset(code, exclude=["__pycache__", "*.pyc", "tests"]),
            handler=spec.handler,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=deployment.lambda_architecture,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            environment=environment,
            layers=list(layers),
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            # restored environments refresh seeds, clients and the subject key (loopml.restore)
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if spec.snap_start else None,
        )
        for grant in spec.grants:
            resources.grant(grant, self.role)
        self.alias = lambda_.Alias(
            self,
            "Alias",
            alias_name=spec.alias,
            version=self.function.current_version,
            provisioned_concurrent_executions=deployment.provisioned_concurrency.get(spec.name) or None,
        )
        resources.functions[spec.name] = FunctionHandle(self.function, spec.alias)
        for source in spec.event_sources:
            # Partial batch responses: one bad record is retried (then dead-lettered) alone.
            self.alias.add_event_source(
                event_sources.SqsEventSource(
                    resources.queue(source.queue),
                    batch_size=source.batch_size,
                    max_batching_window=Duration.seconds(source.max_batching_window_s),
                    report_batch_item_failures=True,
                )
            )
        for schedule in spec.schedules:
            events.Rule(
                self,
                f"Schedule{pascal(schedule.name)}",
                rule_name=deployment.name(f"{spec.name}-{schedule.name}"),
                description=f"{spec.name}: {schedule.name} every {schedule.rate_minutes} min",
                schedule=events.Schedule.rate(Duration.minutes(schedule.rate_minutes)),
                enabled=schedule.enabled,
                targets=[
                    targets.LambdaFunction(
                        self.alias,
                        event=events.RuleTargetInput.from_object(schedule.input) if schedule.input else None,
                        retry_attempts=2,
                    )
                ],
            )
        for watch in spec.execution_watches:
            # Aborted or timed-out executions run no Catch: their status-change event runs the cleanup.
            events.Rule(
                self,
                f"Watch{pascal(watch.state_machine)}",
                rule_name=deployment.name(f"{spec.name}-watch-{watch.state_machine}"),
                description=f"{spec.name}: {watch.state_machine} executions ending {', '.join(watch.statuses)}",
                event_pattern=events.EventPattern(
                    source=["aws.states"],
                    detail_type=["Step Functions Execution Status Change"],
                    detail={
                        "status": list(watch.statuses),
                        "stateMachineArn": [resources.state_machine(watch.state_machine).state_machine_arn],
                    },
                ),
                targets=[targets.LambdaFunction(self.alias, retry_attempts=2)],
            )
        self._suppress_findings()

    def _suppress_findings(self) -> None:
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "python3.12 is pinned on purpose: the dependency layer holds cp312 wheels and pickled models "
            "must load with the training environment's versions; a runtime bump is a layer rebuild.",
        )


class DeclaredFunction(Construct):
    """A declared function with nothing special about it: the function and its routes, if any.

    Functions that need more (defaults, extra resources) get their own construct with this signature
    and an entry in ``infra.stack.FUNCTION_CONSTRUCTS``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        deployment: Deployment,
        resources: Resources,
        layers: Sequence[lambda_.ILayerVersion],
        api: LoopmlApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = LoopmlFunction(
            self,
            "Handler",
            spec=spec,
            deployment=deployment,
            resources=resources,
            layers=layers,
            defaults=self.environment_defaults(deployment),
            overrides=self.environment_overrides(deployment),
        )
        api.add_routes(spec.routes, self.handler.alias)

    def environment_defaults(self, deployment: Deployment) -> dict[str, str]:
        """Variables set unless the declaration sets them."""
        return {}

    def environment_overrides(self, deployment: Deployment) -> dict[str, str]:
        """Variables the deployment's context decides, over the declaration."""
        return {}

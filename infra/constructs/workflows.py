"""The declared state machines, from ASL files under ``infra/`` with declared substitutions."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.resources import Resources, pascal
from loopml.topology import StateMachineSpec


class Workflows(Construct):
    """Standard workflows with full logging and X-Ray; each may invoke the functions it references."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        state_machines: Sequence[StateMachineSpec],
        resources: Resources,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_machines: dict[str, sfn.StateMachine] = {}
        for spec in state_machines:
            definition = deployment.infra_root / spec.definition
            if not definition.is_file():
                raise FileNotFoundError(
                    f"state machine {spec.name!r} is declared in loopml.topology but its definition "
                    f"{definition} does not exist"
                )
            name = deployment.name(spec.name)
            log_group = logs.LogGroup(
                self,
                f"{pascal(spec.name)}Logs",
                log_group_name=f"/aws/vendedlogs/states/{name}",
                retention=deployment.log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            )
            machine = sfn.StateMachine(
                self,
                pascal(spec.name),
                state_machine_name=name,
                definition_body=sfn.DefinitionBody.from_file(str(definition)),
                definition_substitutions={key: resources.resolve(ref) for key, ref in spec.substitutions.items()},
                logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
                tracing_enabled=True,
            )
            # A substituted function is one the workflow invokes (through its alias).
            for ref in spec.substitutions.values():
                if ref.kind == "function":
                    resources.function(ref.name).grant_invoke(machine)
            # Direct service integrations need declared grants, if the declaration grows them.
            for grant in getattr(spec, "grants", ()):
                resources.grant(grant, machine)
            resources.state_machines[spec.name] = machine
            self.state_machines[spec.name] = machine

"""Turns the declaration's ``Ref`` and ``Grant`` entries into CDK tokens and ``grant_*`` calls.

Every construct registers what it builds here, and every function resolves its environment and
permissions through it: there is one place where a declared access level maps to IAM, and it only ever
calls ``grant_*`` methods, so no policy statement is written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from loopml import keys
from loopml.topology import Grant, Ref

if TYPE_CHECKING:
    from infra.constructs.deployment import Deployment

T = TypeVar("T")


class DeclarationError(ValueError):
    """The declaration asks for something this app cannot build (unknown name, access or attribute)."""


# Lambda actions a deployer function needs to roll a new version out behind the alias. CDK has no
# grant_* for this, so FunctionHandle.grant_update (below) scopes exactly these to one function.
UPDATE_FUNCTION_ACTIONS = (
    "lambda:GetAlias",
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:ListVersionsByFunction",
    "lambda:PublishVersion",
    "lambda:UpdateAlias",
    "lambda:UpdateFunctionConfiguration",
)


@dataclass(frozen=True)
class FunctionHandle:
    """A function as other resources see it: the function, its ``live`` alias and its role."""

    function: lambda_.IFunction
    alias_name: str

    @property
    def alias_arn(self) -> str:
        return f"{self.function.function_arn}:{self.alias_name}"

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.function.grant_invoke(grantee)  # covers the function and its qualifiers

    def grant_update(self, grantee: iam.IGrantable) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(UPDATE_FUNCTION_ACTIONS),
            resource_arns=[self.function.function_arn, f"{self.function.function_arn}:*"],
        )


@dataclass
class Resources:
    """The built resources by declared name, resolving refs and applying grants."""

    scope: Construct
    deployment: Deployment
    buckets: dict[str, s3.IBucket] = field(default_factory=dict)
    queues: dict[str, sqs.IQueue] = field(default_factory=dict)
    tables: dict[str, dynamodb.ITable] = field(default_factory=dict)
    state_machines: dict[str, sfn.IStateMachine] = field(default_factory=dict)
    secrets: dict[str, secretsmanager.ISecret] = field(default_factory=dict)
    functions: dict[str, FunctionHandle] = field(default_factory=dict)
    declared_functions: dict[str, str] = field(default_factory=dict)  # name -> alias
    declared_state_machines: frozenset[str] = frozenset()
    _imported_functions: dict[str, FunctionHandle] = field(default_factory=dict)

    # --- lookups ----------------------------------------------------------------------------------

    def bucket(self, name: str) -> s3.IBucket:
        return self._get(self.buckets, "bucket", name)

    def queue(self, name: str) -> sqs.IQueue:
        return self._get(self.queues, "queue", name)

    def table(self, name: str) -> dynamodb.ITable:
        return self._get(self.tables, "table", name)

    def secret(self, name: str) -> secretsmanager.ISecret:
        return self._get(self.secrets, "secret", name)

    def state_machine(self, name: str) -> sfn.IStateMachine:
        """Built state machines, or (for functions built before them) one imported by its fixed name."""
        if name not in self.state_machines and name in self.declared_state_machines:
            stack = Stack.of(self.scope)
            arn = stack.format_arn(
                service="states",
                resource="stateMachine",
                resource_name=self.deployment.name(name),
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            self.state_machines[name] = sfn.StateMachine.from_state_machine_arn(
                self.scope, f"Declared{pascal(name)}StateMachine", arn
            )
        return self._get(self.state_machines, "state_machine", name)

    def function(self, name: str) -> FunctionHandle:
        """Built functions, or (for one built later in the declaration) one imported by its fixed name."""
        if name in self._imported_functions:
            return self._imported_functions[name]
        if name not in self.functions and name in self.declared_functions:
            stack = Stack.of(self.scope)
            arn = stack.format_arn(
                service="lambda",
                resource="function",
                resource_name=self.deployment.name(name),
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            imported = lambda_.Function.from_function_attributes(
                self.scope, f"Declared{pascal(name)}Function", function_arn=arn, same_environment=True
            )
            handle = FunctionHandle(imported, self.declared_functions[name])
            self._imported_functions[name] = handle
            return handle
        return self._get(self.functions, "function", name)

    @staticmethod
    def _get(table: dict[str, T], kind: str, name: str) -> T:
        if name not in table:
            raise DeclarationError(f"{kind} {name!r} is referenced but not declared in loopml.topology")
        return table[name]

    # --- refs -------------------------------------------------------------------------------------

    def resolve(self, ref: Ref) -> str:
        """The value a function (or state machine) receives for ``ref``; function ARNs are alias ARNs."""
        resolvers: dict[tuple[str, str], Callable[[], str]] = {
            ("bucket", "name"): lambda: self.bucket(ref.name).bucket_name,
            ("bucket", "arn"): lambda: self.bucket(ref.name).bucket_arn,
            ("queue", "name"): lambda: self.queue(ref.name).queue_name,
            ("queue", "url"): lambda: self.queue(ref.name).queue_url,
            ("queue", "arn"): lambda: self.queue(ref.name).queue_arn,
            ("table", "name"): lambda: self.table(ref.name).table_name,
            ("table", "arn"): lambda: self.table(ref.name).table_arn,
            ("secret", "name"): lambda: self.secret(ref.name).secret_name,
            ("secret", "arn"): lambda: self.secret(ref.name).secret_arn,
            ("state_machine", "name"): lambda: self.deployment.name(ref.name),
            ("state_machine", "arn"): lambda: self.state_machine(ref.name).state_machine_arn,
            ("function", "name"): lambda: self.function(ref.name).function.function_name,
            ("function", "arn"): lambda: self.function(ref.name).alias_arn,
        }
        resolver = resolvers.get((ref.kind, ref.attribute))
        if resolver is None:
            raise DeclarationError(f"a {ref.kind} has no {ref.attribute!r} attribute (ref to {ref.name!r})")
        return resolver()

    # --- grants -----------------------------------------------------------------------------------

    def grant(self, grant: Grant, grantee: iam.IGrantable) -> list[iam.Grant]:
        """Apply one declared grant, only through the resource's own ``grant_*`` method.

        A bucket grant is applied once per declared prefix, on ``<prefix>*`` objects only
        (``loopml.keys``): no function can read or write another's part of the bucket.
        """
        if grant.kind == "bucket":
            bucket = self.bucket(grant.name)
            methods = {
                "read": bucket.grant_read,
                # "write" adds objects and never deletes them; "read_write" may also delete.
                "write": bucket.grant_put,
                "read_write": bucket.grant_read_write,
            }
            method = methods.get(grant.access)
            if method is None:
                raise DeclarationError(f"access {grant.access!r} does not apply to a bucket ({grant.name!r})")
            return [method(grantee, keys.object_pattern(prefix)) for prefix in grant.prefixes]
        grants: dict[tuple[str, str], Callable[[], iam.Grant]] = {
            ("queue", "send"): lambda: self.queue(grant.name).grant_send_messages(grantee),
            ("queue", "consume"): lambda: self.queue(grant.name).grant_consume_messages(grantee),
            ("table", "read"): lambda: self.table(grant.name).grant_read_data(grantee),
            ("table", "write"): lambda: self.table(grant.name).grant_write_data(grantee),
            ("table", "read_write"): lambda: self.table(grant.name).grant_read_write_data(grantee),
            ("secret", "read"): lambda: self.secret(grant.name).grant_read(grantee),
            ("state_machine", "start"): lambda: self.state_machine(grant.name).grant_start_execution(grantee),
            ("state_machine", "read"): lambda: self._grant_state_machine_read(grant.name, grantee),
            ("state_machine", "respond"): lambda: self.state_machine(grant.name).grant_task_response(grantee),
            ("function", "watch"): lambda: self._grant_watch(grant.name, grantee),
            ("function", "invoke"): lambda: self.function(grant.name).grant_invoke(grantee),
            ("function", "update_function"): lambda: self.function(grant.name).grant_update(grantee),
        }
        apply = grants.get((grant.kind, grant.access))
        if apply is None:
            raise DeclarationError(f"access {grant.access!r} does not apply to a {grant.kind} ({grant.name!r})")
        return [apply()]

    def _grant_watch(self, name: str, grantee: iam.IGrantable) -> iam.Grant:
        """Judging a canary of one function: its metrics, and alarms named ``<function>-canary-*``.

        CloudWatch has no grant_* for this. Metric reads support no resource-level permissions; the
        alarm actions are scoped to the canary alarms of this one function.
        """
        self.function(name)  # declared, or a DeclarationError naming it
        alarms = Stack.of(self.scope).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{self.deployment.name(name)}-canary-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
            resource_arns=[alarms],
        )
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData"],
            resource_arns=["*"],
        )

    def _grant_state_machine_read(self, name: str, grantee: iam.IGrantable) -> iam.Grant:
        """Reading one workflow and its executions. StateMachine.grant_read would also allow
        DescribeStateMachine/ListActivities on every resource ("*"), which no loopml function needs."""
        machine = self.state_machine(name)
        machine.grant(grantee, "states:DescribeStateMachine", "states:ListExecutions")
        return machine.grant_execution(grantee, "states:DescribeExecution", "states:GetExecutionHistory")


def pascal(name: str) -> str:
    """Construct ids from declared names: ``capture-events`` -> ``CaptureEvents``."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))

"""The declared DynamoDB tables: on demand, encrypted, point-in-time recovery, kept when the stack goes."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.resources import Resources, pascal
from loopml.topology import TableSpec


class Tables(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        tables: Sequence[TableSpec],
        resources: Resources,
    ) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for table_spec in tables:
            table = dynamodb.Table(
                self,
                pascal(table_spec.name),
                table_name=deployment.name(table_spec.name),
                partition_key=dynamodb.Attribute(name=table_spec.partition_key, type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                time_to_live_attribute=table_spec.ttl_attribute,
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                removal_policy=RemovalPolicy.RETAIN,
            )
            resources.tables[table_spec.name] = table
            self.tables[table_spec.name] = table

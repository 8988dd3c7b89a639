"""The declared buckets (the models bucket: registry, dataset, uploads, reports) and their access-log bucket."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.nag import acknowledge
from infra.constructs.resources import Resources, pascal
from loopml import keys
from loopml.topology import BucketSpec, Topology

# Prediction/feedback capture lands under this prefix; it is read by drift evaluation for weeks, then
# rarely (audits, retraining on history), so it moves to Infrequent Access.
CAPTURED_TO_IA_DAYS = 30
NONCURRENT_VERSION_DAYS = 90
ACCESS_LOG_DAYS = 365


def _bucket_name(deployment: Deployment, name: str) -> str:
    """Bucket names are global: the stage name alone would collide across accounts and regions."""
    return f"{deployment.name(name)}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class Buckets(Construct):
    """Versioned, encrypted, TLS-only, private buckets with access logs and lifecycle rules."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        buckets: Sequence[BucketSpec],
        resources: Resources,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=_bucket_name(deployment, "access-logs"),
            # Server access logging only delivers to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(ACCESS_LOG_DAYS))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log destination; logging it into itself would loop.",
        )
        self.buckets: dict[str, s3.Bucket] = {}
        for spec in buckets:
            bucket = s3.Bucket(
                self,
                pascal(spec.name),
                bucket_name=_bucket_name(deployment, spec.name),
                versioned=True,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{spec.name}/",
                lifecycle_rules=[
                    s3.LifecycleRule(
                        id="captured-to-infrequent-access",
                        prefix=keys.CAPTURED,
                        transitions=[
                            s3.Transition(
                                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                transition_after=Duration.days(CAPTURED_TO_IA_DAYS),
                            )
                        ],
                    ),
                    s3.LifecycleRule(
                        id="expire-noncurrent-versions",
                        noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                        abort_incomplete_multipart_upload_after=Duration.days(7),
                    ),
                ],
                # Models and captured data outlive the stack: `cdk destroy` must not lose them.
                removal_policy=RemovalPolicy.RETAIN,
            )
            self.buckets[spec.name] = bucket
            resources.buckets[spec.name] = bucket

    def add_notifications(self, topology: Topology, resources: Resources) -> None:
        """Object-created events by key prefix to the declared queues (call once the queues exist).

        CDK adds the queue policy letting this bucket send, and a custom resource (its
        BucketNotificationsHandler function) that writes the bucket's notification configuration.
        """
        for spec in topology.buckets:
            bucket = self.buckets[spec.name]
            for notification in topology.notifications(spec.name):
                bucket.add_event_notification(
                    s3.EventType.OBJECT_CREATED,
                    s3n.SqsDestination(resources.queue(notification.queue)),
                    s3.NotificationKeyFilter(prefix=notification.prefix, suffix=notification.suffix or None),
                )
        handler = next(
            (c for c in Stack.of(self).node.children if c.node.id.startswith("BucketNotificationsHandler")), None
        )
        if handler is not None:
            acknowledge(
                handler,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "CDK's bucket-notifications custom resource function comes with the basic execution role; "
                "it runs only during deployments to write the buckets' notification configuration.",
            )

"""The declared queues, each with its dead-letter queue and an alarm on the dead-letter queue's depth."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.observability import Observability, WatchedQueue
from infra.constructs.resources import Resources, pascal
from loopml.topology import QueueSpec, dlq_name

DLQ_RETENTION = Duration.days(14)  # the maximum: time to inspect and redrive poison messages


class Queues(Construct):
    """Encrypted TLS-only queues whose poison messages land in an alarmed DLQ."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        queues: Sequence[QueueSpec],
        resources: Resources,
        observability: Observability,
    ) -> None:
        super().__init__(scope, construct_id)
        self.watched: dict[str, WatchedQueue] = {}
        for spec in queues:
            dlq = sqs.Queue(
                self,
                f"{pascal(spec.name)}Dlq",
                queue_name=deployment.name(dlq_name(spec.name)),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=DLQ_RETENTION,
            )
            queue = sqs.Queue(
                self,
                pascal(spec.name),
                queue_name=deployment.name(spec.name),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
                retention_period=Duration.days(spec.retention_days),
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
            )
            observability.notify(
                dlq.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ).create_alarm(
                    self,
                    f"{pascal(spec.name)}DlqAlarm",
                    alarm_name=deployment.name(f"{dlq_name(spec.name)}-depth"),
                    alarm_description=f"Messages from {spec.name} failed {spec.max_receive_count} times.",
                    threshold=0,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
            resources.queues[spec.name] = queue
            self.watched[spec.name] = WatchedQueue(queue, dlq)

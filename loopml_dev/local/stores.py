"""The declared buckets, queues (each with its DLQ), tables, secrets and bucket notifications, in moto.

Created through the real APIs, idempotently (a restart finds them and keeps their contents), and
recorded in the ``Deployment`` the rest of the local stack resolves names from.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from loopml.adapters.aws import error_code
from loopml.topology import Topology, dlq_name

if TYPE_CHECKING:
    from loopml_dev.local.deploy import Deployment


class StoreDeployer:
    def __init__(
        self,
        client: Callable[[str], Any],
        name: Callable[[str], str],
        deployment: Deployment,
        secrets_dir: Path,
        log: Callable[[str], None],
    ) -> None:
        self._client = client
        self.name = name
        self.deployment = deployment
        self.secrets_dir = secrets_dir
        self._log = log

    def notifications(self, topology: Topology) -> None:
        """Object-created events to the declared queues, with the queue policy S3 needs to send them."""
        s3, sqs = self._client("s3"), self._client("sqs")
        for bucket in topology.buckets:
            physical = self.deployment.buckets[bucket.name]
            configurations = []
            for index, notification in enumerate(topology.notifications(bucket.name)):
                rules = [{"Name": "prefix", "Value": notification.prefix}]
                if notification.suffix:
                    rules.append({"Name": "suffix", "Value": notification.suffix})
                arn = self.deployment.queue_arns[notification.queue]
                configurations.append(
                    {
                        "Id": f"{notification.queue}-{index}",
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": rules}},
                    }
                )
                sqs.set_queue_attributes(
                    QueueUrl=self.deployment.queue_urls[notification.queue],
                    Attributes={"Policy": json.dumps(_s3_send_policy(arn, physical))},
                )
                self._log(f"notification s3://{physical}/{notification.prefix}* -> {self.name(notification.queue)}")
            if configurations or bucket.notifications:
                s3.put_bucket_notification_configuration(
                    Bucket=physical, NotificationConfiguration={"QueueConfigurations": configurations}
                )

    def bucket(self, logical: str) -> None:
        s3 = self._client("s3")
        physical = self.name(logical)
        try:
            s3.create_bucket(Bucket=physical)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self.deployment.buckets[logical] = physical
        self._log(f"bucket {physical}")

    def queue(self, logical: str, visibility_s: int, max_receive: int, retention_days: int) -> None:
        sqs = self._client("sqs")
        retention = str(min(retention_days, 14) * 86400)
        dlq_logical = dlq_name(logical)
        dlq_url = sqs.create_queue(QueueName=self.name(dlq_logical), Attributes={"MessageRetentionPeriod": "1209600"})[
            "QueueUrl"
        ]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {
            "VisibilityTimeout": str(visibility_s),
            "MessageRetentionPeriod": retention,
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
        }
        url = sqs.create_queue(QueueName=self.name(logical), Attributes=attributes)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # create_queue keeps old attributes
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.deployment.queue_urls.update({logical: url, dlq_logical: dlq_url})
        self.deployment.queue_arns.update({logical: arn, dlq_logical: dlq_arn})
        self._log(f"queue {self.name(logical)} (DLQ {self.name(dlq_logical)}, maxReceiveCount {max_receive})")

    def secret(self, logical: str) -> None:
        """The value lives in the state folder (moto forgets everything), so keyed hashes survive restarts."""
        path = self.secrets_dir / logical
        if not path.exists():
            self.secrets_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        sm = self._client("secretsmanager")
        name = self.name(logical)
        try:
            arn = sm.describe_secret(SecretId=name)["ARN"]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            arn = sm.create_secret(Name=name, SecretString=path.read_text())["ARN"]
        self.deployment.secret_arns[logical] = arn
        self._log(f"secret {name}")

    def table(self, logical: str, key: str, ttl_attribute: str | None) -> None:
        physical = self.name(logical)
        create_table(self._client("dynamodb"), physical, key, ttl_attribute)
        self.deployment.tables[logical] = physical
        self._log(f"table {physical}")


def _s3_send_policy(queue_arn: str, bucket: str) -> dict[str, Any]:
    """What CDK's ``SqsDestination`` adds to the queue: S3 may send, for this bucket only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }


def create_table(dynamodb: Any, name: str, key: str = "id", ttl_attribute: str | None = None) -> None:
    """A declared table as CDK makes it (string partition key, on demand, TTL), kept when it exists."""
    try:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    if ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )

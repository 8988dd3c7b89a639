"""S3 objects and queued messages survive a stop and a new start; ``reset`` forgets them."""

from __future__ import annotations

import pytest

from loopml.topology import BucketSpec, QueueSpec, TableSpec, Topology
from loopml_dev.local import LocalStack, reset
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

TOPOLOGY = Topology(
    buckets=(BucketSpec(name="models"),),
    queues=(QueueSpec(name="jobs"),),
    tables=(TableSpec(name="things"),),
    functions=(),
)
TABLE = "loopml-p-things"
ITEM = {"id": {"S": "subject-1"}, "opted_out": {"BOOL": True}, "n": {"N": "3"}, "blob": {"B": b"\x00\xff"}}
BUCKET = "loopml-p-models"
ODD_KEY = "odd//./../name with spaces%.bin"


def _stack(state_dir, **kwargs) -> LocalStack:
    return LocalStack(state_dir, stage="p", api_port=0, topology=TOPOLOGY, function_log=lambda line: None, **kwargs)


def test_state_survives_stop_and_start_then_reset_clears_it(tmp_path):
    with _stack(tmp_path, snapshot_interval_s=0.3) as first:
        s3, sqs = first.client("s3"), first.client("sqs")
        s3.put_object(
            Bucket=BUCKET,
            Key="registry/v1/model.joblib",
            Body=b"model-bytes",
            ContentType="application/octet-stream",
            Metadata={"sha256": "abc"},
        )
        s3.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=b"odd")
        s3.put_object(Bucket=BUCKET, Key="gone.txt", Body=b"soon deleted")
        snapshot = tmp_path / "s3" / BUCKET / "registry" / "v1" / "model.joblib"
        wait_for(snapshot.exists, 5, "the periodic snapshot", interval_s=0.1)
        s3.delete_object(Bucket=BUCKET, Key="gone.txt")
        s3.create_bucket(Bucket="made-at-runtime")
        s3.put_object(Bucket="made-at-runtime", Key="k", Body=b"v")
        first.client("dynamodb").put_item(TableName=TABLE, Item=ITEM)
        first.client("dynamodb").put_item(TableName=TABLE, Item={"id": {"S": "gone"}})
        first.client("dynamodb").delete_item(TableName=TABLE, Key={"id": {"S": "gone"}})
        sqs.send_message(QueueUrl=first.queue_url("jobs"), MessageBody="pending-1")
        sqs.send_message(
            QueueUrl=first.queue_url("jobs"),
            MessageBody="pending-2",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "retrain"}},
        )

    assert (tmp_path / "s3" / BUCKET / "registry" / "v1" / "model.joblib").read_bytes() == b"model-bytes"
    assert not (tmp_path / "s3" / BUCKET / "gone.txt").exists()

    with _stack(tmp_path, snapshot_interval_s=0) as second:
        s3, sqs = second.client("s3"), second.client("sqs")
        restored = s3.get_object(Bucket=BUCKET, Key="registry/v1/model.joblib")
        assert restored["Body"].read() == b"model-bytes"
        assert restored["ContentType"] == "application/octet-stream"
        assert restored["Metadata"] == {"sha256": "abc"}
        assert s3.get_object(Bucket=BUCKET, Key=ODD_KEY)["Body"].read() == b"odd"
        assert s3.get_object(Bucket="made-at-runtime", Key="k")["Body"].read() == b"v"
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert keys == {"registry/v1/model.joblib", ODD_KEY}
        messages = sqs.receive_message(
            QueueUrl=second.queue_url("jobs"), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
        assert sorted(m["Body"] for m in messages) == ["pending-1", "pending-2"]
        kinds = {m["Body"]: m.get("MessageAttributes", {}).get("kind", {}).get("StringValue") for m in messages}
        assert kinds == {"pending-1": None, "pending-2": "retrain"}
        assert second.client("dynamodb").scan(TableName=TABLE)["Items"] == [ITEM]

    assert (tmp_path / "s3" / BUCKET / "registry" / "v1" / "model.joblib").exists()
    reset(tmp_path)
    assert not (tmp_path / "s3").exists()
    assert not (tmp_path / "sqs").exists()
    assert not (tmp_path / "dynamodb").exists()
    assert not (tmp_path / "code").exists()

"""The local stack honours the declaration's grants: a call a function was not granted fails, as on AWS.

moto accepts any call from anyone, so without this a handler could read a prefix, send to a queue or
update a function it was never granted and every local test would pass until the first cloud deploy.
The parent turns each function's declared grants into statements (``statements``, the same pairs CDK
applies with ``grant_*``); the worker installs ``install`` before importing the handler, so every
botocore call of the handler is checked and one that no statement allows raises the ``ClientError``
AWS would (``AccessDenied``), with AWS's message.

Loaded by the worker from its file (before the function's ``sys.path`` is in place): standard
library and botocore only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ENV = "_LOOPML_LOCAL_GRANTS"

_S3_READ = frozenset({"GetObject", "HeadObject", "ListObjectsV2", "ListObjects"})
_S3_WRITE = frozenset(
    {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"}
)
_TABLE_READ = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ConditionCheckItem"})
_TABLE_WRITE = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "DescribeTable"})
_SQS_COMMON = frozenset({"GetQueueUrl", "GetQueueAttributes"})

# (kind, access) -> (botocore service, operations): what each grant_* of the CDK app allows.
OPERATIONS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("bucket", "read"): ("s3", _S3_READ),
    ("bucket", "write"): ("s3", _S3_WRITE),
    ("bucket", "read_write"): ("s3", _S3_READ | _S3_WRITE | {"DeleteObject", "DeleteObjects"}),
    ("queue", "send"): ("sqs", _SQS_COMMON | {"SendMessage", "SendMessageBatch"}),
    ("queue", "consume"): (
        "sqs",
        _SQS_COMMON
        | {"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility"}
        | {"ChangeMessageVisibilityBatch"},
    ),
    ("table", "read"): ("dynamodb", _TABLE_READ),
    ("table", "write"): ("dynamodb", _TABLE_WRITE),
    ("table", "read_write"): ("dynamodb", _TABLE_READ | _TABLE_WRITE),
    ("secret", "read"): ("secretsmanager", frozenset({"GetSecretValue", "DescribeSecret"})),
    ("state_machine", "start"): ("stepfunctions", frozenset({"StartExecution"})),
    ("state_machine", "read"): (
        "stepfunctions",
        frozenset({"DescribeStateMachine", "ListExecutions", "DescribeExecution", "GetExecutionHistory"}),
    ),
    ("state_machine", "respond"): (
        "stepfunctions",
        frozenset({"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"}),
    ),
    ("function", "invoke"): ("lambda", frozenset({"Invoke"})),
    ("function", "update_function"): (
        "lambda",
        frozenset(
            {
                "GetAlias",
                "GetFunction",
                "GetFunctionConfiguration",
                "ListVersionsByFunction",
                "PublishVersion",
                "UpdateAlias",
                "UpdateFunctionConfiguration",
            }
        ),
    ),
    ("function", "watch"): (
        "cloudwatch",
        frozenset({"GetMetricStatistics", "GetMetricData", "PutMetricAlarm", "DeleteAlarms", "DescribeAlarms"}),
    ),
}
_ALARM_OPERATIONS = frozenset({"PutMetricAlarm", "DeleteAlarms", "DescribeAlarms"})
# Task tokens name no resource; CDK's grant_task_response allows them on the state machine.
_UNSCOPED = frozenset({"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "GetMetricStatistics"})
_UNSCOPED |= {"GetMetricData"}
_DENIED_CODE = {"s3": "AccessDenied", "sqs": "AccessDenied", "cloudwatch": "AccessDenied"}


def statements(grants: Iterable[Any], physical: Callable[[str], str]) -> list[dict[str, Any]]:
    """One statement per declared grant; ``physical`` gives a declared name's deployed name."""
    out = []
    for grant in grants:
        service, operations = OPERATIONS[(grant.kind, grant.access)]
        resource = physical(grant.name)
        if grant.kind == "function" and grant.access == "watch":
            resource = f"{resource}-canary-"  # the canary alarms of that one function
        out.append(
            {
                "service": service,
                "operations": sorted(operations),
                "resource": resource,
                "prefixes": list(grant.prefixes),
            }
        )
    return out


def _name_in_arn(value: str, marker: str) -> str:
    return value.split(marker, 1)[1].split(":", 1)[0] if marker in value else value


def _targets(service: str, operation: str, params: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(resource, object key) pairs a call touches; ``[]`` when the call names no resource."""
    if service == "s3":
        bucket = str(params.get("Bucket", ""))
        if operation == "DeleteObjects":
            return [(bucket, str(o.get("Key"))) for o in params.get("Delete", {}).get("Objects", [])]
        return [(bucket, params.get("Key"))]  # listing: CDK's List* is on the bucket, not a prefix
    if service == "sqs":
        return [(str(params.get("QueueName") or str(params.get("QueueUrl", "")).rsplit("/", 1)[-1]), None)]
    if service == "dynamodb":
        if "RequestItems" in params:
            return [(str(name), None) for name in params["RequestItems"]]
        return [(str(params.get("TableName", "")), None)]
    if service == "secretsmanager":
        return [(_name_in_arn(str(params.get("SecretId", "")), ":secret:"), None)]
    if service == "stepfunctions":
        if "stateMachineArn" in params:
            return [(_name_in_arn(str(params["stateMachineArn"]), ":stateMachine:"), None)]
        if "executionArn" in params:
            return [(_name_in_arn(str(params["executionArn"]), ":execution:"), None)]
        return []
    if service == "lambda":
        name = str(params.get("FunctionName", ""))
        return [(_name_in_arn(name, ":function:") if name.startswith("arn:") else name.split(":", 1)[0], None)]
    if service == "cloudwatch" and operation in _ALARM_OPERATIONS:
        names = params.get("AlarmNames") or [params.get("AlarmName") or params.get("AlarmNamePrefix") or ""]
        return [(str(n), None) for n in names]
    return []


def _matches(statement: Mapping[str, Any], service: str, resource: str, key: str | None) -> bool:
    if statement["service"] != service:
        return False
    wanted = statement["resource"]
    if service == "cloudwatch":
        return resource.startswith(wanted)
    if service == "secretsmanager":
        return resource == wanted or resource.startswith(wanted + "-")  # ARNs end in -<6 random chars>
    if resource != wanted:
        return False
    if service == "s3" and key is not None:
        return any(_covers(prefix, key) for prefix in statement["prefixes"])
    return True


def _covers(prefix: str, key: str) -> bool:
    """``*`` in a grant prefix matches one path segment (``models/*/drift/``), as in ``loopml.keys``."""
    want, have = prefix.rstrip("/").split("/"), key.split("/")
    return len(have) > len(want) and all(w in ("*", h) for w, h in zip(want, have, strict=False))


def denial(policy: list[Mapping[str, Any]], service: str, operation: str, params: Mapping[str, Any]) -> str | None:
    """Why the call is refused, or ``None`` when a statement allows it."""
    allowed = [s for s in policy if s["service"] == service and operation in s["operations"]]
    if operation in _UNSCOPED and allowed:
        return None
    for resource, key in _targets(service, operation, params) or [("*", None)]:
        if not any(_matches(s, service, resource, key) for s in allowed):
            target = f"{resource}/{key}" if key else resource
            return f"not authorized to perform: {service}:{operation} on resource: {target}"
    return None


def install(policy_json: str, function: str) -> None:
    """Check every botocore call this process makes against ``policy_json`` (from ``statements``)."""
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    policy = json.loads(policy_json)
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def checked(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        why = denial(policy, service, operation_name, api_params)
        if why is not None:
            message = (
                f"User: arn:aws:sts::123456789012:assumed-role/{function}-role/{function} is {why} because no "
                "identity-based policy allows it (its grants in loopml.topology)"
            )
            code = _DENIED_CODE.get(service, "AccessDeniedException")
            error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}
            raise ClientError(error, operation_name)  # type: ignore[arg-type]
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = checked  # type: ignore[attr-defined]

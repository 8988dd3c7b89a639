"""The local stack: loopml's topology on moto plus a local Lambda runtime, API Gateway and pollers."""

from loopml_dev.local.runtime import InvokeResult, WorkerStats
from loopml_dev.local.stack import LocalStack, reset

__all__ = ["InvokeResult", "LocalStack", "WorkerStats", "reset"]

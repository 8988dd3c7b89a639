"""The local stack: loopml's topology on moto plus a local Lambda runtime, API Gateway and pollers."""

from loopml.local.runtime import InvokeResult, WorkerStats
from loopml.local.stack import LocalStack, reset

__all__ = ["InvokeResult", "LocalStack", "WorkerStats", "reset"]

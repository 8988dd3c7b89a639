"""The retraining state machine's executions, for every trigger (drift, uploads, CLI, schedule).

One view of "is a retraining of this model running": executions whose input names the model, whoever
started them and whatever their name.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import error_code, translate
from loopml.errors import NotFound, VersionConflict


class RetrainExecutions:
    """``loopml.retrain.trigger.RetrainStarter`` on Step Functions."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._sfn = client
        self.state_machine_arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> str:
        try:
            response = self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc)
            if code == "ExecutionAlreadyExists":
                raise VersionConflict(f"execution {name} exists already") from exc
            if code == "StateMachineDoesNotExist":
                raise NotFound(f"state machine {self.state_machine_arn} does not exist") from exc
            raise translate(exc, f"states start_execution {name}") from exc
        return str(response["executionArn"])

    def running(self, model: str) -> list[str]:
        """Running executions whose input names ``model`` (one describe per running execution)."""
        names = []
        try:
            pages = self._sfn.get_paginator("list_executions").paginate(
                stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
            )
            for page in pages:
                for execution in page.get("executions", []):
                    described = self._sfn.describe_execution(executionArn=execution["executionArn"])
                    try:
                        given = json.loads(described.get("input") or "{}")
                    except ValueError:
                        continue
                    if isinstance(given, dict) and given.get("model") == model:
                        names.append(str(execution["name"]))
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "StateMachineDoesNotExist":
                raise NotFound(f"state machine {self.state_machine_arn} does not exist") from exc
            raise translate(exc, f"states list_executions {self.state_machine_arn}") from exc
        return names

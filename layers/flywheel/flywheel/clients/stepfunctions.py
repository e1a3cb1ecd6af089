"""Step Functions: starting the weekly training state machine on demand."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.errors import DependencyUnavailable


def start_execution(state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
    try:
        result = client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload, default=str)
        )
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable("could not start the training state machine", reason=str(exc)) from exc
    return str(result["executionArn"])


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:...:stateMachine:<machine> -> arn:...:execution:<machine>:<name>"""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def execution_status(arn: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED (or PENDING_REDRIVE); None when it does not exist."""
    try:
        return str(client("stepfunctions").describe_execution(executionArn=arn)["status"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None
        raise DependencyUnavailable("could not read the training execution", reason=str(exc)) from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable("could not read the training execution", reason=str(exc)) from exc

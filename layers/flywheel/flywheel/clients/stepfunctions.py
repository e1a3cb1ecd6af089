"""Step Functions: starting the weekly training state machine on demand."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.errors import DependencyUnavailable


def start_execution(state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
    try:
        result = client("stepfunctions").start_execution(stateMachineArn=state_machine_arn, name=name,
                                                         input=json.dumps(payload, default=str))
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable("could not start the training state machine", reason=str(exc)) from exc
    return str(result["executionArn"])

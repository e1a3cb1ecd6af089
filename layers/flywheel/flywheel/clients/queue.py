"""The replies queue (SQS): where stored replies wait for the classifier."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from flywheel.errors import DependencyUnavailable


@cache
def _sqs() -> Any:
    return boto3.client("sqs", config=Config(retries={"mode": "standard", "max_attempts": 3},
                                             connect_timeout=3, read_timeout=5))


def send_messages(queue_url: str, bodies: list[dict[str, Any]]) -> None:
    """Send in batches of 10; any message SQS refuses fails the call (the caller answers 503)."""
    for start in range(0, len(bodies), 10):
        chunk = bodies[start:start + 10]
        try:
            result = _sqs().send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "MessageBody": json.dumps(b, default=str)} for i, b in enumerate(chunk)],
            )
        except (BotoCoreError, ClientError) as exc:
            raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
        if result.get("Failed"):
            raise DependencyUnavailable("replies queue refused messages", reason=str(result["Failed"]))


def reset_client() -> None:
    """Forget the cached client (tests switch AWS emulation on and off)."""
    _sqs.cache_clear()

"""The replies queue (SQS): where stored replies wait for the classifier."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.errors import DependencyUnavailable


def send_messages(queue_url: str, bodies: list[dict[str, Any]]) -> None:
    """Send in batches of 10; any message SQS refuses fails the call (the caller answers 503)."""
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        try:
            result = client("sqs").send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "MessageBody": json.dumps(b, default=str)} for i, b in enumerate(chunk)],
            )
        except (BotoCoreError, ClientError) as exc:
            raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
        if result.get("Failed"):
            raise DependencyUnavailable("replies queue refused messages", reason=str(result["Failed"]))


def depth(queue_url: str) -> int:
    """Messages waiting (approximate), which also proves the queue is reachable with our role."""
    try:
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
    return int(attributes["ApproximateNumberOfMessages"])

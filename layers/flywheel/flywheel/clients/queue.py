"""The replies queue (SQS): where stored replies wait for the classifier."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import Delivery, client
from flywheel.errors import DependencyUnavailable

# SendMessageBatch (botocore's SQS model, 2025): at most 10 entries, and "the maximum allowed
# individual message size and the maximum total payload size (the sum of the individual lengths of
# all of the batched messages) are both 1 MiB 1,048,576 bytes"; a batch over it is refused whole
# (BatchRequestTooLong). A queue's MaximumMessageSize may be set lower than 1 MiB.
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 1_048_576
# Request-level errors caused by what is in the batch, not by SQS or our role: the batch is split
# until the message at fault is alone, and only that one is refused.
_CONTENT_ERRORS = frozenset({"BatchRequestTooLong", "InvalidParameterValue", "InvalidMessageContents"})


def encode(body: dict[str, Any]) -> str:
    """A message body: JSON with non-ASCII escaped, so every character SQS receives is one it
    accepts (it refuses U+FFFE, U+FFFF and lone surrogates) and its length is its size in bytes."""
    return json.dumps(body, default=str)


def batches(
    sizes: list[int], max_entries: int = MAX_BATCH_ENTRIES, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[int]]:
    """Indexes in order, cut into batches of at most `max_entries` and `max_bytes` (a message over
    `max_bytes` goes alone, for SQS to refuse it alone)."""
    out: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if current and (len(current) == max_entries or total + size > max_bytes):
            out.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        out.append(current)
    return out


def _error_code(exc: ClientError) -> str:
    # the JSON protocol's query-compatible codes read "AWS.SimpleQueueService.BatchRequestTooLong"
    return str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]


def _send_batch(queue_url: str, entries: list[tuple[int, str]], delivery: Delivery) -> None:
    try:
        result = client("sqs").send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in entries]
        )
    except ClientError as exc:
        if _error_code(exc) not in _CONTENT_ERRORS:
            raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
        if len(entries) == 1:
            delivery.refused[entries[0][0]] = f"{_error_code(exc)}: {exc}"
            return
        half = len(entries) // 2  # find the message at fault; the others go through
        _send_batch(queue_url, entries[:half], delivery)
        _send_batch(queue_url, entries[half:], delivery)
        return
    except BotoCoreError as exc:
        raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
    delivery.sent.extend(int(entry["Id"]) for entry in result.get("Successful", []))
    for failed in result.get("Failed", []):
        # a failure that is not the sender's (an SQS fault) is retried later like an outage
        reason = f"{failed.get('Code')}: {failed.get('Message', '')}"
        (delivery.refused if failed.get("SenderFault") else delivery.failed)[int(failed["Id"])] = reason


def send_messages(queue_url: str, bodies: list[dict[str, Any]]) -> Delivery:
    """Send in batches within SQS's limits. A message SQS refuses is reported and the others still
    go; when SQS cannot be reached the rest are left unsent (`unavailable`)."""
    encoded = [encode(b) for b in bodies]
    delivery = Delivery()
    for batch in batches([len(e.encode()) for e in encoded]):
        try:
            _send_batch(queue_url, [(i, encoded[i]) for i in batch], delivery)
        except DependencyUnavailable as exc:
            delivery.unavailable = str(exc.details.get("reason") or exc.message)
            break
    return delivery


def depth(queue_url: str) -> int:
    """Messages waiting (approximate), which also proves the queue is reachable with our role."""
    try:
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable("replies queue unavailable", reason=str(exc)) from exc
    return int(attributes["ApproximateNumberOfMessages"])

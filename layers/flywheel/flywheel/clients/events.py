"""EventBridge: telling people about replies that need a human answer, and other functions about
experiment evaluations."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import Delivery, client
from flywheel.errors import DependencyUnavailable

SOURCE = "flywheel.replies"
# PutEvents reports each entry's failure by its ErrorCode. These are the entry's own (a malformed or
# invalid detail): sending it again as it is cannot succeed. Any other (InternalFailure, throttling,
# a permission or a missing bus) is EventBridge's or the stack's, and the entry stays pending.
_ENTRY_REFUSALS = frozenset({"InvalidArgument", "MalformedDetail", "ValidationException"})


def put_events(bus_name: str, detail_type: str, details: list[dict[str, Any]], source: str = SOURCE) -> Delivery:
    """Publish in requests of 10 entries. An entry EventBridge refuses is reported and the others
    still go; when EventBridge cannot be reached the rest are left unsent (`unavailable`)."""
    delivery = Delivery()
    for start in range(0, len(details), 10):
        entries = [
            {
                "Source": source,
                "DetailType": detail_type,
                "EventBusName": bus_name,
                "Detail": json.dumps(d, default=str),
            }
            for d in details[start : start + 10]
        ]
        try:
            result = client("events").put_events(Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            delivery.unavailable = str(exc)
            break
        for offset, entry in enumerate(result.get("Entries", [])):
            code = entry.get("ErrorCode")
            if not code:
                delivery.sent.append(start + offset)
            elif code in _ENTRY_REFUSALS:
                delivery.refused[start + offset] = f"{code}: {entry.get('ErrorMessage', '')}"
            else:
                delivery.failed[start + offset] = f"{code}: {entry.get('ErrorMessage', '')}"
    return delivery


def publish(bus_name: str, detail_type: str, details: list[dict[str, Any]], source: str = SOURCE) -> None:
    """All or nothing: any event EventBridge does not take fails the call."""
    delivery = put_events(bus_name, detail_type, details, source)
    if delivery.unavailable:
        raise DependencyUnavailable("event bus unavailable", reason=delivery.unavailable)
    if len(delivery.sent) < len(details):
        raise DependencyUnavailable("event bus refused events", reason=str({**delivery.refused, **delivery.failed}))

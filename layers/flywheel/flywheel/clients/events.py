"""EventBridge: telling people about replies that need a human answer, and other functions about
experiment evaluations."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.errors import DependencyUnavailable

SOURCE = "flywheel.replies"


def publish(bus_name: str, detail_type: str, details: list[dict[str, Any]], source: str = SOURCE) -> None:
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
            raise DependencyUnavailable("event bus unavailable", reason=str(exc)) from exc
        if result.get("FailedEntryCount"):
            raise DependencyUnavailable("event bus refused events", reason=str(result.get("Entries")))

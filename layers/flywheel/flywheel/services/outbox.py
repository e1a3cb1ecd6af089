"""Sending the outbox: messages written with the change that caused them, delivered after commit.

A failed send leaves its messages pending; the next request, or the hourly sweep, sends them.
Delivery is at least once (the classifier stores one classification per reply; EventBridge
consumers dedupe on `reply_key`).
"""

from __future__ import annotations

from typing import Any

from flywheel.clients import events as event_bus
from flywheel.clients import queue
from flywheel.dal import outbox as outbox_dal
from flywheel.dal.connection import transaction
from flywheel.errors import DependencyUnavailable
from flywheel.observability import logger, metrics
from flywheel.settings import get_settings

TOPICS = ("replies", "events")


def _send(topic: str, payloads: list[dict[str, Any]]) -> bool:
    settings = get_settings()
    if topic == "replies":
        if not settings.replies_queue_url:
            return False
        queue.send_messages(settings.replies_queue_url, payloads)
    else:
        for detail_type in sorted({p["detail_type"] for p in payloads}):
            event_bus.publish(
                settings.event_bus_name, detail_type, [p["detail"] for p in payloads if p["detail_type"] == detail_type]
            )
    return True


def flush(topics: tuple[str, ...] | list[str] = TOPICS, batch: int = 100, max_batches: int = 20) -> dict[str, int]:
    """Send pending messages of these topics; returns how many were sent per topic."""
    sent = dict.fromkeys(topics, 0)
    for topic in topics:
        for _ in range(max_batches):
            with transaction() as conn:
                rows = outbox_dal.claim_pending(conn, topic, batch)
                if not rows:
                    break
                ids = [r["outbox_id"] for r in rows]
                try:
                    delivered = _send(topic, [r["payload"] for r in rows])
                except DependencyUnavailable as exc:
                    outbox_dal.mark(conn, ids, exc.message)
                    logger.warning("outbox send failed; will retry", extra={"topic": topic, "count": len(ids)})
                    break
                if not delivered:
                    break
                outbox_dal.mark(conn, ids, None)
                sent[topic] += len(ids)
            if len(rows) < batch:
                break
    if any(sent.values()):
        metrics.add_metric(name="OutboxSent", unit="Count", value=sum(sent.values()))
    return sent


def flush_after_commit(topics: list[str]) -> None:
    """Best effort right after a request's commit: what cannot be sent now stays for the sweep."""
    try:
        flush(topics)
    except DependencyUnavailable:
        logger.warning("outbox left pending: database unavailable")

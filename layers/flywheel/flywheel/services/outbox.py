"""Sending the outbox: messages written with the change that caused them, delivered after commit.

A failed send leaves its messages pending; the next request, or the hourly sweep, sends them.
Delivery is at least once (the classifier stores one classification per reply; EventBridge
consumers dedupe on `reply_key`). A message the receiver refuses for what it is (too large,
invalid) does not hold up the others: it is retried alone, and parked after PARK_AFTER refusals
with its reason (metric OutboxParked); an outage, when nothing is at fault, parks nothing. How many
parked messages are still unsent is a gauge (OutboxParkedPending, OutboxParkedAlarm), published
when a message is parked and by every hourly sweep, so the alarm lasts as long as they wait.
"""

from __future__ import annotations

from typing import Any

from flywheel.clients import events as event_bus
from flywheel.clients import queue
from flywheel.clients.aws import Delivery
from flywheel.dal import outbox as outbox_dal
from flywheel.dal.connection import transaction
from flywheel.domain.effects import fit_reply_job
from flywheel.errors import DependencyUnavailable
from flywheel.observability import logger, metrics
from flywheel.settings import get_settings

TOPICS = ("replies", "events")
# a reply's job stays within the 256 KiB that SQS queues allowed per message before 2025 (and that
# a queue's MaximumMessageSize may still say), so four go in one 1 MiB batch
MAX_REPLY_JOB_BYTES = 262_144
PARK_AFTER = 3  # refusals of the same message, each in a different flush


def _reply_job_size(job: dict[str, Any]) -> int:
    return len(queue.encode(job).encode())


def _send(topic: str, payloads: list[dict[str, Any]]) -> Delivery | None:
    """None when the topic has nowhere to go (no queue configured)."""
    settings = get_settings()
    if topic == "replies":
        if not settings.replies_queue_url:
            return None
        jobs = [fit_reply_job(p, MAX_REPLY_JOB_BYTES, _reply_job_size) for p in payloads]
        return queue.send_messages(settings.replies_queue_url, jobs)
    delivery = Delivery()
    for detail_type in sorted({p["detail_type"] for p in payloads}):
        indexes = [i for i, p in enumerate(payloads) if p["detail_type"] == detail_type]
        part = event_bus.put_events(settings.event_bus_name, detail_type, [payloads[i]["detail"] for i in indexes])
        delivery.sent.extend(indexes[i] for i in part.sent)
        delivery.refused.update({indexes[i]: reason for i, reason in part.refused.items()})
        delivery.failed.update({indexes[i]: reason for i, reason in part.failed.items()})
        if part.unavailable:
            delivery.unavailable = part.unavailable
            break
    return delivery


def flush(topics: tuple[str, ...] | list[str] = TOPICS, batch: int = 100, max_batches: int = 20) -> dict[str, int]:
    """Send pending messages of these topics; returns how many were sent per topic."""
    sent = dict.fromkeys(topics, 0)
    parked = 0
    for topic in topics:
        tried: list[int] = []  # a message not sent is tried again by a later flush, not by this one
        for _ in range(max_batches):
            with transaction() as conn:
                rows = outbox_dal.claim_pending(conn, topic, batch, tried)
                if not rows:
                    break
                ids = [r["outbox_id"] for r in rows]
                tried.extend(ids)
                delivery = _send(topic, [r["payload"] for r in rows])
                if delivery is None:
                    break
                outbox_dal.mark(conn, [ids[i] for i in delivery.sent], None)
                refused = outbox_dal.refuse(
                    conn, {ids[i]: reason for i, reason in delivery.refused.items()}, PARK_AFTER
                )
                done = set(delivery.sent) | set(delivery.refused)
                unsent = [ids[i] for i in range(len(ids)) if i not in done]
                why = delivery.unavailable or next(iter(delivery.failed.values()), "not accepted; will retry")
                outbox_dal.mark(conn, unsent, why)
            sent[topic] += len(delivery.sent)
            for row in refused:
                parked += row["parked_at"] is not None
                logger.warning(
                    "outbox message parked" if row["parked_at"] else "outbox message refused; will retry",
                    extra={k: row[k] for k in ("outbox_id", "topic", "dedupe_key", "refusals", "last_error")},
                )
            if delivery.unavailable:
                logger.warning("outbox send failed; will retry", extra={"topic": topic, "count": len(unsent)})
                break
            if len(rows) < batch:
                break
    if any(sent.values()):
        metrics.add_metric(name="OutboxSent", unit="Count", value=sum(sent.values()))
    if parked:
        metrics.add_metric(name="OutboxParked", unit="Count", value=parked)
        report_parked()  # the alarm at once, not at the next sweep
    return sent


def report_parked() -> int:
    """Parked messages still unsent, as the gauge OutboxParkedPending (OutboxParkedAlarm, Maximum):
    OutboxParked counts the parking once, in the invocation that parks, and a parked message is
    not stale (OutboxStale), so without the gauge the alarm would recover an hour later while the
    message still waits for a person."""
    with transaction() as conn:
        parked = outbox_dal.parked_count(conn)
    metrics.add_metric(name="OutboxParkedPending", unit="Count", value=parked)
    if parked:
        logger.warning("outbox messages parked and unsent", extra={"count": parked})
    return parked


STALE_AFTER_S = 3600  # a message still pending after this: the sweep has tried it at least once


def report_stale() -> int:
    """Messages still pending after STALE_AFTER_S, as the metric OutboxStale (OutboxStaleAlarm): a
    message whose every send fails through no fault of its own (an event bus that refuses the
    role, a queue that keeps failing) is never parked, and would otherwise wait unseen."""
    with transaction() as conn:
        stale = outbox_dal.stale_count(conn, STALE_AFTER_S)
    metrics.add_metric(name="OutboxStale", unit="Count", value=stale)
    if stale:
        logger.warning("outbox messages still pending after an hour", extra={"count": stale})
    return stale


def flush_after_commit(topics: list[str]) -> None:
    """Best effort right after a request's commit: what cannot be sent now stays for the sweep."""
    try:
        flush(topics)
    except DependencyUnavailable:
        logger.warning("outbox left pending: database unavailable")

"""Replies from other channels (POST /replies, queued for the classifier) and the suppression list.
Classifying them is `services.classification` (ClassifierFunction's path only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flywheel.dal import events as events_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal.connection import transaction
from flywheel.domain.ingest import IncomingEvent, content_key
from flywheel.domain.lifecycle import EventType
from flywheel.errors import Conflict, DependencyUnavailable, NotFound
from flywheel.models.replies import ReplyIn
from flywheel.services.ingest import ingest_events
from flywheel.services.outbox import flush_after_commit
from flywheel.settings import get_settings


def submit_reply(reply: ReplyIn, org_id: str) -> dict[str, Any]:
    """Store a reply to one of this organisation's messages from another channel and queue it for the
    same classifier. Another organisation's outcome is not found, exactly like one that does not
    exist (the answer confirms no other organisation's outcome id)."""
    settings = get_settings()
    if not settings.replies_queue_url:
        raise DependencyUnavailable("replies queue is not configured")
    with transaction() as conn:
        if outcomes_dal.existing_outcomes(conn, [reply.outcome_id]).get(reply.outcome_id) != org_id:
            raise NotFound(f"no outcome {reply.outcome_id}", outcome_id=str(reply.outcome_id))
    occurred = reply.occurred_at or datetime.now(UTC)
    # an external id names a reply within its outcome (two outcomes', or two organisations', replies
    # may carry the same one): the same id again is a retry, with other content a conflict
    key = (
        f"{reply.outcome_id}:{reply.external_id}"
        if reply.external_id
        else content_key({"outcome_id": str(reply.outcome_id), "text": reply.text, "occurred_at": occurred.isoformat()})
    )
    event = IncomingEvent(
        provider=f"api_{reply.channel}",
        event_key=key,
        event_type=EventType.REPLY.value,
        occurred_at=occurred,
        payload=reply.model_dump(mode="json"),
        data={"text": reply.text, "subject": reply.subject, "channel": reply.channel},
        outcome_id=str(reply.outcome_id),
    )
    stored = ingest_events([event], window_days=settings.reply_window_days)
    if stored.duplicates:
        with transaction() as conn:
            first = events_dal.event_data(conn, event.provider, key)
        if first is not None and (first.get("text"), first.get("subject")) != (reply.text, reply.subject):
            raise Conflict(
                f"external_id {reply.external_id} already names another reply of this outcome",
                field="external_id",
            )
    # the reply went to the outbox with the event; send it now (the sweep retries a failure)
    flush_after_commit(["replies"])
    return {
        "reply_key": f"{event.provider}:{key}",
        "outcome_id": str(reply.outcome_id),
        "queued": True,
        "duplicate": stored.duplicates == 1,
    }

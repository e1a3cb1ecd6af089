"""Storing provider events and applying them to their outcomes, set-wise, in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal import events as events_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.domain.ingest import IncomingEvent, IngestResult, Lookups, Match, choose_match
from flywheel.services.outcomes import recompute


def _lookups(conn: Connection, events: list[IncomingEvent], window_days: int) -> Lookups:
    claimed = sorted({e.claimed_outcome_id for e in events if e.claimed_outcome_id is not None})
    pmids = sorted({e.provider_message_id for e in events if e.provider_message_id})
    refs = sorted({r for e in events for r in e.references})
    found = Lookups(outcomes=outcomes_dal.existing_outcomes(conn, claimed))
    found.provider_message_ids = {k: Match(*v) for k, v in outcomes_dal.by_column(
        conn, "provider_message_id", pmids).items()}
    found.email_message_ids = {k: Match(*v) for k, v in outcomes_dal.by_column(
        conn, "email_message_id", refs).items()}
    meetings = sorted({str(e.data["meeting_id"]) for e in events if e.data.get("meeting_id")})
    found.meetings = {k: Match(*v) for k, v in events_dal.outcomes_for_meetings(conn, meetings).items()}
    # only events that no stronger hint resolves are attributed by email
    needs_email = [
        (i, e) for i, e in enumerate(events)
        if e.email and choose_match(i, e, found) is None
    ]
    by_position = outcomes_dal.latest_for_emails(
        conn, [(e.org_id, e.email, e.occurred_at.isoformat()) for _, e in needs_email if e.email], window_days
    )
    found.emails = {needs_email[pos][0]: Match(*match) for pos, match in by_position.items()}
    return found


def _row(event: IncomingEvent, match: Match | None) -> dict[str, Any]:
    status = "ignored" if not event.known else ("applied" if match else "orphan")
    return {
        "provider": event.provider,
        "event_key": event.event_key,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "org_id": match.org_id if match else event.org_id,
        "outcome_id": str(match.outcome_id) if match and status == "applied" else None,
        "status": status,
        "match_outcome_id": str(event.claimed_outcome_id) if event.claimed_outcome_id else None,
        "match_provider_message_id": event.provider_message_id,
        "match_email": event.email,
        "data": event.data,
        "payload": event.payload,
    }


def ingest_events(events: list[IncomingEvent], *, window_days: int, now: datetime | None = None) -> IngestResult:
    """Store every new event once (known keys are skipped) and re-derive the outcomes they touch."""
    result = IngestResult(received=len(events))
    if not events:
        return result
    # one provider batch can repeat an event: the first copy stands
    unique = list({(e.provider, e.event_key): e for e in reversed(events)}.values())[::-1]
    with transaction() as conn:
        found = _lookups(conn, unique, window_days)
        rows = [_row(e, choose_match(i, e, found)) for i, e in enumerate(unique)]
        # org rows must exist before events reference them (an org may be known only from config)
        outcomes_dal.ensure_organizations(conn, [r["org_id"] for r in rows if r["org_id"]])
        inserted = events_dal.insert_events(conn, rows)
        touched = {r["outcome_id"] for r in inserted if r["status"] == "applied"}
        touched |= events_dal.claim_meeting_orphans(conn, touched)
        recompute(conn, touched, now)
    result.stored = len(inserted)
    result.duplicates = result.received - result.stored
    result.applied = sum(1 for r in inserted if r["status"] == "applied")
    result.orphans = sum(1 for r in inserted if r["status"] == "orphan")
    result.ignored = sum(1 for r in inserted if r["status"] == "ignored")
    result.outcome_ids = sorted(str(o) for o in touched)
    return result


def linked_outcome(provider: str, event_key: str) -> str | None:
    """The outcome a stored event applies to (None while it is an orphan)."""
    with transaction() as conn:
        found = events_dal.outcome_of(conn, provider, event_key)
    return str(found) if found else None

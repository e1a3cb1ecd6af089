"""SQL for outcome_events: the append-only, de-duplicated log of provider events."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.dal.connection import Connection, jsonb
from flywheel.domain.lifecycle import EventType, OutcomeEvent

_EVENT_RECORD = """provider text, event_key text, event_type text, occurred_at timestamptz,
                   org_id text, outcome_id uuid, status text, match_outcome_id uuid,
                   match_provider_message_id text, match_email text, data jsonb, payload jsonb"""
_EVENT_COLUMNS = """provider, event_key, event_type, occurred_at, org_id, outcome_id, status,
                    match_outcome_id, match_provider_message_id, match_email, data, payload"""


def insert_events(conn: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert events whose (provider, event_key) is new; a known key is skipped, except that an
    orphan now matched to a message is attached to it. Returns the rows inserted or attached."""
    if not events:
        return []
    return conn.execute(
        f"""INSERT INTO outcome_events ({_EVENT_COLUMNS})
            SELECT {_EVENT_COLUMNS} FROM jsonb_to_recordset(%s) AS x({_EVENT_RECORD})
            ON CONFLICT (provider, event_key) DO UPDATE
               SET outcome_id = EXCLUDED.outcome_id, org_id = EXCLUDED.org_id, status = 'applied'
             WHERE outcome_events.status = 'orphan' AND EXCLUDED.status = 'applied'
            RETURNING event_id, provider, event_key, outcome_id, status""",
        (jsonb(events),),
    ).fetchall()


def claim_orphans(conn: Connection, outcomes: list[tuple[UUID, str, str | None]]) -> set[UUID]:
    """Attach orphan events to newly registered messages (by outcome id or provider message id).

    `outcomes` holds (outcome_id, org_id, provider_message_id). Returns the outcomes that gained events.
    """
    if not outcomes:
        return set()
    rows = conn.execute(
        """WITH o(outcome_id, org_id, provider_message_id) AS (
               SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[]))
           UPDATE outcome_events e
              SET outcome_id = o.outcome_id, org_id = o.org_id, status = 'applied'
             FROM o
            WHERE e.status = 'orphan'
              AND (e.match_outcome_id = o.outcome_id
                   OR (o.provider_message_id IS NOT NULL
                       AND e.match_provider_message_id = o.provider_message_id))
        RETURNING e.outcome_id""",
        ([o[0] for o in outcomes], [o[1] for o in outcomes], [o[2] for o in outcomes]),
    ).fetchall()
    return {r["outcome_id"] for r in rows}


def events_for(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, list[OutcomeEvent]]:
    rows = conn.execute(
        """SELECT outcome_id, provider, event_key, event_type, occurred_at, data
             FROM outcome_events
            WHERE outcome_id = ANY(%s) AND status = 'applied'""",
        (outcome_ids,),
    ).fetchall()
    grouped: dict[UUID, list[OutcomeEvent]] = defaultdict(list)
    for r in rows:
        grouped[r["outcome_id"]].append(
            OutcomeEvent(
                key=f"{r['provider']}:{r['event_key']}",
                type=EventType(r["event_type"]),
                occurred_at=r["occurred_at"],
                data=r["data"],
            )
        )
    return grouped


def history(conn: Connection, outcome_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT event_id, provider, event_key, event_type, occurred_at, received_at, data
             FROM outcome_events WHERE outcome_id = %s ORDER BY occurred_at, event_id""",
        (outcome_id,),
    ).fetchall()


def outcomes_for_meetings(conn: Connection, meeting_ids: list[str]) -> dict[str, tuple[UUID, str]]:
    """The outcome each meeting was booked for (a cancellation or no-show may carry no email)."""
    if not meeting_ids:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (data->>'meeting_id') data->>'meeting_id' AS meeting_id, outcome_id, org_id
             FROM outcome_events
            WHERE status = 'applied' AND data->>'meeting_id' = ANY(%s)
            ORDER BY data->>'meeting_id', occurred_at""",
        (meeting_ids,),
    ).fetchall()
    return {r["meeting_id"]: (r["outcome_id"], r["org_id"]) for r in rows}


def claim_meeting_orphans(conn: Connection, outcome_ids: set[UUID]) -> set[UUID]:
    """Orphaned events about a meeting that is now linked (e.g. a no-show that beat its booking)."""
    if not outcome_ids:
        return set()
    rows = conn.execute(
        """UPDATE outcome_events e
              SET outcome_id = b.outcome_id, org_id = b.org_id, status = 'applied'
             FROM outcome_events b
            WHERE e.status = 'orphan' AND b.status = 'applied' AND b.outcome_id = ANY(%s)
              AND e.provider = b.provider AND e.data ? 'meeting_id'
              AND e.data->>'meeting_id' = b.data->>'meeting_id'
        RETURNING e.outcome_id""",
        (list(outcome_ids),),
    ).fetchall()
    return {r["outcome_id"] for r in rows}


def outcome_of(conn: Connection, provider: str, event_key: str) -> UUID | None:
    row = conn.execute(
        "SELECT outcome_id FROM outcome_events WHERE provider = %s AND event_key = %s", (provider, event_key)
    ).fetchone()
    return row["outcome_id"] if row else None


def applied_of_types(conn: Connection, provider: str, keys: list[str], types: list[str]) -> list[dict[str, Any]]:
    """Which of these events were applied to an outcome, with that outcome's org and lead email."""
    if not keys:
        return []
    return conn.execute(
        """SELECT e.event_type, e.outcome_id, o.org_id, o.lead_email
             FROM outcome_events e JOIN outcome_labels o USING (outcome_id)
            WHERE e.provider = %s AND e.event_key = ANY(%s) AND e.event_type = ANY(%s) AND e.status = 'applied'""",
        (provider, keys, types),
    ).fetchall()


def remove_raw_payloads(conn: Connection, received_before: datetime, limit: int) -> int:
    """Retention, one batch: drop the raw payload of up to `limit` events received before the cutoff,
    oldest first, skipping rows another transaction holds (an ingest is never made to wait on us).
    The normalised event stays; an orphan keeps the email it may still be matched by."""
    rows = conn.execute(
        """WITH due AS (
               SELECT event_id FROM outcome_events
                WHERE payload IS NOT NULL AND received_at < %s
                ORDER BY received_at
                LIMIT %s
                  FOR UPDATE SKIP LOCKED)
           UPDATE outcome_events e
              SET payload = NULL, match_email = CASE WHEN e.status = 'orphan' THEN e.match_email END
             FROM due
            WHERE e.event_id = due.event_id""",
        (received_before, limit),
    )
    return rows.rowcount

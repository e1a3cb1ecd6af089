"""Registering messages and keeping each outcome's derived columns in step with its events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flywheel.dal import events as events_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.domain.lifecycle import derive_outcome
from flywheel.domain.registration import message_row
from flywheel.errors import NotFound
from flywheel.models.messages import MessageIn, RegisteredMessage, RegistrationResult


def recompute(conn: Connection, outcome_ids: set[UUID] | list[UUID], now: datetime | None = None) -> None:
    """Re-derive the lifecycle columns of these outcomes from all their events, in bulk."""
    ids = sorted(set(outcome_ids))
    if not ids:
        return
    now = now or datetime.now(UTC)
    events = events_dal.events_for(conn, ids)
    icp = outcomes_dal.icp_scores(conn, ids)
    outcomes_dal.update_derived(
        conn,
        {oid: derive_outcome(events.get(oid, []), now=now, icp_score=icp.get(oid)).as_row() for oid in ids},
    )


def register_messages(messages: list[MessageIn], outcome_ids: list[UUID] | None = None) -> RegistrationResult:
    """Register messages idempotently and apply any events that arrived before them. `outcome_ids`
    fixes the ids of new messages (the local sample data); the database assigns them otherwise."""
    rows = [message_row(m) for m in messages]
    if outcome_ids is not None:
        for row, outcome_id in zip(rows, outcome_ids, strict=True):
            row["outcome_id"] = str(outcome_id)
    with transaction() as conn:
        outcomes_dal.ensure_organizations(conn, [r["org_id"] for r in rows])
        # the same message twice in one request is one message
        unique = list({(r["org_id"], r["dedupe_key"]): r for r in rows}.values())
        ids = outcomes_dal.insert_outcomes(conn, unique)
        new = [(ids[(r["org_id"], r["dedupe_key"])][0], r) for r in unique if ids[(r["org_id"], r["dedupe_key"])][1]]
        claimed = events_dal.claim_orphans(
            conn, [(oid, r["org_id"], r["provider_message_id"]) for oid, r in new]
        )
        claimed |= events_dal.claim_meeting_orphans(conn, claimed)
        recompute(conn, claimed)
    seen: set[tuple[str, str]] = set()
    results = []
    for r in rows:
        key = (r["org_id"], r["dedupe_key"])
        outcome_id, created = ids[key]
        results.append(RegisteredMessage(outcome_id=outcome_id, created=created and key not in seen))
        seen.add(key)
    created_count = sum(1 for r in results if r.created)
    return RegistrationResult(outcomes=results, created=created_count, existing=len(results) - created_count)


def outcome_view(outcome_id: UUID) -> dict[str, Any]:
    """An outcome with its derived stage and its event history."""
    with transaction() as conn:
        row = outcomes_dal.get_outcome(conn, outcome_id)
        if row is None:
            raise NotFound(f"no outcome {outcome_id}", outcome_id=str(outcome_id))
        row["events"] = events_dal.history(conn, outcome_id)
    row.pop("dedupe_key", None)
    return row


def refresh_due_meetings(now: datetime | None = None) -> int:
    """Re-derive outcomes whose meeting has ended since their last update; returns how many."""
    now = now or datetime.now(UTC)
    with transaction() as conn:
        due = outcomes_dal.outcomes_with_meetings_due(conn, now.isoformat())
        recompute(conn, due, now)
    return len(due)


def set_training_opt_in(org_id: str, opt_in: bool) -> dict[str, Any]:
    """Only organisations that opted in contribute outcomes to training datasets."""
    with transaction() as conn:
        return outcomes_dal.set_training_opt_in(conn, org_id, opt_in)


def opted_in_organizations() -> list[str]:
    with transaction() as conn:
        return outcomes_dal.opted_in_organizations(conn)

"""One lead's CRM deal lives on one message: where each of its events goes, and the stored events
that must move when an earlier close arrives late or an orphan of the deal is claimed.

Runs inside the caller's transaction, under the link lock of the lead's email (every event of the
group takes it, and so does a registration of a message to that lead), so the deal's stored events
cannot change while it decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from flywheel.dal import events as events_dal
from flywheel.dal.connection import Connection
from flywheel.domain.ingest import DealEvent, DealGroup, Match, deal_home


@dataclass
class DealPlan:
    """Where the new events go (by their position in the batch), and which stored ones move."""

    placed: dict[int, tuple[Match | None, str]] = field(default_factory=dict)
    moves: list[tuple[int, UUID | None, str, str]] = field(default_factory=list)
    outcomes: set[UUID] = field(default_factory=set)  # every outcome that gains or loses an event

    def apply(self, conn: Connection) -> set[UUID]:
        events_dal.move_events(conn, self.moves)
        return self.outcomes


def plan_deals(conn: Connection, new: dict[DealGroup, list[tuple[int, DealEvent]]]) -> DealPlan:
    """`new`: per deal, the batch's events (position, event with its email attribution as home, or
    the message it named, `fixed`). A stored copy of a new event (a redelivery) stands for it."""
    plan = DealPlan()
    groups = sorted(new)
    stored = events_dal.deal_events(conn, groups)
    for i, group in enumerate(groups):
        rows = stored.get(i, [])
        known = {f"{r['provider']}:{r['event_key']}" for r in rows}
        events = [
            DealEvent(
                f"{r['provider']}:{r['event_key']}",
                r["event_type"],
                r["occurred_at"],
                # a named event counts where it named, wherever the deal took it
                Match(r["named"] if r["fixed"] else r["outcome_id"], r["org_id"]) if r["status"] == "applied" else None,
                r["fixed"],
            )
            for r in rows
        ] + [e for _, e in new[group] if e.key not in known]
        home, status = deal_home(events)
        target = home.outcome_id if home else None
        for position, event in new[group]:
            if not event.fixed or home:  # a named event too goes where the deal is
                plan.placed[position] = (home, status)
        for r in rows:
            if r["fixed"] and not home:
                continue  # the deal has no message: a named event stays on the one it named
            if (r["outcome_id"], r["status"]) != (target, status):
                plan.moves.append((r["event_id"], target, status, group[3]))
                plan.outcomes |= {o for o in (r["outcome_id"], target) if o is not None}
    return plan


def settle_claimed(conn: Connection, claimed: list[dict[str, Any]], emails: dict[UUID, str]) -> DealPlan:
    """After new messages claimed orphans (each by its own email attribution): the deals those
    orphans are about, placed as a whole."""
    groups: dict[DealGroup, list[tuple[int, DealEvent]]] = {
        (r["provider"], r["org_id"], r["deal_id"], emails[r["outcome_id"]]): []
        for r in claimed
        if r.get("deal_id") and r["outcome_id"] in emails
    }
    return plan_deals(conn, groups) if groups else DealPlan()

"""Performance of an organisation's messages: the funnel by model, arm, framework × tone and
campaign, with Wilson intervals (GET /campaigns/{campaign_id}/performance and the report)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal import insights as insights_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.domain.funnel import funnel
from flywheel.errors import NotFound


def funnel_groups(
    conn: Connection, org_id: str, by: tuple[str, ...], *, campaign_id: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """One entry per group: its keys, the messages sent and the funnel with intervals."""
    rows = insights_dal.funnel_counts(conn, org_id, by, campaign_id=campaign_id, since=since)
    return [{**{d: r[d] for d in by}, "messages": int(r["sent"]), "funnel": funnel(r)} for r in rows]


def campaign_performance_in(conn: Connection, org_id: str, campaign_id: str) -> dict[str, Any]:
    [total] = insights_dal.funnel_counts(conn, org_id, (), campaign_id=campaign_id)
    if not total["sent"]:
        raise NotFound(f"organisation {org_id!r} has no campaign {campaign_id!r}", campaign_id=campaign_id)
    return {
        "org_id": org_id,
        "campaign_id": campaign_id,
        "messages": int(total["sent"]),
        "first_sent_at": total["first_sent_at"],
        "last_sent_at": total["last_sent_at"],
        "funnel": funnel(total),
        "by_model": funnel_groups(conn, org_id, ("model", "version"), campaign_id=campaign_id),
        "by_strategy": funnel_groups(conn, org_id, ("framework", "tone"), campaign_id=campaign_id),
    }


def campaign_performance(org_id: str, campaign_id: str) -> dict[str, Any]:
    """One campaign of one organisation (a campaign of another organisation is not found)."""
    with transaction() as conn:
        return campaign_performance_in(conn, org_id, campaign_id)

"""SQL for the report and the performance API: funnel counts, replies per week, data health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal.connection import Connection
from flywheel.dal.outcomes import won_deals_sql
from flywheel.domain.funnel import POSITIVE_CATEGORIES

# what a funnel can be grouped by (whitelisted: these are spliced into the SQL)
DIMENSIONS = {
    "model": "coalesce(o.model_registry_id, o.model_id, 'unknown')",
    "version": "m.version",
    "arm": "o.experiment_arm",
    "framework": "o.framework",
    "tone": "o.tone",
    "campaign": "o.campaign_id",
}

FUNNEL_COUNTS = f"""count(*) AS sent, count(o.delivered_at) AS delivered, count(o.first_opened_at) AS opened,
       count(o.replied_at) AS replied,
       count(*) FILTER (WHERE o.reply_category = ANY(%(positive)s)) AS positive_reply,
       count(o.meeting_booked_at) AS meeting, coalesce(sum({won_deals_sql("o.")}), 0) AS won,
       min(o.sent_at) AS first_sent_at, max(o.sent_at) AS last_sent_at"""


def funnel_counts(
    conn: Connection,
    org_id: str,
    by: tuple[str, ...] = (),
    *,
    campaign_id: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Messages of one organisation (optionally one campaign, sent since a time) counted at every
    funnel step, per group; with no grouping, one row (sent = 0 when there is nothing)."""
    columns = [f"{DIMENSIONS[d]} AS {d}" for d in by]
    positions = ", ".join(str(i + 1) for i in range(len(by)))
    group = f"GROUP BY {positions} ORDER BY sent DESC, {positions}" if by else ""
    return conn.execute(
        f"""SELECT {", ".join([*columns, FUNNEL_COUNTS])}
              FROM outcome_labels o LEFT JOIN model_registry m ON m.model_id = o.model_registry_id
             WHERE o.org_id = %(org)s
               AND (%(campaign)s::text IS NULL OR o.campaign_id = %(campaign)s)
               AND (%(since)s::timestamptz IS NULL OR o.sent_at >= %(since)s)
             {group}""",
        {"org": org_id, "campaign": campaign_id, "since": since, "positive": list(POSITIVE_CATEGORIES)},
    ).fetchall()


def active_campaigns(conn: Connection, org_id: str, since: datetime, limit: int) -> list[dict[str, Any]]:
    """Campaigns of the organisation that sent since `since`, the busiest first."""
    return conn.execute(
        """SELECT campaign_id, count(*) AS sent_recently FROM outcome_labels
            WHERE org_id = %s AND sent_at >= %s GROUP BY campaign_id ORDER BY 2 DESC, 1 LIMIT %s""",
        (org_id, since, limit),
    ).fetchall()


def active_organizations(conn: Connection, since: datetime) -> list[str]:
    rows = conn.execute(
        """SELECT org_id FROM organizations g
            WHERE EXISTS (SELECT 1 FROM outcome_labels o WHERE o.org_id = g.org_id AND o.sent_at >= %s)
            ORDER BY org_id""",
        (since,),
    ).fetchall()
    return [r["org_id"] for r in rows]


def organization_exists(conn: Connection, org_id: str) -> bool:
    return conn.execute("SELECT 1 FROM organizations WHERE org_id = %s", (org_id,)).fetchone() is not None


def replies_per_week(conn: Connection, org_id: str, since: datetime) -> list[dict[str, Any]]:
    """Replies received per ISO week (Monday, UTC) and category; unclassified ones as NULL."""
    return conn.execute(
        """SELECT (date_trunc('week', o.replied_at AT TIME ZONE 'UTC'))::date AS week, o.reply_category AS category,
                  count(*) AS replies,
                  count(*) FILTER (WHERE o.reply_classification_source = 'fallback') AS fallback
             FROM outcome_labels o
            WHERE o.org_id = %s AND o.replied_at IS NOT NULL AND o.replied_at >= %s
            GROUP BY 1, 2 ORDER BY 1, 2""",
        (org_id, since),
    ).fetchall()


def unclassified_replies(conn: Connection, org_id: str) -> dict[str, Any]:
    row = conn.execute(
        """SELECT count(*) AS replies, min(replied_at) AS oldest FROM outcome_labels
            WHERE org_id = %s AND replied_at IS NOT NULL AND reply_category IS NULL""",
        (org_id,),
    ).fetchone()
    assert row is not None
    return row


def orphan_events(conn: Connection, org_id: str) -> dict[str, Any]:
    """Events waiting for their message: the organisation's (known from the provider account) and
    those no organisation is known for yet."""
    row = conn.execute(
        """SELECT count(*) FILTER (WHERE org_id = %(org)s) AS events,
                  count(*) FILTER (WHERE org_id = %(org)s AND event_type = 'reply') AS replies,
                  min(received_at) FILTER (WHERE org_id = %(org)s) AS oldest,
                  count(*) FILTER (WHERE org_id IS NULL) AS unknown_org,
                  count(*) FILTER (WHERE org_id IS NULL AND event_type = 'reply') AS unknown_org_replies
             FROM outcome_events WHERE status = 'orphan' AND (org_id = %(org)s OR org_id IS NULL)""",
        {"org": org_id},
    ).fetchone()
    assert row is not None
    return row


def quarantined(conn: Connection, org_id: str, since: datetime) -> dict[str, Any]:
    """Malformed provider events kept aside in the window: the organisation's, and those of no known one."""
    row = conn.execute(
        """SELECT count(*) FILTER (WHERE org_id = %(org)s) AS events,
                  max(received_at) FILTER (WHERE org_id = %(org)s) AS latest,
                  count(*) FILTER (WHERE org_id IS NULL) AS unknown_org
             FROM quarantined_events WHERE received_at >= %(since)s AND (org_id = %(org)s OR org_id IS NULL)""",
        {"org": org_id, "since": since},
    ).fetchone()
    assert row is not None
    return row


def training_runs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM training_runs ORDER BY started_at DESC, run_id LIMIT %s", (limit,)).fetchall()


def registry_history(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Every registry change since a time, oldest first, with the model's version."""
    return conn.execute(
        """SELECT h.*, m.version FROM model_history h JOIN model_registry m USING (model_id)
            WHERE h.at >= %s ORDER BY h.at, h.history_id""",
        (since,),
    ).fetchall()


def latest_experiment(conn: Connection) -> dict[str, Any] | None:
    """The running experiment, else the one that ended last."""
    return conn.execute(
        """SELECT e.*, c.version AS champion_version, t.version AS challenger_version
             FROM experiments e JOIN model_registry c ON c.model_id = e.champion_model_id
             JOIN model_registry t ON t.model_id = e.challenger_model_id
            ORDER BY e.status = 'running' DESC, e.started_at DESC LIMIT 1"""
    ).fetchone()


def registry(conn: Connection) -> list[dict[str, Any]]:
    """Models with a role (champion, challenger)."""
    return conn.execute("SELECT * FROM model_registry WHERE role IS NOT NULL ORDER BY role").fetchall()

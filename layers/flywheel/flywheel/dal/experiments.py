"""SQL for experiments, assignments, and the per-arm counts the evaluator reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal.connection import Connection, jsonb
from flywheel.dal.reports import LIVE, ROLLED, rolled_before


def running(conn: Connection) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM experiments WHERE status = 'running'").fetchone()


def get(conn: Connection, experiment_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM experiments WHERE experiment_id = %s", (experiment_id,)).fetchone()


def create(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    columns = ", ".join(row)
    values = [jsonb(v) if k == "config" else v for k, v in row.items()]
    created = conn.execute(f"INSERT INTO experiments ({columns}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING *",
                           values).fetchone()
    assert created is not None
    return created


def update(conn: Connection, experiment_id: str, **fields: Any) -> dict[str, Any]:
    assignments = ", ".join(f"{k} = %s" for k in fields)
    values = [jsonb(v) if k in ("last_decision", "config") else v for k, v in fields.items()]
    row = conn.execute(f"UPDATE experiments SET {assignments} WHERE experiment_id = %s RETURNING *",
                       (*values, experiment_id)).fetchone()
    assert row is not None
    return row


def assigned_arm(conn: Connection, experiment_id: str, org_id: str, lead_id: str) -> str | None:
    """The lead's recorded arm, by primary key (no write)."""
    row = conn.execute("SELECT arm FROM assignments WHERE experiment_id = %s AND org_id = %s AND lead_id = %s",
                       (experiment_id, org_id, lead_id)).fetchone()
    return None if row is None else str(row["arm"])


def assign(conn: Connection, experiment_id: str, org_id: str, lead_id: str, arm: str, bucket: int,
           stage: str) -> str:
    """Record the lead's arm at first assignment; when a concurrent call recorded it first, its arm.

    Under READ COMMITTED the INSERT waits for a concurrent insert of the same key and then does
    nothing; the next statement's snapshot sees the winner's committed row."""
    row = conn.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (experiment_id, org_id, lead_id) DO NOTHING
           RETURNING arm""",
        (experiment_id, org_id, lead_id, arm, bucket, stage),
    ).fetchone()
    if row is not None:
        return str(row["arm"])
    recorded = assigned_arm(conn, experiment_id, org_id, lead_id)
    assert recorded is not None, "an assignment that conflicted must exist"
    return recorded


ARM_COUNTS = """
WITH per_lead AS (
    SELECT a.arm, a.stage,
           min(o.sent_at) AS first_sent,
           bool_or(o.reply_category IN ('interested', 'meeting_request')
                   AND o.replied_at <= o.sent_at + interval '14 days') AS positive_reply,
           bool_or(o.reply_category IN ('not_interested', 'objection', 'unsubscribe')
                   AND o.replied_at <= o.sent_at + interval '14 days') AS negative_reply,
           bool_or(o.meeting_booked_at <= o.sent_at + interval '30 days') AS meeting,
           bool_or(o.deal_status = 'won' AND o.deal_closed_at <= o.sent_at + interval '90 days') AS close,
           coalesce(sum(o.deal_value) FILTER (WHERE o.deal_status = 'won'
                        AND o.deal_closed_at <= o.sent_at + interval '90 days'), 0) AS revenue,
           bool_or(o.unsubscribed_at <= o.sent_at + interval '14 days') AS unsubscribe,
           bool_or(o.spam_reported_at <= o.sent_at + interval '14 days') AS spam_report,
           bool_or(o.bounced_at <= o.sent_at + interval '3 days') AS bounce
      FROM assignments a
      LEFT JOIN outcome_labels o
        ON o.experiment_id = a.experiment_id AND o.org_id = a.org_id AND o.lead_id = a.lead_id
     WHERE a.experiment_id = %(experiment_id)s
     GROUP BY a.arm, a.stage, a.org_id, a.lead_id
),
matured AS (
    SELECT *, first_sent <= %(now)s::timestamptz - interval '14 days' AS m14,
              first_sent <= %(now)s::timestamptz - interval '30 days' AS m30,
              first_sent <= %(now)s::timestamptz - interval '90 days' AS m90,
              first_sent <= %(now)s::timestamptz - interval '3 days' AS m3
      FROM per_lead
)
SELECT arm,
       count(*) FILTER (WHERE stage = %(stage)s) AS assigned,
       count(*) FILTER (WHERE m14) AS reply_units,
       count(*) FILTER (WHERE m14 AND positive_reply) AS reply_hits,
       count(*) FILTER (WHERE m14 AND negative_reply) AS negative_hits,
       count(*) FILTER (WHERE m30) AS meeting_units,
       count(*) FILTER (WHERE m30 AND meeting) AS meeting_hits,
       count(*) FILTER (WHERE m90) AS close_units,
       count(*) FILTER (WHERE m90 AND close) AS close_hits,
       coalesce(sum(revenue) FILTER (WHERE m90), 0) AS revenue,
       count(*) FILTER (WHERE m14 AND unsubscribe) AS unsub_hits,
       count(*) FILTER (WHERE m14 AND spam_report) AS spam_hits,
       count(*) FILTER (WHERE m3) AS bounce_units,
       count(*) FILTER (WHERE m3 AND bounce) AS bounce_hits
  FROM matured
 GROUP BY arm
"""


def arm_counts(conn: Connection, experiment_id: str, stage: str, now: datetime) -> dict[str, dict[str, float]]:
    rows = conn.execute(ARM_COUNTS, {"experiment_id": experiment_id, "stage": stage, "now": now}).fetchall()
    return {r["arm"]: {k: (float(v) if k == "revenue" else int(v)) for k, v in r.items() if k != "arm"} for r in rows}


def strategies(conn: Connection, segment: str) -> list[dict[str, Any]]:
    """Messages, replies and meetings per segment x framework x tone (every organisation)."""
    column = {"industry": "lead_industry", "role": "lead_role"}[segment]
    return conn.execute(
        f"""SELECT segment, framework, tone, sum(messages) AS messages, sum(replies) AS replies,
                   sum(meetings) AS meetings
              FROM (SELECT value AS segment, framework, tone, messages, replies, meetings
                      FROM report_daily_counts WHERE dimension = %(segment)s AND {ROLLED}
                    UNION ALL
                    SELECT {column}, framework, tone, 1, (replied_at IS NOT NULL)::int,
                           (meeting_booked_at IS NOT NULL)::int
                      FROM outcome_labels
                     WHERE {LIVE} AND {column} IS NOT NULL AND framework IS NOT NULL AND tone IS NOT NULL) cells
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        {"segment": segment, "before": rolled_before(conn)},
    ).fetchall()

"""SQL for experiments, assignments, and the per-arm counts the evaluator reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flywheel.dal.connection import Connection, jsonb
from flywheel.dal.outcomes import won_deals_sql, won_revenue_sql
from flywheel.dal.report_counts import LIVE, POSITIVE, ROLLED, rolled_before

JSON_COLUMNS = ("config", "last_decision", "plan", "warnings")


def running(conn: Connection, *, lock: bool = False) -> dict[str, Any] | None:
    """The running experiment; `lock` takes its row lock (one writer at a time: a second evaluator
    waits, then finds the experiment ended, or running with the first one's changes)."""
    return conn.execute(f"SELECT * FROM experiments WHERE status = 'running'{' FOR UPDATE' if lock else ''}").fetchone()


def get(conn: Connection, experiment_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT * FROM experiments WHERE experiment_id = %s{' FOR UPDATE' if lock else ''}", (experiment_id,)
    ).fetchone()


def list_experiments(conn: Connection, limit: int) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM experiments ORDER BY started_at DESC LIMIT %s", (limit,)).fetchall()


def create(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    columns = ", ".join(row)
    values = [jsonb(v) if k in JSON_COLUMNS else v for k, v in row.items()]
    created = conn.execute(
        f"INSERT INTO experiments ({columns}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING *", values
    ).fetchone()
    assert created is not None
    return created


def update(conn: Connection, experiment_id: str, **fields: Any) -> dict[str, Any]:
    assignments = ", ".join(f"{k} = %s" for k in fields)
    values = [jsonb(v) if k in JSON_COLUMNS else v for k, v in fields.items()]
    row = conn.execute(
        f"UPDATE experiments SET {assignments} WHERE experiment_id = %s RETURNING *", (*values, experiment_id)
    ).fetchone()
    assert row is not None
    return row


def assigned_arm(conn: Connection, experiment_id: str, org_id: str, lead_id: str) -> str | None:
    """The lead's recorded arm, by primary key (no write)."""
    row = conn.execute(
        "SELECT arm FROM assignments WHERE experiment_id = %s AND org_id = %s AND lead_id = %s",
        (experiment_id, org_id, lead_id),
    ).fetchone()
    return None if row is None else str(row["arm"])


def route_references(
    conn: Connection, references: list[tuple[str, str, str | None, str | None]]
) -> dict[tuple[str, str, str | None, str | None], dict[str, Any]]:
    """What the routes of a registration batch name, in one statement: for each (org, lead, registry
    model, experiment), whether the model is registered, the experiment's two models (null when it
    does not exist) and the arm recorded for this organisation's lead in it (null when never routed)."""
    if not references:
        return {}
    rows = conn.execute(
        """SELECT r.org_id, r.lead_id, r.model_registry_id, r.experiment_id,
                  m.model_id IS NOT NULL AS model_registered,
                  e.experiment_id IS NOT NULL AS experiment_exists,
                  e.champion_model_id, e.challenger_model_id, a.arm AS assigned_arm
             FROM jsonb_to_recordset(%s) AS r(org_id text, lead_id text, model_registry_id text, experiment_id text)
             LEFT JOIN model_registry m ON m.model_id = r.model_registry_id
             LEFT JOIN experiments e ON e.experiment_id = r.experiment_id
             LEFT JOIN assignments a
               ON a.experiment_id = r.experiment_id AND a.org_id = r.org_id AND a.lead_id = r.lead_id""",
        (
            jsonb(
                [
                    {"org_id": o, "lead_id": lead, "model_registry_id": m, "experiment_id": e}
                    for o, lead, m, e in sorted(set(references), key=str)
                ]
            ),
        ),
    ).fetchall()
    return {(r["org_id"], r["lead_id"], r["model_registry_id"], r["experiment_id"]): r for r in rows}


def assign(
    conn: Connection, experiment_id: str, org_id: str, lead_id: str, arm: str, bucket: int, stage: str, segment: int
) -> str | None:
    """Record the lead's arm (and its first segment) at first assignment; when a concurrent call
    recorded it first, its arm. A lead keeps both for the whole experiment. None when the
    experiment is no longer running (a container's registry snapshot can be up to its TTL old):
    nothing is recorded then.

    The experiment's row is read FOR SHARE: an evaluation or an operator that ends it (FOR UPDATE)
    either waits for this assignment or is waited for, and then no assignment is made. Under READ
    COMMITTED the INSERT waits for a concurrent insert of the same key and then does nothing; the
    next statement's snapshot sees the winner's committed row."""
    row = conn.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
           SELECT experiment_id, %s, %s, %s, %s, %s, %s FROM experiments
            WHERE experiment_id = %s AND status = 'running' FOR SHARE
           ON CONFLICT (experiment_id, org_id, lead_id) DO NOTHING
           RETURNING arm""",
        (org_id, lead_id, arm, bucket, stage, segment, experiment_id),
    ).fetchone()
    if row is not None:
        return str(row["arm"])
    return assigned_arm(conn, experiment_id, org_id, lead_id)


# what each metric counts: (timestamp of the event, condition on the outcome row)
EVENTS = {
    "positive_reply": ("o.replied_at", "o.reply_category IN ('interested', 'meeting_request')"),
    "negative_reply": ("o.replied_at", "o.reply_category IN ('not_interested', 'objection', 'unsubscribe')"),
    "meeting": ("o.meeting_booked_at", "true"),
    # a lead closed when one of its messages is credited with a won deal (a deal several messages
    # led to is credited to one of them: dal.events._DEAL_CREDITS), at its first won deal's close (a
    # row not re-derived since sql/0028: the one deal_closed_at shows)
    "close": ("coalesce(o.first_won_at, o.deal_closed_at)", f"{won_deals_sql('o.')} > 0"),
    "unsubscribe": ("o.unsubscribed_at", "true"),
    "spam_report": ("o.spam_reported_at", "true"),
    "bounce": ("o.bounced_at", "true"),
}


def _hit(event: str, days: int) -> str:
    column, condition = EVENTS[event]
    return f"bool_or({condition} AND {column} <= l.exposed_at + interval '{int(days)} days')"


def segment_counts(
    conn: Connection, experiment_id: str, metrics: dict[str, tuple[str, int]], now: datetime, settle_hours: float = 0.0
) -> list[dict[str, Any]]:
    """Per segment and arm: leads assigned, and for each metric (name → (event, window days)) the
    exposed leads whose window has closed at least `settle_hours` ago and those with the event inside
    it. A lead's windows start at its first exposure: its first message in the experiment (messages
    dated before the experiment started are not exposures)."""
    per_lead = ",\n".join(f"{_hit(event, days)} AS {name}" for name, (event, days) in metrics.items())
    close_days = metrics.get("close", ("close", 90))[1]

    def matured(days: int) -> str:
        return f"exposed_at <= %(settled)s::timestamptz - interval '{int(days)} days'"

    aggregates = ",\n".join(
        f"count(*) FILTER (WHERE {matured(days)}) AS {name}__units, "
        f"count(*) FILTER (WHERE {matured(days)} AND {name}) AS {name}__conversions"
        for name, (_, days) in metrics.items()
    )
    sql = f"""
WITH leads AS (
    SELECT a.segment, a.stage, a.arm, a.org_id, a.lead_id,
           min(o.sent_at) FILTER (WHERE o.sent_at >= e.started_at AND o.sent_at <= %(now)s) AS exposed_at
      FROM assignments a
      JOIN experiments e ON e.experiment_id = a.experiment_id
      LEFT JOIN outcome_labels o
        ON o.experiment_id = a.experiment_id AND o.org_id = a.org_id AND o.lead_id = a.lead_id
     WHERE a.experiment_id = %(experiment_id)s
     GROUP BY 1, 2, 3, 4, 5
),
per_lead AS (
    SELECT l.segment, l.stage, l.arm, l.exposed_at,
           {per_lead},
           coalesce(sum(CASE WHEN o.won_closes IS NOT NULL
                             THEN (SELECT sum((c->>1)::numeric) FROM jsonb_array_elements(o.won_closes) AS c
                                    WHERE (c->>0)::timestamptz <= l.exposed_at + interval '{int(close_days)} days')
                             WHEN {won_deals_sql("o.")} > 0
                              AND o.deal_closed_at <= l.exposed_at + interval '{int(close_days)} days'
                             THEN {won_revenue_sql("o.")} END), 0) AS revenue
      FROM leads l
      LEFT JOIN outcome_labels o
        ON o.experiment_id = %(experiment_id)s AND o.org_id = l.org_id AND o.lead_id = l.lead_id
       AND o.sent_at >= l.exposed_at
     GROUP BY l.segment, l.stage, l.arm, l.org_id, l.lead_id, l.exposed_at
)
SELECT segment, min(stage) AS stage, arm, count(*) AS assigned,
       {aggregates},
       coalesce(sum(revenue) FILTER (WHERE {matured(close_days)}), 0) AS revenue
  FROM per_lead
 GROUP BY segment, arm
 ORDER BY segment, arm"""
    return conn.execute(
        sql, {"experiment_id": experiment_id, "now": now, "settled": now - timedelta(hours=settle_hours)}
    ).fetchall()


TRAFFIC_HISTORY = """
WITH first_touch AS (
    SELECT org_id, lead_id, min(sent_at) AS first_sent
      FROM outcome_labels
     WHERE sent_at >= %(now)s::timestamptz - make_interval(days => %(days)s + 14) AND sent_at < %(now)s
     GROUP BY org_id, lead_id
),
per_lead AS (
    SELECT f.first_sent,
           bool_or(o.reply_category IN ('interested', 'meeting_request')
                   AND o.replied_at <= f.first_sent + interval '14 days') AS positive_reply,
           bool_or(o.bounced_at <= f.first_sent + interval '1 day') AS bounce_1d,
           bool_or(o.unsubscribed_at <= f.first_sent + interval '1 day') AS unsubscribe_1d,
           bool_or(o.spam_reported_at <= f.first_sent + interval '1 day') AS spam_report_1d,
           bool_or(o.reply_category IN ('not_interested', 'objection', 'unsubscribe')
                   AND o.replied_at <= f.first_sent + interval '1 day') AS negative_reply_1d,
           bool_or(o.bounced_at <= f.first_sent + interval '3 days') AS bounce,
           bool_or(o.unsubscribed_at <= f.first_sent + interval '14 days') AS unsubscribe,
           bool_or(o.spam_reported_at <= f.first_sent + interval '14 days') AS spam_report,
           bool_or(o.reply_category IN ('not_interested', 'objection', 'unsubscribe')
                   AND o.replied_at <= f.first_sent + interval '14 days') AS negative_reply
      FROM first_touch f
      JOIN outcome_labels o ON o.org_id = f.org_id AND o.lead_id = f.lead_id AND o.sent_at >= f.first_sent
     GROUP BY f.org_id, f.lead_id, f.first_sent
)
SELECT (SELECT count(DISTINCT (org_id, lead_id)) FROM outcome_labels
         WHERE sent_at >= %(now)s::timestamptz - make_interval(days => %(days)s) AND sent_at < %(now)s) AS leads,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days') AS primary_units,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days' AND positive_reply)
           AS positive_reply,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days' AND bounce) AS bounce,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days' AND unsubscribe) AS unsubscribe,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days' AND spam_report) AS spam_report,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '14 days' AND negative_reply)
           AS negative_reply,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '1 day') AS early_units,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '1 day' AND bounce_1d) AS bounce_1d,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '1 day' AND unsubscribe_1d)
           AS unsubscribe_1d,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '1 day' AND spam_report_1d)
           AS spam_report_1d,
       count(*) FILTER (WHERE first_sent <= %(now)s::timestamptz - interval '1 day' AND negative_reply_1d)
           AS negative_reply_1d
  FROM per_lead
"""


def traffic_history(conn: Connection, now: datetime, days: int) -> dict[str, int]:
    """The last `days` of traffic: distinct leads messaged, and for leads first messaged in that
    period (plus 14 days for the 14-day window), the primary, the early guardrails (1-day windows)
    and the full-window guardrails (counted on the leads whose 14-day window has closed)."""
    row = conn.execute(TRAFFIC_HISTORY, {"now": now, "days": days}).fetchone()
    assert row is not None
    return {k: int(v or 0) for k, v in row.items()}


def record_evaluation(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    columns = ", ".join(row)
    values = [jsonb(v) if k in ("snapshot", "decision") else v for k, v in row.items()]
    created = conn.execute(
        f"INSERT INTO experiment_evaluations ({columns}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING *", values
    ).fetchone()
    assert created is not None
    return created


def evaluations(conn: Connection, experiment_id: str, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT * FROM experiment_evaluations WHERE experiment_id = %s
            ORDER BY evaluated_at, evaluation_id LIMIT %s""",
        (experiment_id, limit),
    ).fetchall()


def strategies(conn: Connection, org_id: str, segment: str) -> list[dict[str, Any]]:
    """One organisation's messages, replies and meetings per segment x framework x tone: the daily
    counts before the rollup's boundary, its messages sent since then counted one by one."""
    column = {"industry": "lead_industry", "role": "lead_role"}[segment]
    return conn.execute(
        f"""SELECT segment, framework, tone, sum(messages) AS messages, sum(replies) AS replies,
                   sum(positive_replies) AS positive_replies, sum(meetings) AS meetings
              FROM (SELECT value AS segment, framework, tone, messages, replies, positive_replies, meetings
                      FROM report_daily_counts
                     WHERE dimension = %(segment)s AND org_id = %(org_id)s AND {ROLLED}
                    UNION ALL
                    SELECT {column}, framework, tone, 1, (replied_at IS NOT NULL)::int,
                           coalesce(reply_category IN {POSITIVE}, false)::int, (meeting_booked_at IS NOT NULL)::int
                      FROM outcome_labels
                     WHERE org_id = %(org_id)s AND {LIVE}
                       AND {column} IS NOT NULL AND framework IS NOT NULL AND tone IS NOT NULL) cells
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        {"segment": segment, "org_id": org_id, "before": rolled_before(conn)},
    ).fetchall()

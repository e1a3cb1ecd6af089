"""SQL for the reports' daily counts: the rollup the leaderboard (dal.models) and the strategies
(dal.experiments) read, so an organisation's report costs what its days and cells cost, not what
its history of messages would."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal.connection import Connection
from flywheel.domain.funnel import POSITIVE_CATEGORIES

# the reply categories counted as positive replies, as an SQL list
POSITIVE = "(" + ", ".join(f"'{category}'" for category in POSITIVE_CATEGORIES) + ")"
# A report reads the rollup for the days before the boundary and outcome_labels from the boundary
# on. The boundary is read first and passed as a value, so the planner sees how few rows the live
# part has (a subquery would be planned as a third of the table); filtering the rollup by the same
# value keeps the two parts consistent even when a refresh commits in between.
LIVE = "sent_at >= coalesce(%(before)s::timestamptz, '-infinity')"
ROLLED = "day < (%(before)s::timestamptz AT TIME ZONE 'UTC')::date"

_REFRESH = f"""
WITH src AS (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, org_id, model_registry_id, lead_industry, lead_role,
           framework, tone, replied_at IS NOT NULL AS replied,
           coalesce(reply_category IN {POSITIVE}, false) AS positive, meeting_booked_at IS NOT NULL AS meeting,
           coalesce(deal_status = 'won', false) AS won, deal_value
      FROM outcome_labels
     WHERE sent_at >= coalesce(%(lo)s::timestamptz, '-infinity') AND sent_at < %(hi)s),
cells AS (
    SELECT day, org_id, 'model' AS dimension, model_registry_id AS value, '' AS framework, '' AS tone,
           replied, positive, meeting, won, deal_value
      FROM src WHERE model_registry_id IS NOT NULL
    UNION ALL
    SELECT day, org_id, 'industry', lead_industry, framework, tone, replied, positive, meeting, won, deal_value
      FROM src WHERE lead_industry IS NOT NULL AND framework IS NOT NULL AND tone IS NOT NULL
    UNION ALL
    SELECT day, org_id, 'role', lead_role, framework, tone, replied, positive, meeting, won, deal_value
      FROM src WHERE lead_role IS NOT NULL AND framework IS NOT NULL AND tone IS NOT NULL)
INSERT INTO report_daily_counts (dimension, org_id, value, framework, tone, day, messages, replies,
                                 positive_replies, meetings, deals_won, revenue)
SELECT dimension, org_id, value, framework, tone, day, count(*), count(*) FILTER (WHERE replied),
       count(*) FILTER (WHERE positive), count(*) FILTER (WHERE meeting), count(*) FILTER (WHERE won),
       coalesce(sum(deal_value) FILTER (WHERE won), 0)
  FROM cells
 GROUP BY dimension, org_id, value, framework, tone, day
"""


def refresh(conn: Connection, rolled_before: datetime, recount_from: datetime, full: bool) -> dict[str, Any]:
    """Re-aggregate every day from the older of the last refresh's end and `recount_from` (the days
    whose outcomes may have changed) up to `rolled_before`, and move the live boundary there, in the
    caller's transaction: readers see the old counts or the new, never a mix. `full` records that
    the recount reached back to the final days."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('report_daily_counts'))")
    state = conn.execute("SELECT rolled_before FROM report_rollup_state").fetchone()
    lo = min(state["rolled_before"], recount_from) if state else None
    if lo is None:  # the first refresh counts the whole history
        deleted = conn.execute("DELETE FROM report_daily_counts").rowcount
    else:
        deleted = conn.execute(
            "DELETE FROM report_daily_counts WHERE day >= (%s::timestamptz AT TIME ZONE 'UTC')::date", (lo,)
        ).rowcount
    inserted = conn.execute(_REFRESH, {"lo": lo, "hi": rolled_before}).rowcount
    conn.execute(
        """INSERT INTO report_rollup_state (rolled_before, full_recount_at) VALUES (%s, now())
                    ON CONFLICT (singleton) DO UPDATE
                    SET rolled_before = EXCLUDED.rolled_before, refreshed_at = now(),
                        full_recount_at = CASE WHEN %s THEN now() ELSE report_rollup_state.full_recount_at END""",
        (rolled_before, full or lo is None),
    )
    return {
        "from": lo.isoformat() if lo else None,
        "to": rolled_before.isoformat(),
        "rows_replaced": deleted,
        "rows_written": inserted,
    }


def full_recount_at(conn: Connection) -> datetime | None:
    row = conn.execute("SELECT full_recount_at FROM report_rollup_state").fetchone()
    return None if row is None else row["full_recount_at"]


def rolled_before(conn: Connection) -> datetime | None:
    """Where the rollup ends and live counting starts (None: never refreshed, everything is live)."""
    row = conn.execute("SELECT rolled_before FROM report_rollup_state").fetchone()
    return None if row is None else row["rolled_before"]

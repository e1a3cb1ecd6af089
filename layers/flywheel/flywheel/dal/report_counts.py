"""SQL for the reports' daily counts: the rollup the leaderboard (dal.models) and the strategies
(dal.experiments) read, so an organisation's report costs what its days and cells cost, not what
its history of messages would. Kept up to date from report_count_changes, which triggers on
outcome_labels fill in the transaction of each change (sql/0016_incremental_report_rollup.sql
explains why nothing is lost or counted twice).

Every day here is a UTC day, and no statement depends on the session's TimeZone: timestamps become
days with `AT TIME ZONE 'UTC'`, days are passed as dates, and day series are integer offsets
(connection.py also pins sessions to UTC; this keeps the rollup right on a session it did not)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flywheel.dal.connection import Connection
from flywheel.dal.outcomes import won_deals_sql, won_revenue_sql
from flywheel.domain.funnel import POSITIVE_CATEGORIES

# the reply categories counted as positive replies, as an SQL list
POSITIVE = "(" + ", ".join(f"'{category}'" for category in POSITIVE_CATEGORIES) + ")"
# A report reads the rollup for the days before the boundary and outcome_labels from the boundary
# on. The boundary is read first and passed as a value, so the planner sees how few rows the live
# part has (a subquery would be planned as a third of the table); filtering the rollup by the same
# value keeps the two parts consistent even when a refresh commits in between.
LIVE = "sent_at >= coalesce(%(before)s::timestamptz, '-infinity')"
ROLLED = "day < (%(before)s::timestamptz AT TIME ZONE 'UTC')::date"

_KEYS = ("dimension", "org_id", "value", "framework", "tone", "day")  # report_daily_counts' primary key
_KEY = ", ".join(_KEYS)
_SUMS = "messages, replies, positive_replies, meetings, deals_won, revenue"
# the cells one source row adds to (a model cell; industry and role cells need a framework and a
# tone), from `src` with per-row contributions: messages, replies, positive, meetings, won, revenue
_CELLS = """
cells AS (
    SELECT c.dimension, src.org_id, c.value, c.framework, c.tone, src.day, sum(src.messages) AS messages,
           sum(src.replies) AS replies, sum(src.positive) AS positive_replies, sum(src.meetings) AS meetings,
           sum(src.won) AS deals_won, sum(src.revenue) AS revenue
      FROM src
     CROSS JOIN LATERAL (VALUES ('model', src.model_registry_id, '', ''),
                                ('industry', src.lead_industry, src.framework, src.tone),
                                ('role', src.lead_role, src.framework, src.tone))
           AS c(dimension, value, framework, tone)
     WHERE c.value IS NOT NULL AND c.framework IS NOT NULL AND c.tone IS NOT NULL
     GROUP BY c.dimension, src.org_id, c.value, c.framework, c.tone, src.day)"""


def _same_key(a: str, b: str) -> str:
    return f"({', '.join(f'{a}.{k}' for k in _KEYS)}) = ({', '.join(f'{b}.{k}' for k in _KEYS)})"


# Consume the change rows this transaction's snapshot sees (`limit` of them, or all): add those of
# days before the boundary to their cells (a cell whose sums all reach zero goes), discard the rest
# (days still live are counted whole when the boundary passes them). A batch of `limit` rows, taken
# in heap order (not commit order), may hold an outcome's later change without its earlier one, so a
# cell can pass through 0 messages while still holding replies or revenue: only all-zero cells go.
_APPLY_CHANGES = f"""
WITH consumed AS (
    DELETE FROM report_count_changes
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM report_count_changes LIMIT %(limit)s))
    RETURNING *),
src AS (
    SELECT day, org_id, model_registry_id, lead_industry, lead_role, framework, tone, messages, replies,
           CASE WHEN reply_category IN {POSITIVE} THEN messages ELSE 0 END AS positive, meetings,
           deals_won AS won, revenue
      FROM consumed
     WHERE day < %(before)s::date
       AND NOT EXISTS (SELECT 1 FROM report_rollup_days t WHERE t.day = consumed.day AND t.counted_at = '-infinity')),
{_CELLS},
delta AS (
    SELECT * FROM cells WHERE ({_SUMS}) <> (0, 0, 0, 0, 0, 0)),
emptied AS (
    DELETE FROM report_daily_counts r USING delta d
     WHERE {_same_key("r", "d")}
       AND (r.messages + d.messages, r.replies + d.replies, r.positive_replies + d.positive_replies,
            r.meetings + d.meetings, r.deals_won + d.deals_won, r.revenue + d.revenue) = (0, 0, 0, 0, 0, 0)
    RETURNING r.*),
written AS (
    INSERT INTO report_daily_counts AS r ({_KEY}, {_SUMS})
    SELECT {_KEY}, {_SUMS} FROM delta d
     WHERE NOT EXISTS (SELECT 1 FROM emptied e WHERE {_same_key("e", "d")})
    ON CONFLICT ({_KEY}) DO UPDATE
       SET messages = r.messages + EXCLUDED.messages, replies = r.replies + EXCLUDED.replies,
           positive_replies = r.positive_replies + EXCLUDED.positive_replies,
           meetings = r.meetings + EXCLUDED.meetings, deals_won = r.deals_won + EXCLUDED.deals_won,
           revenue = r.revenue + EXCLUDED.revenue
    RETURNING 1)
SELECT (SELECT count(*) FROM consumed) AS consumed, (SELECT count(*) FROM src) AS applied,
       (SELECT count(*) FROM emptied) + (SELECT count(*) FROM written) AS cells
"""

# Count the days [lo, hi) whole from outcome_labels and make their cells say so, writing only the
# cells that differ (the number written is the drift when the days were already rolled up).
_COUNT_DAYS = f"""
WITH src AS (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, org_id, model_registry_id, lead_industry, lead_role,
           framework, tone, 1 AS messages, (replied_at IS NOT NULL)::int AS replies,
           coalesce(reply_category IN {POSITIVE}, false)::int AS positive,
           (meeting_booked_at IS NOT NULL)::int AS meetings, {won_deals_sql()} AS won,
           {won_revenue_sql()} AS revenue
      FROM outcome_labels
     WHERE sent_at >= coalesce(%(lo_at)s::timestamptz, '-infinity') AND sent_at < %(hi_at)s::timestamptz),
{_CELLS},
stale AS (
    DELETE FROM report_daily_counts r
     WHERE r.day >= coalesce(%(lo)s::date, '-infinity') AND r.day < %(hi)s::date
       AND NOT EXISTS (SELECT 1 FROM cells c WHERE {_same_key("r", "c")})
    RETURNING 1),
written AS (
    INSERT INTO report_daily_counts AS r ({_KEY}, {_SUMS})
    SELECT {_KEY}, {_SUMS} FROM cells
    ON CONFLICT ({_KEY}) DO UPDATE
       SET messages = EXCLUDED.messages, replies = EXCLUDED.replies, positive_replies = EXCLUDED.positive_replies,
           meetings = EXCLUDED.meetings, deals_won = EXCLUDED.deals_won, revenue = EXCLUDED.revenue
     WHERE (r.{_SUMS.replace(", ", ", r.")}) IS DISTINCT FROM
           (EXCLUDED.{_SUMS.replace(", ", ", EXCLUDED.")})
    RETURNING 1)
SELECT (SELECT count(*) FROM src) AS messages, (SELECT count(*) FROM stale) + (SELECT count(*) FROM written) AS cells
"""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


# report_rollup_days.counted_at of a day whose change rows must not be added (begin_step)
TAINTED = "-infinity"
STATEMENT_LIMIT_S = 600.0  # no statement of a step runs longer than this, whatever the budget


def limit_statement_time(conn: Connection, seconds: float | None) -> None:
    """Cancel the step's next statements when one runs longer than `seconds` (None: the general
    limit): the caller passes what is left of its time budget, so a step ends by its deadline."""
    limit = STATEMENT_LIMIT_S if seconds is None else min(STATEMENT_LIMIT_S, seconds)
    conn.execute(f"SET LOCAL statement_timeout = {max(1, int(limit * 1000))}")


def begin_step(conn: Connection, seconds: float | None = None) -> dict[str, Any] | None:
    """Start a refresh step in the caller's (just begun) transaction: REPEATABLE READ, so every
    statement of the step sees one snapshot, taken only after the lock (LOCK TABLE takes none): a
    step never starts from a snapshot older than the previous step's commit; `seconds` limits each
    statement (limit_statement_time). Reports read the state
    and the counts meanwhile (ACCESS SHARE does not conflict). Returns the state (None: never
    refreshed) with `rolled_before` as a UTC date; a refresh by the previous release since the last
    step (it re-counted days the change rows also cover) makes every day due for a re-count."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    limit_statement_time(conn, seconds)  # the lock wait counts too
    conn.execute("LOCK TABLE report_rollup_state IN EXCLUSIVE MODE")
    state = conn.execute("SELECT rolled_before, refreshed_at, changes_applied_at FROM report_rollup_state").fetchone()
    if state is None:
        return None
    day = state["rolled_before"].astimezone(UTC).date()
    if state["refreshed_at"] != state["changes_applied_at"]:
        # The previous release re-counted its window whole, with some of the pending changes in it:
        # every day of the window is due, and each rolled-up day a pending change touches (however
        # old: its window moved on since) is marked TAINTED, its change rows discarded until it is
        # counted whole again, whatever REPORT_RECOUNT_HOURS says (days_due lists it first).
        conn.execute("DELETE FROM report_rollup_days")
        conn.execute(
            f"""INSERT INTO report_rollup_days (day, counted_at)
                SELECT DISTINCT day, '{TAINTED}'::timestamptz FROM report_count_changes WHERE day < %s""",
            (day,),
        )
    return {**state, "day": day}


def apply_changes(conn: Connection, rolled_before: date | None, limit: int | None) -> dict[str, int]:
    """Consume up to `limit` change rows (None: all the snapshot sees) and add those of days before
    `rolled_before` to the rollup. Returns the rows consumed, those applied and the cells written."""
    row = conn.execute(_APPLY_CHANGES, {"before": rolled_before, "limit": limit}).fetchone()
    assert row is not None
    return {"consumed": int(row["consumed"]), "applied": int(row["applied"]), "cells": int(row["cells"])}


def count_days(conn: Connection, lo: date | None, hi: date, at: datetime) -> dict[str, int]:
    """Count the days from `lo` (None: the beginning) to `hi` whole, in the step's snapshot (call
    apply_changes first in the same step: the change rows of these days are then consumed with it),
    and record when. Returns the messages read and the cells written."""
    # the days as dates and their bounds as UTC instants: a timestamptz cast to a date would take the
    # session's TimeZone, and west of UTC the day before `lo` would lose its cells
    bounds = {"lo": lo, "hi": hi, "lo_at": None if lo is None else midnight(lo), "hi_at": midnight(hi)}
    row = conn.execute(_COUNT_DAYS, bounds).fetchone()
    assert row is not None
    conn.execute(
        """INSERT INTO report_rollup_days (day, counted_at)
           SELECT %(lo)s::date + d, %(at)s FROM generate_series(0, %(hi)s::date - %(lo)s::date - 1) AS d
           ON CONFLICT (day) DO UPDATE SET counted_at = EXCLUDED.counted_at""",
        {"lo": lo if lo is not None else hi - timedelta(days=1), "hi": hi, "at": at},
    )
    return {"messages": int(row["messages"]), "cells": int(row["cells"])}


def next_day_with_messages(conn: Connection, after: date | None, before: date) -> date | None:
    """The first UTC day from `after` (None: ever) and before `before` with a message sent."""
    row = conn.execute(
        """SELECT (min(sent_at) AT TIME ZONE 'UTC')::date AS day FROM outcome_labels
            WHERE sent_at >= coalesce(%s::timestamptz, '-infinity') AND sent_at < %s""",
        (None if after is None else midnight(after), midnight(before)),
    ).fetchone()
    return None if row is None else row["day"]


def days_due(conn: Connection, lo: date, hi: date, counted_before: datetime | None) -> list[date]:
    """Rolled-up days in [lo, hi) not counted whole since `counted_before` (None: none of them), and
    the TAINTED days before `hi` whatever their age, the oldest count first (never counted by this
    release first; the latest day first among equals)."""
    rows = conn.execute(
        f"""SELECT day FROM (
                SELECT %(lo)s::date + d AS day, r.counted_at
                  FROM generate_series(0, %(hi)s::date - %(lo)s::date - 1) AS d
                  LEFT JOIN report_rollup_days r ON r.day = %(lo)s::date + d
                 WHERE %(before)s::timestamptz IS NOT NULL AND (r.counted_at IS NULL OR r.counted_at < %(before)s)
                UNION
                SELECT day, counted_at FROM report_rollup_days WHERE counted_at = '{TAINTED}' AND day < %(hi)s) due
            ORDER BY counted_at NULLS FIRST, day DESC""",
        {"lo": lo, "hi": hi, "before": counted_before},
    ).fetchall()
    return [r["day"] for r in rows]


def finish_step(conn: Connection, rolled_before: date) -> None:
    """Record the step (and where the rollup ends) in its transaction: its counts, its consumed
    change rows and the boundary commit together."""
    conn.execute(
        """INSERT INTO report_rollup_state (rolled_before, changes_applied_at) VALUES (%s, now())
           ON CONFLICT (singleton) DO UPDATE
           SET rolled_before = EXCLUDED.rolled_before, refreshed_at = now(), changes_applied_at = now()""",
        (midnight(rolled_before),),
    )


def rolled_before(conn: Connection) -> datetime | None:
    """Where the rollup ends and live counting starts (None: never refreshed, everything is live)."""
    row = conn.execute("SELECT rolled_before FROM report_rollup_state").fetchone()
    return None if row is None else row["rolled_before"]

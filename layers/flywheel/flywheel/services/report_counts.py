"""The reports' daily counts, refreshed on a schedule (ReportRollupFunction) from what changed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flywheel.dal import report_counts as counts_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.errors import StatementCancelled
from flywheel.settings import get_settings

# change rows consumed per transaction: a backlog (the function stopped for a day) is worked off in
# short transactions; rows of any batch add up to the same counts
CHANGES_PER_STEP = 50_000


class _OutOfTime(Exception):
    """A step was cancelled at the deadline (rolled back: the next run does it again)."""


class _Budget:
    """Whether another step fits: the longest step so far must still fit before the deadline. That
    is a forecast (the next day may be bigger, the lock may be held), so each statement of a step is
    also limited to the time left (`left`): a step that overruns is cancelled at the deadline."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.longest = 0.0

    def another(self) -> bool:
        return self.deadline is None or time.monotonic() + self.longest < self.deadline

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    @contextmanager
    def step(self) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        except StatementCancelled as exc:
            if self.deadline is not None and time.monotonic() >= self.deadline - 1.0:
                raise _OutOfTime from exc
            raise
        self.longest = max(self.longest, time.monotonic() - start)


def refresh_daily_counts(now: datetime | None = None, *, time_budget_s: float | None = None) -> dict[str, Any]:
    """Bring the rollup up to date, each step one short transaction (readers see the counts before
    or after it, never a mix):
    1. add what changed since the last refresh (report_count_changes, written by triggers with each
       change to outcome_labels) to the days already rolled up: the cost follows the changes;
    2. move the live boundary to today (UTC), counting each day it passes whole, one day with
       messages per step; the first refresh counts the whole history this way;
    3. safety net: re-count whole, one day per step, each day whose outcomes can still change
       (OUTCOME_FINAL_DAYS) not counted for REPORT_RECOUNT_HOURS; cells it has to correct are drift
       (changes the triggers did not see), reported as `cells_corrected`.
    Steps stop when the next one would not fit `time_budget_s` (None: no limit), and a step that
    overruns the forecast is cancelled at the deadline; the next run continues (`done` false). A
    day's messages sent today stay live."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    budget = _Budget(time_budget_s)
    out: dict[str, Any] = {
        "changes": 0,
        "changes_applied": 0,
        "cells_updated": 0,
        "days_rolled": 0,
        "days_recounted": 0,
        "messages_counted": 0,
        "cells_corrected": 0,
        "days_due": 0,
    }

    def applied(conn: Connection, rolled: date | None, limit: int | None) -> int:
        counts_dal.limit_statement_time(conn, budget.left())
        result = counts_dal.apply_changes(conn, rolled, limit)
        out["changes"] += result["consumed"]
        out["changes_applied"] += result["applied"]
        out["cells_updated"] += result["cells"]
        return result["consumed"]

    def finish(done: bool, rolled: date | None) -> dict[str, Any]:
        return {**out, "rolled_before": None if rolled is None else rolled.isoformat(), "done": done}

    rolled: date | None = None
    try:
        # 1. what changed
        while True:
            with budget.step(), transaction() as conn:
                state = counts_dal.begin_step(conn, budget.left())
                rolled = state["day"] if state else None
                consumed = applied(conn, rolled, CHANGES_PER_STEP)
                if rolled is not None:
                    counts_dal.finish_step(conn, rolled)
            if consumed < CHANGES_PER_STEP:
                break
            if not budget.another():
                return finish(False, rolled)

        # 2. the boundary to today
        while rolled is None or rolled < today:
            if not budget.another():
                return finish(False, rolled)
            with budget.step(), transaction() as conn:
                state = counts_dal.begin_step(conn, budget.left())
                rolled = state["day"] if state else None
                if rolled is not None and rolled >= today:
                    break
                applied(conn, rolled, None)
                day = counts_dal.next_day_with_messages(conn, rolled, today)
                upto = today if day is None else day + timedelta(days=1)
                counts_dal.limit_statement_time(conn, budget.left())
                counted = counts_dal.count_days(conn, rolled, upto, now)
                counts_dal.finish_step(conn, upto)
            out["days_rolled"] += (upto - (rolled if rolled is not None else day or upto)).days
            out["messages_counted"] += counted["messages"]
            out["cells_updated"] += counted["cells"]
            rolled = upto

        # 3. the safety net (with REPORT_RECOUNT_HOURS 0, only the days a refresh by the previous
        # release left tainted: their change rows are discarded until they are counted whole)
        recount = settings.report_recount_hours > 0
        while True:
            if not budget.another():
                return finish(False, rolled)
            with budget.step(), transaction() as conn:
                state = counts_dal.begin_step(conn, budget.left())
                assert state is not None  # step 2 left a boundary
                rolled = state["day"]
                due = counts_dal.days_due(
                    conn,
                    rolled - timedelta(days=settings.outcome_final_days),
                    rolled,
                    now - timedelta(hours=settings.report_recount_hours) if recount else None,
                )
                out["days_due"] = len(due)
                if not due:
                    break
                applied(conn, rolled, None)
                counts_dal.limit_statement_time(conn, budget.left())
                counted = counts_dal.count_days(conn, due[0], due[0] + timedelta(days=1), now)
                counts_dal.finish_step(conn, rolled)
            out["days_recounted"] += 1
            out["days_due"] -= 1
            out["messages_counted"] += counted["messages"]
            out["cells_corrected"] += counted["cells"]
        return finish(True, rolled)
    except _OutOfTime:  # the step in flight was rolled back at the deadline: the next run redoes it
        return finish(False, rolled)


def recount_day(day: date, now: datetime | None = None) -> dict[str, Any]:
    """Count one rolled-up day whole now (what the safety net does for each due day), after adding
    what changed; returns the messages read and the cells corrected."""
    with transaction() as conn:
        state = counts_dal.begin_step(conn)
        if state is None or day >= state["day"]:
            raise ValueError(f"{day} is not rolled up (the rollup ends before {state and state['day']})")
        counts_dal.apply_changes(conn, state["day"], None)
        counted = counts_dal.count_days(conn, day, day + timedelta(days=1), now or datetime.now(UTC))
        counts_dal.finish_step(conn, state["day"])
    return {"day": day.isoformat(), "messages_counted": counted["messages"], "cells_corrected": counted["cells"]}

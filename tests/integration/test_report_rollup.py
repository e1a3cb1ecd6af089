"""Reports from daily counts: the leaderboard and the strategies give the same numbers as counting
every message — before and after a refresh, after random changes on old and new days, while a
refresh runs, and while several processes change outcomes during refreshes — and a refresh works in
proportion to what changed, not to the days it covers or the table."""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal import connection
from flywheel.dal import report_counts as counts_dal
from flywheel.dal.connection import close_connection
from flywheel.domain.ingest import IncomingEvent
from flywheel.local.invoke import invoke
from flywheel.services import experiments, report_counts, training
from flywheel.services.ingest import ingest_events
from flywheel.settings import reset_settings
from tests.conftest import ROOT, in_processes, load_event

NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
DAY = TODAY.date()

# the reports' previous definition: one organisation's messages counted from outcome_labels on every call
REFERENCE_STRATEGIES = """
SELECT {column} AS segment, framework, tone, count(*) AS messages, count(replied_at) AS replies,
       count(*) FILTER (WHERE reply_category IN ('interested', 'meeting_request')) AS positive_replies,
       count(meeting_booked_at) AS meetings
  FROM outcome_labels WHERE org_id = %s AND {column} IS NOT NULL AND framework IS NOT NULL AND tone IS NOT NULL
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
REFERENCE_LEADERBOARD = """
SELECT m.model_id, m.version, m.status, m.role, m.traffic_percentage,
       count(o.outcome_id) AS messages_sent, count(o.replied_at) AS replies,
       count(o.outcome_id) FILTER (WHERE o.reply_category IN ('interested', 'meeting_request')) AS positive_replies,
       count(o.meeting_booked_at) AS meetings, count(o.outcome_id) FILTER (WHERE o.deal_status = 'won') AS deals_won,
       coalesce(sum(o.deal_value) FILTER (WHERE o.deal_status = 'won'), 0) AS revenue
  FROM model_registry m LEFT JOIN outcome_labels o ON o.model_registry_id = m.model_id AND o.org_id = %s
 GROUP BY m.model_id, m.version, m.status, m.role, m.traffic_percentage
 ORDER BY messages_sent DESC, m.version DESC"""
ORGS = ("a", "b", "c")
# every cell of the rollup counted from outcome_labels (the raw numbers, not just the reports' rates)
REFERENCE_CELLS = """
SELECT c.dimension, org_id, c.value, c.framework, c.tone, (sent_at AT TIME ZONE 'UTC')::date AS day, count(*) AS messages,
       count(replied_at) AS replies,
       count(*) FILTER (WHERE reply_category IN ('interested', 'meeting_request')) AS positive_replies,
       count(meeting_booked_at) AS meetings, count(*) FILTER (WHERE deal_status = 'won') AS deals_won,
       coalesce(sum(deal_value) FILTER (WHERE deal_status = 'won'), 0) AS revenue
  FROM outcome_labels
 CROSS JOIN LATERAL (VALUES ('model', model_registry_id, '', ''), ('industry', lead_industry, framework, tone),
                            ('role', lead_role, framework, tone)) AS c(dimension, value, framework, tone)
 WHERE c.value IS NOT NULL AND c.framework IS NOT NULL AND c.tone IS NOT NULL
   AND sent_at < (SELECT rolled_before FROM report_rollup_state)
 GROUP BY 1, 2, 3, 4, 5, 6"""
ROLLUP_CELLS = """SELECT dimension, org_id, value, framework, tone, day, messages, replies, positive_replies, meetings,
                         deals_won, revenue FROM report_daily_counts"""
INSERT_MESSAGE = """
INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, model_registry_id, lead_industry,
                            lead_role, framework, tone, replied_at, reply_category, meeting_booked_at, deal_status,
                            deal_value)
VALUES (%(org)s, %(key)s, 'c', %(key)s, 'hi', %(sent)s, %(model)s, %(industry)s, %(role)s, %(framework)s, %(tone)s,
        %(replied)s, %(category)s, %(meeting)s, %(deal)s, %(value)s)"""
A_MESSAGE = {
    "org": "a",
    "model": "m-1",
    "industry": "saas",
    "role": "cfo",
    "framework": "PAS",
    "tone": "warm",
    "replied": None,
    "category": None,
    "meeting": None,
    "deal": None,
    "value": None,
}


def insert(db: Any, key: str, sent: datetime, **fields: Any) -> None:
    db.execute(INSERT_MESSAGE, {**A_MESSAGE, "key": key, "sent": sent, **fields})


@pytest.fixture
def seeded(db, db_url) -> None:
    """Three orgs' messages over 200 days (final and not), and today's, from two models."""
    for minor in (0, 1):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  base_model) VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'nova')""",
            (f"m-{minor}", f"v1.{minor}.0", minor),
        )
    db.execute("INSERT INTO organizations (org_id) VALUES ('a'), ('b'), ('c')")
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, model_registry_id,
                                       lead_industry, lead_role, framework, tone, replied_at, reply_category,
                                       meeting_booked_at, deal_status, deal_value)
           SELECT (ARRAY['a', 'b', 'c'])[1 + i %% 3], 'k' || i, 'c', 'l' || i, 'hi',
                  %(today)s::timestamptz - make_interval(hours => (i * 37) %% (200 * 24)) + interval '20 hours',
                  CASE WHEN i %% 5 = 0 THEN NULL ELSE 'm-' || (i %% 2) END,
                  CASE WHEN i %% 7 = 0 THEN NULL ELSE (ARRAY['saas', 'fintech', 'retail'])[1 + i %% 3] END,
                  (ARRAY['cfo', 'cto'])[1 + i %% 2], (ARRAY['PAS', 'AIDA'])[1 + i %% 2],
                  CASE WHEN i %% 11 = 0 THEN NULL ELSE 'warm' END,
                  CASE WHEN i %% 4 = 0 THEN now() END,
                  CASE WHEN i %% 8 = 0 THEN 'interested' WHEN i %% 4 = 0 THEN 'objection' END,
                  CASE WHEN i %% 16 = 0 THEN now() END,
                  CASE WHEN i %% 32 = 0 THEN 'won' WHEN i %% 48 = 0 THEN 'lost' END,
                  CASE WHEN i %% 32 = 0 THEN 1000 + i END
             FROM generate_series(1, 3000) AS i""",
        {"today": TODAY},
    )


def current(db) -> dict[str, Any]:
    return {
        org: {
            "leaderboard": experiments.leaderboard_with_intervals(training.leaderboard(org)),
            "industry": experiments.strategies(org, "industry", 1),
            "role": experiments.strategies(org, "role", 1),
        }
        for org in ORGS
    }


def reference(db) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for org in ORGS:
        board = db.execute(REFERENCE_LEADERBOARD, (org,)).fetchall()
        result[org] = {"leaderboard": experiments.leaderboard_with_intervals(board)}
        for segment, column in (("industry", "lead_industry"), ("role", "lead_role")):
            rows = db.execute(REFERENCE_STRATEGIES.format(column=column), (org,)).fetchall()
            cells = [
                {
                    "segment": r["segment"],
                    "framework": r["framework"],
                    "tone": r["tone"],
                    "reply_rate": experiments._rate(r["replies"], r["messages"]),
                    "positive_reply_rate": experiments._rate(r["positive_replies"], r["messages"]),
                    "meeting_rate": experiments._rate(r["meetings"], r["messages"]),
                }
                for r in rows
            ]
            result[org][segment] = {
                "org_id": org,
                "segment_by": segment,
                "min_sample": 1,
                "cells": cells,
                "hidden_cells": 0,
            }
    return result


def cells(db, query: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {tuple(r.values())[:6]: tuple(r.values())[6:] for r in db.execute(query).fetchall()}


def assert_exact(db) -> None:
    """Every rolled-up cell holds exactly what counting outcome_labels gives, and the reports agree."""
    assert cells(db, ROLLUP_CELLS) == cells(db, REFERENCE_CELLS)
    assert current(db) == reference(db)


def sent_total(report: dict[str, Any], org: str) -> int:
    return sum(m["messages_sent"] for m in report[org]["leaderboard"])


def pending(db) -> int:
    return int(db.execute("SELECT count(*) AS n FROM report_count_changes").fetchone()["n"])


def update_one(db, assignment: str, where: str, *params: Any) -> None:
    """Change the first outcome (by dedupe key) that `where` selects."""
    db.execute(f"UPDATE outcome_labels SET {assignment} WHERE outcome_id = %s", (one(db, where, *params),))


def one(db, where: str, *params: Any) -> Any:
    row = db.execute(f"SELECT outcome_id FROM outcome_labels WHERE {where} ORDER BY dedupe_key LIMIT 1", params)
    return row.fetchone()["outcome_id"]


def test_reports_match_counting_everything_before_and_after_a_refresh(db, seeded) -> None:
    assert pending(db) > 0  # the seeding's insert wrote its change rows (nothing is rolled up yet)
    assert current(db) == reference(db)  # never refreshed: everything is live
    result = report_counts.refresh_daily_counts(NOW)
    # the first run counts the whole history, a day per step, and discards the change rows it covers
    before_today = db.execute("SELECT count(*) AS n FROM outcome_labels WHERE sent_at < %s", (TODAY,)).fetchone()["n"]
    assert result["messages_counted"] == before_today and result["days_rolled"] == 200
    assert result["changes"] > 0 and result["changes_applied"] == 0 and result["done"] is True
    assert pending(db) == 0
    assert db.execute("SELECT rolled_before FROM report_rollup_state").fetchone()["rolled_before"] == TODAY
    live = db.execute("SELECT count(*) AS n FROM outcome_labels WHERE sent_at >= %s", (TODAY,)).fetchone()["n"]
    assert 0 < live < 100  # today's messages are the only ones still read one by one
    assert_exact(db)
    assert current(db)["a"]["leaderboard"][0]["messages_sent"] > 300


def test_changes_on_past_days_are_added_by_the_next_refresh(db, seeded) -> None:
    report_counts.refresh_daily_counts(NOW)
    old = TODAY - timedelta(days=150)  # long final: the old design never re-counted it again
    # a reply 10 days on, a deal 60 days on, a deal on a final day, a correction from positive to an
    # objection, a message re-attributed to another model and moved to another day, one removed,
    # one registered late for a past day, and one sent today
    update_one(
        db,
        "replied_at = now(), reply_category = 'interested'",
        "replied_at IS NULL AND model_registry_id IS NOT NULL AND sent_at BETWEEN %s AND %s",
        TODAY - timedelta(days=11),
        TODAY - timedelta(days=9),
    )
    for since in (TODAY - timedelta(days=61), old):
        update_one(
            db,
            "deal_status = 'won', deal_value = 5000",
            "deal_status IS NULL AND org_id = 'a' AND sent_at BETWEEN %s AND %s",
            since,
            since + timedelta(days=2),
        )
    update_one(db, "reply_category = 'objection'", "reply_category = 'interested' AND sent_at < %s", old)
    update_one(
        db,
        "model_registry_id = 'm-1', sent_at = sent_at - interval '3 days'",
        "model_registry_id = 'm-0' AND sent_at < %s",
        TODAY - timedelta(days=5),
    )
    db.execute("DELETE FROM outcome_labels WHERE outcome_id = %s", (one(db, "deal_status = 'won' AND org_id = 'b'"),))
    for key, sent in (("late", TODAY - timedelta(days=40, hours=-3)), ("today", NOW)):
        insert(db, key, sent)
    before_refresh, truth = current(db), reference(db)
    assert before_refresh != truth  # the past days' changes wait for the next refresh; today's message
    assert sent_total(before_refresh, "a") + 1 == sent_total(truth, "a")  # counts at once, the late one waits
    changes = pending(db)
    assert changes == 2 * 5 + 1 + 2  # five updates (out, in), a removal, two registrations (a row each)
    again = report_counts.refresh_daily_counts(NOW)
    assert again["changes"] == changes and again["changes_applied"] == changes - 1  # today's is live
    assert again["days_rolled"] == 0 and again["messages_counted"] == 0  # nothing re-counted
    assert_exact(db)


def random_change(db, rng: random.Random, day: date, serial: int) -> None:
    """One random change of any kind on any day of the last 200 (old, recent, today's), or none."""
    kind = rng.choice(
        ["reply", "unreply", "category", "meeting", "deal", "dimension", "move", "insert", "delete", "open"]
    )
    sent = datetime.combine(day, datetime.min.time(), UTC) - timedelta(hours=rng.randrange(-20, 200 * 24))
    row = db.execute(
        "SELECT outcome_id FROM outcome_labels WHERE sent_at <= %s ORDER BY sent_at DESC LIMIT 1", (sent,)
    ).fetchone()
    if kind == "insert" or row is None:
        db.execute(
            INSERT_MESSAGE,
            {
                "org": rng.choice(ORGS),
                "key": f"r{serial}-{rng.random()}",
                "sent": sent,
                "model": rng.choice(["m-0", "m-1", None]),
                "industry": rng.choice(["saas", "retail", None]),
                "role": rng.choice(["cfo", "cto"]),
                "framework": rng.choice(["PAS", "AIDA"]),
                "tone": rng.choice(["warm", None]),
                "replied": rng.choice([None, sent]),
                "category": rng.choice([None, "interested", "objection"]),
                "meeting": rng.choice([None, sent]),
                "deal": rng.choice([None, "won", "lost"]),
                "value": rng.choice([None, 1200, 99.5]),
            },
        )
        return
    outcome = row["outcome_id"]
    statements: dict[str, tuple[str, tuple[Any, ...]]] = {
        "reply": ("replied_at = now(), reply_category = %s", (rng.choice(["interested", "meeting_request", None]),)),
        "unreply": ("replied_at = NULL, reply_category = NULL", ()),
        "category": ("reply_category = %s", (rng.choice(["interested", "not_interested", "objection"]),)),
        "meeting": ("meeting_booked_at = CASE WHEN meeting_booked_at IS NULL THEN now() END", ()),
        "deal": ("deal_status = %s, deal_value = %s", (rng.choice(["won", "lost", None]), rng.choice([None, 700, 5]))),
        "dimension": (
            "model_registry_id = %s, lead_industry = %s, tone = %s",
            (
                rng.choice(["m-0", "m-1", None]),
                rng.choice(["saas", "fintech", None]),
                rng.choice(["warm", "cold", None]),
            ),
        ),
        "move": ("sent_at = sent_at + make_interval(hours => %s)", (rng.randrange(-72, 72),)),
        "open": ("open_count = coalesce(open_count, 0) + 1, delivered_at = now()", ()),
    }
    if kind == "delete":
        db.execute("DELETE FROM outcome_labels WHERE outcome_id = %s", (outcome,))
        return
    assignment, params = statements[kind]
    db.execute(f"UPDATE outcome_labels SET {assignment} WHERE outcome_id = %s", (*params, outcome))


def test_random_changes_on_old_and_new_days_match_a_full_count(db, seeded, monkeypatch) -> None:
    rng = random.Random(14)
    report_counts.refresh_daily_counts(NOW - timedelta(days=3))  # three days still live
    for round_no in range(6):
        now = NOW + timedelta(hours=20 * round_no - 72)  # the boundary moves in some rounds
        for serial in range(40):
            random_change(db, rng, (now + timedelta(days=1)).date(), 100 * round_no + serial)
        result = report_counts.refresh_daily_counts(now)
        assert result["done"] and result["cells_corrected"] == 0, result
        assert pending(db) == 0
        assert_exact(db)
    # the safety net re-counts every day that can still change, and finds nothing to correct
    report_counts.refresh_daily_counts(TODAY + timedelta(days=2, hours=1))
    monkeypatch.setenv("REPORT_RECOUNT_HOURS", "1")
    reset_settings()
    verified = report_counts.refresh_daily_counts(TODAY + timedelta(days=2, hours=23))
    assert verified["days_recounted"] == 90 and verified["cells_corrected"] == 0
    assert_exact(db)


def test_updates_that_change_no_count_write_no_change_rows(db, seeded) -> None:
    """The ingest hot path: deliveries, opens and clicks re-derive outcomes; they move no count."""
    report_counts.refresh_daily_counts(NOW)
    # outcomes without a reply, meeting or deal (the seeded ones have no events: a re-derivation
    # would clear what the seeding set)
    ids = [
        r["outcome_id"]
        for r in db.execute(
            """SELECT outcome_id FROM outcome_labels WHERE replied_at IS NULL AND reply_category IS NULL
                  AND meeting_booked_at IS NULL AND deal_status IS NULL AND sent_at < %s ORDER BY dedupe_key LIMIT 20""",
            (TODAY - timedelta(days=2),),
        )
    ]
    sent = TODAY - timedelta(days=1)

    def event(key: str, kind: str, outcome: Any, **extra: Any) -> IncomingEvent:
        return IncomingEvent(
            provider="sendgrid" if kind != "meeting_booked" else "calendly",
            event_key=key,
            event_type=kind,
            occurred_at=sent + timedelta(hours=1),
            payload={"raw": key},
            outcome_id=str(outcome),
            **extra,
        )

    result = ingest_events(
        [event(f"{kind}-{i}", kind, o) for i, o in enumerate(ids) for kind in ("delivered", "open", "click")],
        window_days=90,
    )
    assert result.applied == 60
    assert pending(db) == 0
    meeting = {"meeting_id": "m1", "start_time": NOW.isoformat(), "end_time": (NOW + timedelta(hours=1)).isoformat()}
    ingest_events([event("booked", "meeting_booked", ids[0], data=meeting)], window_days=90)
    assert pending(db) == 2  # the meeting: the outcome's old contribution out, the new one in
    report_counts.refresh_daily_counts(NOW)
    assert_exact(db)


def test_the_incremental_refresh_works_in_proportion_to_the_changes(db, seeded) -> None:
    from tests.integration.test_hot_query_plans import recorded

    report_counts.refresh_daily_counts(NOW)
    versions = {r["ctid"]: r["xmin"] for r in db.execute("SELECT ctid::text, xmin::text FROM report_daily_counts")}
    assert len(versions) > 2000
    changed = [
        one(
            db,
            "replied_at IS NULL AND model_registry_id IS NOT NULL AND sent_at < %s AND org_id = %s",
            TODAY - timedelta(days=d),
            org,
        )
        for d, org in ((5, "a"), (70, "b"), (150, "c"))
    ]
    db.execute("UPDATE outcome_labels SET replied_at = now() WHERE outcome_id = ANY(%s)", (changed,))
    with recorded() as statements:
        result = report_counts.refresh_daily_counts(NOW)
    assert result["changes"] == 6 and result["cells_updated"] <= 9  # three outcomes, at most three cells each
    # what the database did: the rows of report_daily_counts written (a new row version) are the
    # cells of the three outcomes; every other cell is the row version it was
    after = {r["ctid"]: r["xmin"] for r in db.execute("SELECT ctid::text, xmin::text FROM report_daily_counts")}
    rewritten = {ctid for ctid, xmin in after.items() if versions.get(ctid) != xmin}
    assert 3 <= len(rewritten) <= 9 and len(after) == len(versions)
    # and outcome_labels is not read at all: nothing is re-counted
    sent = [str(q) for q, _ in statements]
    assert sent and not [q for q in sent if "outcome_labels" in q]
    assert_exact(db)
    # nothing changed: nothing is written
    versions = after
    report_counts.refresh_daily_counts(NOW)
    after = {r["ctid"]: r["xmin"] for r in db.execute("SELECT ctid::text, xmin::text FROM report_daily_counts")}
    assert after == versions


class ReadCommitted:
    """The connection, with the step's REPEATABLE READ left out (the negative control)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: Any, params: Any = None) -> Any:
        if str(query).startswith("SET TRANSACTION ISOLATION LEVEL"):
            return self.conn.execute("SELECT 1")
        return self.conn.execute(query, params)


def roll_yesterday_while(db_url: str, commit_writer: Callable[[], object], when: str, isolation: str) -> None:
    """A refresh step that rolls yesterday up, with another transaction committing `when`."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as raw, raw.transaction():
        conn: Any = raw if isolation == "repeatable read" else ReadCommitted(raw)
        state = counts_dal.begin_step(conn)  # the step's snapshot is taken here
        assert state is not None and state["day"] == DAY - timedelta(days=1)
        if when == "after the snapshot":
            commit_writer()
        counts_dal.apply_changes(conn, state["day"], None)
        if when == "between applying and counting":
            commit_writer()
        counts_dal.count_days(conn, state["day"], DAY, NOW)
        counts_dal.finish_step(conn, DAY)
        if when == "before the step commits":
            commit_writer()


@pytest.mark.parametrize("when", ["after the snapshot", "between applying and counting", "before the step commits"])
def test_a_change_committed_while_a_refresh_runs_is_counted_once(db, db_url, seeded, when: str) -> None:
    """A writer's transaction starts before the refresh step and commits at each point inside it:
    its reply on an old day and its message for the day being rolled up are counted once each, by
    this step or the next — never lost (a watermark would lose them), never twice."""
    report_counts.refresh_daily_counts(NOW - timedelta(days=1))  # yesterday is still live
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as writer:
        writer.execute("BEGIN")
        update_one(
            writer,
            "replied_at = now(), reply_category = 'interested'",
            "replied_at IS NULL AND sent_at < %s",
            TODAY - timedelta(days=30),
        )
        insert(writer, "race", TODAY - timedelta(hours=5), replied=NOW, category="interested")
        roll_yesterday_while(db_url, lambda: writer.execute("COMMIT"), when, "repeatable read")
    report_counts.refresh_daily_counts(NOW)
    assert pending(db) == 0
    assert_exact(db)


def test_without_one_snapshot_per_step_the_same_race_counts_twice(db, db_url, seeded) -> None:
    """The negative control: the step of the test above, in READ COMMITTED (a snapshot per statement),
    counts the message committed between applying and counting in the day's count and again from
    its change row. The tests above would catch that."""
    report_counts.refresh_daily_counts(NOW - timedelta(days=1))
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as writer:
        writer.execute("BEGIN")
        insert(writer, "race", TODAY - timedelta(hours=5))
        roll_yesterday_while(
            db_url, lambda: writer.execute("COMMIT"), "between applying and counting", "read committed"
        )
    report_counts.refresh_daily_counts(NOW)
    assert sent_total(current(db), "a") == sent_total(reference(db), "a") + 1


def test_two_refreshes_at_once_consume_each_change_once(db, seeded) -> None:
    report_counts.refresh_daily_counts(NOW - timedelta(days=2))
    rng = random.Random(7)
    for serial in range(60):
        random_change(db, rng, DAY, serial)
    changes = pending(db)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            results.append(report_counts.refresh_daily_counts(NOW))  # each thread has its own connection
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_connection()

    threads = [threading.Thread(target=refresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 3
    assert sum(r["changes"] for r in results) == changes  # every row consumed by exactly one of them ...
    assert sum(r["days_rolled"] for r in results) == 2  # ... and each day rolled up once
    assert pending(db) == 0
    assert_exact(db)


def _write_randomly(url: str, seed: int, until: float, errors: Any) -> None:
    try:
        rng = random.Random(seed)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            serial = 0
            while time.monotonic() < until:
                try:
                    with conn.transaction():  # a few changes a transaction, some held open a while
                        for _ in range(rng.randrange(1, 4)):
                            serial += 1
                            random_change(conn, rng, DAY + timedelta(days=1), seed * 100_000 + serial)
                        time.sleep(rng.choice([0, 0, 0.01, 0.05]))
                except psycopg.errors.DeadlockDetected:
                    continue  # two writers took the same rows in opposite orders: one rolled back
    except Exception:
        errors.put(traceback.format_exc())


def _refresh_repeatedly(url: str, until: float, errors: Any) -> None:
    try:
        import os

        os.environ["DATABASE_URL"] = url
        os.environ["REPORT_RECOUNT_HOURS"] = "0.0001"  # the safety net runs in every refresh too
        reset_settings()
        hours = 0
        while time.monotonic() < until:
            hours += 7  # the boundary moves every few refreshes: days are rolled up mid-race
            result = report_counts.refresh_daily_counts(NOW - timedelta(days=2) + timedelta(hours=hours))
            if result["cells_corrected"]:
                errors.put(f"the safety net had to correct {result['cells_corrected']} cells: {result}")
        close_connection()
    except Exception:
        errors.put(traceback.format_exc())


def test_changes_from_several_processes_during_refreshes_are_never_lost_or_doubled(db, db_url, seeded) -> None:
    report_counts.refresh_daily_counts(NOW - timedelta(days=2))
    until = time.monotonic() + 4
    found, exit_codes = in_processes(
        [(_write_randomly, (db_url, seed, until)) for seed in range(3)] + [(_refresh_repeatedly, (db_url, until))],
        timeout=60,
    )
    assert not found and all(code == 0 for code in exit_codes), found
    rolled = db.execute("SELECT rolled_before FROM report_rollup_state").fetchone()["rolled_before"]
    assert rolled > TODAY - timedelta(days=2)  # the race rolled days up
    assert db.execute("SELECT count(*) AS n FROM outcome_labels WHERE dedupe_key LIKE 'r%'").fetchone()["n"] > 20
    final = report_counts.refresh_daily_counts(rolled + timedelta(hours=1))  # the last commits, still pending
    assert final["days_rolled"] == 0 and final["cells_corrected"] == 0
    assert_exact(db)


def test_the_safety_net_corrects_what_the_triggers_did_not_see(db, db_url, seeded) -> None:
    report_counts.refresh_daily_counts(NOW)
    with psycopg.connect(db_url, autocommit=True) as bypass:  # as a logical-replication apply or a bulk load
        bypass.execute("SET session_replication_role = replica")
        bypass.execute(
            "UPDATE outcome_labels SET replied_at = NULL WHERE sent_at BETWEEN %s AND %s",
            (TODAY - timedelta(days=30), TODAY - timedelta(days=20)),
        )
    assert pending(db) == 0 and current(db) != reference(db)
    assert report_counts.refresh_daily_counts(NOW + timedelta(hours=1))["days_recounted"] == 0  # counted < 24 h ago
    stopped = report_counts.refresh_daily_counts(NOW + timedelta(hours=25), time_budget_s=0)
    assert stopped["done"] is False and stopped["days_recounted"] == 0  # no time: the next run continues
    result = report_counts.refresh_daily_counts(NOW + timedelta(hours=25))
    # every day in the window but the one just rolled up (two near midnight)
    assert result["done"] and result["days_recounted"] >= 88 and result["cells_corrected"] > 0
    assert_exact(db)


def test_a_refresh_by_the_previous_release_makes_every_day_due(db, db_url, seeded) -> None:
    """During a deploy the previous release may still re-count days whole, without consuming the
    change rows of the changes it counted; those rows must not be added a second time."""
    report_counts.refresh_daily_counts(NOW)
    update_one(
        db,
        "meeting_booked_at = now()",
        "meeting_booked_at IS NULL AND model_registry_id IS NOT NULL AND sent_at BETWEEN %s AND %s",
        TODAY - timedelta(days=10),
        TODAY - timedelta(days=3),
    )
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as old, old.transaction():
        counts_dal.count_days(old, DAY - timedelta(days=14), DAY, NOW)  # what it did: its days, counted whole
        old.execute("UPDATE report_rollup_state SET refreshed_at = now()")
    result = report_counts.refresh_daily_counts(NOW)
    assert result["days_recounted"] == 90
    assert_exact(db)


def test_a_refresh_in_flight_never_shows_half_counts(db, db_url: str, seeded) -> None:
    report_counts.refresh_daily_counts(NOW - timedelta(days=40))
    db.execute(
        "UPDATE outcome_labels SET replied_at = now() WHERE sent_at < %s AND replied_at IS NULL",
        (TODAY - timedelta(days=100),),
    )
    truth = reference(db)
    stale = current(db)
    assert stale != truth
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as other, other.transaction():
        state = counts_dal.begin_step(other)
        assert state is not None
        counts_dal.apply_changes(other, state["day"], None)
        counts_dal.count_days(other, state["day"], DAY, NOW)
        counts_dal.finish_step(other, DAY)  # not committed yet
        seen: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: seen.append(current(db)))
        reader.start()
        reader.join(timeout=20)
        assert seen == [stale]  # the old counts and the old boundary, consistently
    assert current(db) == truth
    assert_exact(db)


def test_the_scheduled_function_refreshes(db, seeded) -> None:
    result = invoke("ReportRollupFunction", load_event("report_rollup_schedule.json"), ROOT / "template.yaml")
    assert result["days_rolled"] == 200 and result["done"] is True
    assert_exact(db)


def test_a_backlog_taken_in_batches_in_any_physical_order_adds_up(db, seeded, monkeypatch) -> None:
    """A backlog is consumed CHANGES_PER_STEP rows a step, in the order the rows lie in the heap: a
    heap insert goes to whichever page has room (the free space map after a refresh's DELETE and a
    vacuum), so a later transaction's rows can lie before an earlier one's. A batch may then hold
    an outcome's later change without its earlier one, and a cell's messages can pass through 0
    while its other sums do not: such a cell must not be dropped with what it still holds."""
    report_counts.refresh_daily_counts(NOW)
    sent = TODAY - timedelta(days=5, hours=-10)
    cell = {"model": None, "industry": "zeta", "role": "zrole"}
    insert(db, "m1", sent, **cell)
    report_counts.refresh_daily_counts(NOW)  # m1 rolled up: the cell holds 1 message, no reply
    batches: list[str] = []
    for change in (
        lambda: update_one(db, "replied_at = now()", "dedupe_key = 'm1'"),  # out (1, 0), in (1, 1)
        lambda: update_one(db, "framework = 'AIDA'", "dedupe_key = 'm1'"),  # out (1, 1) to another cell
        lambda: insert(db, "m2", sent, **cell),  # in (1, 0): the cell ends with m2 only
    ):
        change()
        db.execute(f"CREATE TEMP TABLE batch_{len(batches)} AS SELECT * FROM report_count_changes")
        db.execute("DELETE FROM report_count_changes")
        batches.append(f"batch_{len(batches)}")
    for name in (batches[1], batches[2], batches[0]):  # the heap order a reused page can give
        db.execute(f"INSERT INTO report_count_changes SELECT * FROM {name}")
    monkeypatch.setattr(report_counts, "CHANGES_PER_STEP", 1)
    result = report_counts.refresh_daily_counts(NOW)
    assert result["changes"] == 5 and result["done"], result
    assert_exact(db)


def test_a_step_longer_than_the_forecast_stops_at_the_time_budget(db, db_url, seeded) -> None:
    """The budget forecasts a step by the longest so far; a step that takes longer (a day bigger
    than the ones before it, a wait for the refresh lock held by the previous release's refresh, a
    hand-run recount_day or a TRUNCATE) must still end by the deadline (the function stops 30 s
    before Lambda's timeout kills it mid-transaction) and leave the rest to the next run."""
    report_counts.refresh_daily_counts(NOW - timedelta(days=2))
    insert(db, "late", TODAY - timedelta(days=20))
    release = threading.Event()

    def hold_the_lock() -> None:
        with psycopg.connect(db_url, autocommit=True) as other, other.transaction():
            other.execute("LOCK TABLE report_rollup_state IN ROW EXCLUSIVE MODE")
            held.set()
            release.wait(10)

    held = threading.Event()
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        result = report_counts.refresh_daily_counts(NOW, time_budget_s=1.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)
    assert elapsed < 3, elapsed
    assert result["done"] is False and result["changes"] == 0
    again = report_counts.refresh_daily_counts(NOW)  # the next run continues
    assert again["done"] and again["days_rolled"] == 2 and again["changes_applied"] == 1
    assert_exact(db)


@pytest.mark.parametrize("recount_hours", ["24", "0"])
def test_a_change_the_previous_release_counted_on_a_day_leaving_the_window_is_not_added_again(
    db, db_url, seeded, monkeypatch, recount_hours: str
) -> None:
    """The previous release re-counted its window ([today - OUTCOME_FINAL_DAYS, today)) whole,
    change included, without consuming the change rows. When this release's next step runs after
    midnight (a deploy near midnight, or a rollback to the previous release for days), the oldest
    of those days has left the safety net's window: its change rows must not be added again there
    (nor in the window when the safety net is off)."""
    report_counts.refresh_daily_counts(NOW)
    oldest = TODAY - timedelta(days=90)
    update_one(
        db,
        "replied_at = now(), reply_category = 'interested'",
        "replied_at IS NULL AND sent_at BETWEEN %s AND %s",
        oldest,
        oldest + timedelta(days=1),
    )
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as old, old.transaction():
        counts_dal.count_days(old, oldest.date(), DAY, NOW)  # its window, counted whole, change included
        old.execute("UPDATE report_rollup_state SET refreshed_at = now()")
    monkeypatch.setenv("REPORT_RECOUNT_HOURS", recount_hours)
    reset_settings()
    result = report_counts.refresh_daily_counts(NOW + timedelta(days=1))
    assert result["done"] and result["changes_applied"] == 0, result  # its rows discarded, its day re-counted
    assert_exact(db)


@pytest.mark.parametrize("pinned", [True, False], ids=["session pinned to UTC", "session left in the zone"])
@pytest.mark.parametrize("zone", ["America/New_York", "Pacific/Auckland"])
def test_the_rollup_does_not_depend_on_the_database_time_zone(db, db_url, seeded, monkeypatch, zone, pinned) -> None:
    # West of UTC, a UTC midnight cast to a date is the day before: counting day D deleted day D-1's
    # cells, so the reports kept only the last rolled-up day and every re-count "corrected" drift.
    # Right both with the connection's UTC pin and, for the rollup's own SQL, without it.
    dbname = str(psycopg.conninfo.conninfo_to_dict(db_url)["dbname"])
    db.execute(psycopg.sql.SQL("ALTER DATABASE {} SET timezone = {}").format(psycopg.sql.Identifier(dbname), zone))
    if not pinned:
        monkeypatch.setattr(connection, "pin_utc", lambda conn: None)
    close_connection()  # the code under test reconnects with the database's setting
    with connection.transaction() as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == {"TimeZone": "UTC" if pinned else zone}
    first = report_counts.refresh_daily_counts(NOW)
    assert first["done"] and first["days_rolled"] == 200
    assert_exact(db)
    # a day later, after a change the triggers saw, the safety net re-counts the days still open and
    # finds nothing to correct (ReportCountDriftAlarm stays quiet)
    update_one(db, "replied_at = now(), reply_category = 'interested'", "sent_at < %s - interval '30 hours'", TODAY)
    again = report_counts.refresh_daily_counts(NOW + timedelta(hours=25))
    assert again["days_recounted"] > 0 and again["cells_corrected"] == 0, again
    assert_exact(db)

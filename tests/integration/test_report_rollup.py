"""Reports from daily counts: the leaderboard and the strategies give the same numbers as counting
every message, before and after a refresh, while the counting reads only days and today's messages."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal import report_counts as counts_dal
from flywheel.local.invoke import invoke
from flywheel.services import experiments, report_counts, training
from tests.conftest import ROOT, load_event

NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)

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


def test_reports_match_counting_everything_before_and_after_a_refresh(db, seeded) -> None:
    assert current(db) == reference(db)  # never refreshed: everything is live
    result = report_counts.refresh_daily_counts(NOW)
    assert result["from"] is None and result["rows_written"] > 0  # the first run counts the whole history
    assert db.execute("SELECT rolled_before FROM report_rollup_state").fetchone()["rolled_before"] == TODAY
    live = db.execute("SELECT count(*) AS n FROM outcome_labels WHERE sent_at >= %s", (TODAY,)).fetchone()["n"]
    assert 0 < live < 100  # today's messages are the only ones still read one by one
    assert current(db) == reference(db)
    assert current(db)["a"]["leaderboard"][0]["messages_sent"] > 300


def test_recent_days_are_recounted_and_today_is_live(db, seeded) -> None:
    report_counts.refresh_daily_counts(NOW)
    # a reply to a 10-day-old message, and a message sent today
    db.execute(
        """UPDATE outcome_labels SET replied_at = now(), reply_category = 'interested'
                   WHERE outcome_id = (SELECT outcome_id FROM outcome_labels WHERE replied_at IS NULL
                                          AND model_registry_id IS NOT NULL
                                          AND sent_at BETWEEN %s AND %s LIMIT 1)""",
        (TODAY - timedelta(days=11), TODAY - timedelta(days=9)),
    )
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at,
                                              model_registry_id, lead_industry, lead_role, framework, tone)
                  VALUES ('a', 'today', 'c', 'x', 'hi', %s, 'm-1', 'saas', 'cfo', 'PAS', 'warm')""",
        (NOW,),
    )
    before_refresh, truth = current(db), reference(db)
    assert before_refresh != truth  # the reply waits for the next refresh ...
    assert [sum(m["messages_sent"] for m in before_refresh[org]["leaderboard"]) for org in ORGS] == [
        sum(m["messages_sent"] for m in truth[org]["leaderboard"]) for org in ORGS
    ]  # ... today's counts at once
    again = report_counts.refresh_daily_counts(NOW)
    assert again["from"] == (TODAY - timedelta(days=14)).isoformat() and not again["full"]  # the recent days
    assert current(db) == reference(db)


def test_days_before_the_recent_ones_are_recounted_once_a_day(db, seeded) -> None:
    report_counts.refresh_daily_counts(NOW)
    db.execute(
        """UPDATE outcome_labels SET deal_status = 'won', deal_value = 5000
                   WHERE outcome_id = (SELECT outcome_id FROM outcome_labels WHERE deal_status IS NULL
                                          AND model_registry_id IS NOT NULL AND org_id = 'a'
                                          AND sent_at BETWEEN %s AND %s LIMIT 1)""",
        (TODAY - timedelta(days=61), TODAY - timedelta(days=59)),
    )
    hourly = report_counts.refresh_daily_counts(NOW + timedelta(hours=1))
    assert not hourly["full"] and current(db) != reference(db)  # a deal 60 days on waits for the daily recount
    daily = report_counts.refresh_daily_counts(NOW + timedelta(hours=24))
    assert daily["full"] and daily["from"] == (TODAY + timedelta(days=1) - timedelta(days=90)).isoformat()
    assert current(db) == reference(db)


def test_a_refresh_in_flight_never_shows_half_counts(db, db_url: str, seeded) -> None:
    report_counts.refresh_daily_counts(NOW - timedelta(days=40))
    truth = reference(db)
    with psycopg.connect(db_url, row_factory=dict_row) as other, other.transaction():
        counts_dal.refresh(other, TODAY, TODAY - timedelta(days=90), True)  # not committed yet
        seen: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: seen.append(current(db)))
        reader.start()
        reader.join(timeout=20)
        assert seen == [truth]  # the old counts and the old boundary, consistently
    assert current(db) == truth


def test_the_scheduled_function_refreshes(db, seeded) -> None:
    result = invoke("ReportRollupFunction", load_event("report_rollup_schedule.json"), ROOT / "template.yaml")
    assert result["rows_written"] > 0
    assert current(db) == reference(db)

"""Every hot-path query in dal/ uses an index: the real dal functions run against tables of a
realistic size (20,000 outcomes, 120,000 events, orphans, meetings and deals), each statement they send is
EXPLAINed with its own parameters, and a sequential scan of outcome_events or outcome_labels fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal import events as events_dal
from flywheel.dal import experiments as experiments_dal
from flywheel.dal import models as models_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal import quarantine as quarantine_dal
from flywheel.dal import suppressions as suppressions_dal
from flywheel.dal.locks import lock_outcomes
from flywheel.domain.lifecycle import derive_outcome
from flywheel.domain.registration import message_row
from flywheel.models.messages import MessageIn

GUARDED = ("outcome_events", "outcome_labels")

SEED = """
INSERT INTO organizations (org_id) SELECT 'org' || g FROM generate_series(0, 9) g;
INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
     VALUES ('flywheel-v1.0.0', 'v1.0.0', 1, 0, 0, 'deployed', 'bedrock', 'nova');
INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, body, sent_at, provider_message_id,
                            email_message_id, lead_industry, framework, tone, model_registry_id,
                            meeting_scheduled_end)
SELECT 'org' || (g % 10), 'k' || g, 'c' || (g % 50), 'l' || g, 'l' || g || '@x.example', 'hello',
       now() - make_interval(mins => g), 'pm' || g, 'msg' || g || '@mail.x.example',
       (ARRAY['fintech', 'saas', 'retail'])[1 + g % 3], 'PAS', 'warm', 'flywheel-v1.0.0',
       CASE WHEN g % 100 = 0 THEN now() + make_interval(days => g % 7) END
  FROM generate_series(1, 20000) g;
INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, org_id, outcome_id, status,
                            match_provider_message_id, match_email, data, payload)
SELECT 'sendgrid', 'e' || g, (ARRAY['open', 'click', 'delivered', 'processed', 'deferred'])[1 + g % 5],
       now() - make_interval(secs => g), o.org_id, o.outcome_id, 'applied', o.provider_message_id, o.lead_email,
       CASE WHEN g % 5 = 0 THEN '{"machine_open": true}'::jsonb ELSE '{}'::jsonb END, '{}'
  FROM generate_series(1, 110000) g JOIN outcome_labels o ON o.dedupe_key = 'k' || (1 + g % 20000);
INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, org_id, outcome_id, status, data, payload)
SELECT 'calendly', 'm' || g, 'meeting_booked', now(), o.org_id, o.outcome_id, 'applied',
       jsonb_build_object('meeting_id', 'meet-' || g), '{}'
  FROM generate_series(1, 2000) g JOIN outcome_labels o ON o.dedupe_key = 'k' || (1 + g * 7 % 20000);
INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, org_id, outcome_id, status, match_email,
                            match_window_days, data, payload)
SELECT 'hubspot', 'd' || g, (ARRAY['deal_won', 'deal_lost', 'deal_reopened'])[1 + g % 3], now(), o.org_id,
       o.outcome_id, 'applied', o.lead_email, 90, jsonb_build_object('deal_id', 'hubspot:' || (g / 2)), '{}'
  FROM generate_series(1, 3000) g JOIN outcome_labels o ON o.dedupe_key = 'k' || (1 + g * 3 % 20000);
INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, org_id, status, match_outcome_id,
                            match_provider_message_id, match_email, match_references, match_window_days, data,
                            payload)
SELECT 'sendgrid', 'o' || g, 'open', now(), CASE WHEN g % 2 = 0 THEN 'org1' END, 'orphan',
       CASE WHEN g % 3 = 0 THEN gen_random_uuid() END, CASE WHEN g % 3 = 1 THEN 'nopm' || g END,
       'orphan' || g || '@x.example', CASE WHEN g % 3 = 2 THEN ARRAY['ref' || g || '@x'] END,
       CASE WHEN g % 2 = 0 THEN 90 END, jsonb_build_object('meeting_id', 'orphan-meet-' || g), '{}'
  FROM generate_series(1, 8000) g;
ANALYZE;
"""


class Recording:
    """A connection that remembers every statement (and its parameters) the dal sends."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, query: Any, params: Any = None) -> Any:
        self.statements.append((query, params))
        return self.conn.execute(query, params)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _RecordingCursor(self, self.conn.cursor(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


class _RecordingCursor:
    def __init__(self, recording: Recording, cursor: Any) -> None:
        self.recording, self.cursor = recording, cursor

    def execute(self, query: Any, params: Any = None) -> Any:
        self.recording.statements.append((query, params))
        self.cursor.execute(query, params)
        return self

    def __enter__(self) -> _RecordingCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cursor.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def scans(plan: dict[str, Any]) -> list[str]:
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" and "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


@pytest.fixture
def big(db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row, prepare_threshold=None) as conn:
        conn.execute(SEED)
        yield conn


def test_hot_queries_use_indexes(big: psycopg.Connection[dict[str, Any]]) -> None:
    ids = [
        r["outcome_id"]
        for r in big.execute(
            "SELECT outcome_id FROM outcome_labels WHERE dedupe_key IN ('k5', 'k77', 'k1234') ORDER BY 1"
        )
    ]
    one: UUID = ids[0]
    now = datetime.now(UTC)
    message = {
        "outcome_id": one,
        "org_id": "org1",
        "provider_message_id": "pm5",
        "email_message_id": "msg5@x",
        "lead_email": "l5@x.example",
        "sent_at": now.isoformat(),
    }
    event_row: dict[str, Any] = {
        "provider": "sendgrid",
        "event_key": "new-1",
        "event_type": "open",
        "occurred_at": now.isoformat(),
        "org_id": "org5",
        "outcome_id": str(one),
        "status": "applied",
        "match_outcome_id": None,
        "match_provider_message_id": "pm5",
        "match_email": "l5@x.example",
        "match_references": None,
        "match_window_days": None,
        "data": {},
        "payload": {},
    }
    hot: dict[str, Callable[[Any], Any]] = {
        "events_for": lambda c: events_dal.events_for(c, ids),
        "history": lambda c: events_dal.history(c, one),
        "outcomes_for_meetings": lambda c: events_dal.outcomes_for_meetings(c, ["meet-5", "meet-9"]),
        "claim_meeting_orphans": lambda c: events_dal.claim_meeting_orphans(c, set(ids)),
        "orphan_links_for": lambda c: events_dal.orphan_links_for(c, [message]),
        "claim_orphans": lambda c: events_dal.claim_orphans(c, [message]),
        "insert_events": lambda c: events_dal.insert_events(c, [event_row]),
        "deal_events": lambda c: events_dal.deal_events(
            c, [("hubspot", "org4", "hubspot:7", "l22@x.example"), ("hubspot", "org1", "hubspot:9", "o@x.example")]
        ),
        "deals_counted_elsewhere": lambda c: events_dal.deals_counted_elsewhere(c, ids),
        "deal_holders": lambda c: events_dal.deal_holders(
            c, [("org4", "5799819", "hubspot:7"), ("org1", "", "hubspot:9"), ("org2", "8087566", "pipedrive:8")]
        ),
        "move_events": lambda c: events_dal.move_events(
            c, [(5, one, "applied", "l5@x.example"), (9, None, "orphan", "x")]
        ),
        "outcome_of": lambda c: events_dal.outcome_of(c, "sendgrid", "e5"),
        "has_reply": lambda c: events_dal.has_reply(c, one),
        "lock_outcomes": lambda c: lock_outcomes(c, ids),
        "existing_outcomes": lambda c: outcomes_dal.existing_outcomes(c, ids),
        "by_provider_message_id": lambda c: outcomes_dal.by_column(c, "provider_message_id", ["pm5", "pm6"]),
        "by_email_message_id": lambda c: outcomes_dal.by_column(c, "email_message_id", ["msg5@mail.x.example"]),
        "latest_for_emails": lambda c: outcomes_dal.latest_for_emails(
            c, [("org5", "l5@x.example", now.isoformat(), 90)]
        ),
        "lead_contacts": lambda c: outcomes_dal.lead_contacts(c, ids),
        "get_outcome": lambda c: outcomes_dal.get_outcome(c, one),
        "icp_scores": lambda c: outcomes_dal.icp_scores(c, ids),
        "update_derived": lambda c: outcomes_dal.update_derived(c, {one: derive_outcome([], now=now).as_row()}),
        "insert_outcomes": lambda c: outcomes_dal.insert_outcomes(
            c,
            [
                {
                    **message_row(MessageIn(org_id="org1", campaign_id="c", lead_id="l1", body="hello")),
                    "dedupe_key": "k1",
                }
            ],
        ),
        "meetings_due": lambda c: outcomes_dal.outcomes_with_meetings_due(c, now.isoformat()),
        "reply_contexts": lambda c: outcomes_dal.reply_contexts(c, ids),
        "strategies": lambda c: experiments_dal.strategies(c, "org3", "industry"),
        "leaderboard": lambda c: models_dal.leaderboard(c, "org3"),
        "suppressions": lambda c: suppressions_dal.list_suppressions(c, "org3", None, 100),
        "quarantine": lambda c: quarantine_dal.list_for_org(c, "org3", None, 100),
    }
    failures = {}
    for name, call in hot.items():
        recording = Recording(big)
        try:
            with big.transaction():
                call(recording)
                raise _Rollback
        except _Rollback:
            pass
        assert recording.statements, name
        for query, params in recording.statements:
            explained = big.execute(
                psycopg.sql.SQL("EXPLAIN (FORMAT JSON) ") + psycopg.sql.SQL(query)
                if isinstance(query, str)
                else psycopg.sql.SQL("EXPLAIN (FORMAT JSON) ") + query,
                params,
            ).fetchone()
            assert explained is not None
            plan = explained["QUERY PLAN"][0]["Plan"]
            bad = [t for t in scans(plan) if t in GUARDED]
            if bad:
                failures[name] = bad
    assert not failures, failures


class _Rollback(Exception):
    pass


def test_rederiving_updates_outcomes_in_place(big: psycopg.Connection[dict[str, Any]]) -> None:
    """Re-deriving rewrites an outcome's row after every event: with room left in each page
    (fillfactor 70), the update is heap-only (HOT) and writes none of the table's eleven indexes.
    Even when every row of a page changes at once (a batch over all of them), the room takes a
    third of them; with full pages (fillfactor 100) none."""
    ids = [r["outcome_id"] for r in big.execute("SELECT outcome_id FROM outcome_labels LIMIT 2000")]
    now = datetime.now(UTC)
    delivered = derive_outcome([], now=now).as_row() | {"delivered_at": now, "stage": "delivered", "event_count": 1}
    try:
        with big.transaction():
            outcomes_dal.update_derived(big, dict.fromkeys(ids, delivered))
            stats = big.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'outcome_labels'"
            ).fetchone()
            raise _Rollback
    except _Rollback:
        pass
    assert stats is not None and stats["n_tup_upd"] == 2000 and stats["n_tup_hot_upd"] >= 600, stats

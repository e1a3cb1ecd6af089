"""EXPLAIN evidence for every hot query: each statement the hot paths send is recorded and explained
with sequential scans, hash and merge joins disabled (on these tiny tables the planner would rather
scan; the question is whether an index path exists). A statement that still reads outcome_events,
outcome_labels or assignments without an index condition would cost more as the tables grow
(bench/scale.py measures it at 5M events and prints the plans the planner really picks there). Reports that aggregate the whole history (strategies, leaderboard)
are not hot paths and are left out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from flywheel.dal import experiments as experiments_dal
from flywheel.dal.connection import transaction
from flywheel.domain.ingest import IncomingEvent
from flywheel.models.messages import MessageIn
from flywheel.services import experiments, report_counts, retention, training
from flywheel.services.ingest import ingest_events
from flywheel.services.outcomes import outcome_view, refresh_due_meetings, register_messages

GROWING = {"outcome_events", "outcome_labels", "assignments", "report_daily_counts"}
SENT = datetime.now(UTC) - timedelta(days=2)


@contextmanager
def recorded() -> Iterator[list[tuple[Any, Any]]]:
    """Every (query, params) the code under test executes on any connection."""
    statements: list[tuple[Any, Any]] = []
    original = psycopg.Cursor.execute

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        statements.append((query, params))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def full_reads(plan: dict[str, Any]) -> Iterator[str]:
    """Plan nodes that read a growing table without an index condition."""
    relation, index = plan.get("Relation Name"), plan.get("Index Name", "")
    node = plan["Node Type"]
    if node == "Seq Scan" and relation in GROWING:
        yield f"Seq Scan on {relation}"
    if (
        node in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
        and "Index Cond" not in plan
        and any(index.startswith(t) for t in GROWING)
    ):
        yield f"{node} using {index} without a condition"
    for child in plan.get("Plans", []):
        yield from full_reads(child)


def check_plans(db: psycopg.Connection[Any], statements: list[tuple[Any, Any]]) -> int:
    explained = 0
    for query, params in statements:
        text = str(query.as_string(db) if hasattr(query, "as_string") else query)
        head = text.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE") or not any(t in text for t in GROWING):
            continue
        with db.transaction():
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                db.execute(f"SET LOCAL {setting} = off")
            row = db.execute(f"EXPLAIN (FORMAT JSON) {text}", params).fetchone()
            assert row is not None
            plan = row["QUERY PLAN"][0]["Plan"]
        problems = list(full_reads(plan))
        assert problems == [], f"{problems} in:\n{text}"
        explained += 1
    return explained


def message(i: int, **extra: Any) -> MessageIn:
    return MessageIn.model_validate(
        {
            "org_id": "acme",
            "campaign_id": "c1",
            "lead_id": f"lead-{i}",
            "lead_email": f"lead{i}@x.example",
            "body": f"hello {i}",
            "provider_message_id": f"pm{i}",
            "email_message_id": f"<m{i}@mail.example>",
            "sent_at": SENT.isoformat(),
            "lead": {"industry": "saas", "role": "cfo"},
            "framework": "PAS",
            "tone": "warm",
            **extra,
        }
    )


def event(provider: str, key: str, kind: str, **fields: Any) -> IncomingEvent:
    return IncomingEvent(
        provider=provider,
        event_key=key,
        event_type=kind,
        occurred_at=SENT + timedelta(hours=1),
        payload={"raw": key},
        **fields,
    )


@pytest.fixture
def store(db, db_url) -> dict[str, str]:
    """A few registered messages and orphans, so every lookup has something to find."""
    result = register_messages([message(i) for i in range(6)])
    ids = {f"lead-{i}": str(o.outcome_id) for i, o in enumerate(result.outcomes)}
    ingest_events(
        [
            # (its recipient: a provider message id is claimed by that lead's message only)
            event("sendgrid", "orphan-1", "open", provider_message_id="pm-later", email="lead100@x.example"),
            event(
                "calendly", "noshow-early", "meeting_no_show", data={"meeting_id": "mtg-9"}, email="nobody@x.example"
            ),
        ],
        window_days=90,
    )
    # orphans pile up in a real store (mail sent by other systems, meetings booked elsewhere): with
    # a few thousand of them, reading them all is no longer the cheap way for the planner
    db.execute("""INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, status, match_email,
                                              match_provider_message_id, data, payload)
                  SELECT CASE WHEN i % 2 = 0 THEN 'calendly' ELSE 'sendgrid' END, 'bulk-' || i,
                         CASE WHEN i % 2 = 0 THEN 'meeting_no_show' ELSE 'open' END, now(), 'orphan',
                         'other' || i || '@elsewhere.example', 'other' || i,
                         CASE WHEN i % 2 = 0 THEN jsonb_build_object('meeting_id', 'mtg-other-' || i)
                              ELSE '{}'::jsonb END, '{}'::jsonb
                    FROM generate_series(1, 4000) AS i""")
    db.execute("ANALYZE outcome_events")
    return ids


def test_ingest_registration_and_reads_use_indexes(db, store: dict[str, str]) -> None:
    with recorded() as statements:
        ingest_events(
            [
                event("sendgrid", "e1", "delivered", outcome_id=store["lead-0"]),
                event("sendgrid", "e2", "open", provider_message_id="pm1", data={"machine_open": False}),
                event("sendgrid", "e3", "click", email="lead2@x.example", org_id="acme"),
                event("sendgrid", "e4", "open", provider_message_id="unknown", email="stranger@x.example"),
                event(  # the parse domain's organisation: a Message-ID is only linked within it
                    "sendgrid_inbound",
                    "r1",
                    "reply",
                    references=["m3@mail.example"],
                    data={"text": "sure"},
                    org_id="acme",
                ),
                event(
                    "calendly",
                    "b1",
                    "meeting_booked",
                    outcome_id=store["lead-4"],
                    data={
                        "meeting_id": "mtg-9",
                        "start_time": (SENT + timedelta(days=1)).isoformat(),
                        "end_time": (SENT + timedelta(days=1, minutes=30)).isoformat(),
                    },
                ),
                event("calendly", "c1", "meeting_canceled", data={"meeting_id": "mtg-9"}),
            ],
            window_days=90,
        )
        register_messages([message(100, provider_message_id="pm-later")] + [message(i) for i in range(101, 110)])
        outcome_view(UUID(store["lead-0"]), "acme")
        refresh_due_meetings()
    assert check_plans(db, statements) >= 10
    linked = db.execute(
        "SELECT count(*) AS n FROM outcome_events WHERE status = 'applied' AND event_key IN "
        "('noshow-early', 'orphan-1', 'c1', 'e3', 'r1')"
    ).fetchone()["n"]
    assert linked == 5  # the lookups found what they were looking for


def test_routing_snapshot_and_retention_use_indexes(db, store: dict[str, str]) -> None:
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  provider_model_id, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'arn', 'nova')""",
            (f"m-{version}", version, minor),
        )
    training.deploy_model("m-v1.0.0", canary_percentage=50, actor="test", reason="test")
    training.deploy_model("m-v1.1.0", canary_percentage=50, actor="test", reason="test")
    experiments.forget_cache()
    experiments.route("acme", "lead-0")
    experiments.forget_cache()
    experiments.route("acme", "warm")
    report_counts.refresh_daily_counts()  # the first refresh counts the whole history; later ones are measured
    with recorded() as statements:
        experiments.route("acme", "lead-0")  # assigned: one read
        experiments.route("acme", f"new-{uuid4()}")  # first assignment
        with transaction() as conn:
            running = experiments_dal.running(conn)
            assert running is not None
            experiments_dal.segment_counts(
                conn, running["experiment_id"], experiments.metric_windows(), datetime.now(UTC)
            )
        retention.remove_raw_payloads(now=datetime.now(UTC) + timedelta(days=400), time_budget_s=5)
        report_counts.refresh_daily_counts()
        experiments.strategies("acme", "industry", 1)
        experiments.leaderboard_with_intervals(training.leaderboard("acme"))
    assert check_plans(db, statements) >= 7


def test_a_routed_registration_looks_its_routes_up_by_index(db, store: dict[str, str]) -> None:
    """The route check of POST /messages reads assignments by primary key, for the whole batch."""
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  provider_model_id, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'arn', 'nova')""",
            (f"m-{version}", version, minor),
        )
    training.deploy_model("m-v1.0.0", canary_percentage=50, actor="test", reason="test")
    training.deploy_model("m-v1.1.0", canary_percentage=50, actor="test", reason="test")
    experiments.forget_cache()
    routes = []
    for i in range(300, 310):
        answer = experiments.route("acme", f"lead-{i}")
        routes.append(
            {
                "model_registry_id": answer["model"]["model_registry_id"],
                "experiment_id": answer["experiment_id"],
                "arm": answer["arm"],
            }
        )
    with recorded() as statements:
        register_messages([message(300 + i, route=route) for i, route in enumerate(routes)])
    lookups = [(q, p) for q, p in statements if "JOIN assignments" in str(q)]
    assert len(lookups) == 1
    assert check_plans(db, lookups) == 1

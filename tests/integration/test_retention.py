"""Retention: raw provider payloads go once the outcome is final and the retention has passed; the
normalised events and the derived columns keep every fact; batches never make ingest wait."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal import events as events_dal
from flywheel.dal.connection import close_connection, transaction
from flywheel.domain.ingest import IncomingEvent
from flywheel.local.invoke import invoke
from flywheel.services import retention
from flywheel.services.ingest import ingest_events
from flywheel.services.outcomes import recompute
from tests.conftest import ROOT, ApiClient, load_event
from tests.webhook_helpers import configure, sendgrid_headers

FINAL_PLUS_RETENTION = timedelta(days=90 + 30)  # the defaults: OUTCOME_FINAL_DAYS + RAW_EVENT_RETENTION_DAYS


@pytest.fixture
def outcome_id(api: ApiClient, db, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sample message and SendGrid's sample batch: 5 applied events, 2 orphans, 1 ignored."""
    configure(monkeypatch)
    status, body = api.post("/messages", json.loads(load_event("messages_register_single.json")["body"]))
    assert status == 201, body
    event = load_event("webhooks_sendgrid_events.json")
    event["headers"].update(sendgrid_headers(event["body"].encode()))
    result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
    assert json.loads(result["body"])["stored"] == 8
    return str(body["outcomes"][0]["outcome_id"])


def derived(db, outcome_id: str) -> dict[str, Any]:
    row = db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()
    row.pop("updated_at")
    return row


def events(db) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT event_key, status, event_type, occurred_at, data, match_email, match_provider_message_id,"
        " payload FROM outcome_events ORDER BY event_key"
    ).fetchall()


def test_payloads_go_after_final_plus_retention_and_the_facts_stay(api: ApiClient, db, outcome_id: str) -> None:
    before, history = derived(db, outcome_id), api.get(f"/messages/{outcome_id}?org_id=acme")[1]["events"]
    stored = events(db)
    now = datetime.now(UTC)

    kept = retention.remove_raw_payloads(now + FINAL_PLUS_RETENTION - timedelta(hours=1), time_budget_s=5)
    assert kept["removed"] == 0 and kept["done"] is True
    assert all(e["payload"] is not None for e in events(db))

    gone = retention.remove_raw_payloads(now + FINAL_PLUS_RETENTION + timedelta(hours=1), time_budget_s=5)
    assert gone["removed"] == 8 and gone["done"] is True
    after = events(db)
    assert all(e["payload"] is None for e in after)
    for old, new in zip(stored, after, strict=True):  # the normalised event is untouched
        assert {k: v for k, v in old.items() if k not in ("payload", "match_email")} == {
            k: v for k, v in new.items() if k not in ("payload", "match_email")
        }
        # an orphan keeps the address it may still be matched by; an applied event does not need it
        assert new["match_email"] == (old["match_email"] if old["status"] == "orphan" else None)

    # the lifecycle re-derived from what is left gives the same facts
    with transaction() as conn:
        recompute(conn, [UUID(outcome_id)])
    assert derived(db, outcome_id) == before
    status, view = api.get(f"/messages/{outcome_id}?org_id=acme")
    assert status == 200 and view["stage"] == "clicked" and view["events"] == history

    # an orphan whose message is registered late is still applied from its normalised event
    status, body = api.post(
        "/messages",
        {
            **json.loads(load_event("messages_register_single.json")["body"]),
            "idempotency_key": "late",
            "provider_message_id": "batchmsg0.dfd.64b469",
            "lead_email": "lee@contoso.example",
        },
    )
    assert status == 201
    late = derived(db, str(body["outcomes"][0]["outcome_id"]))
    assert (late["bounce_type"], late["stage"]) == ("blocked", "bounced")


def test_batches_stop_at_the_time_budget_and_the_next_run_continues(db, outcome_id: str) -> None:
    later = datetime.now(UTC) + FINAL_PLUS_RETENTION + timedelta(days=1)
    first = retention.remove_raw_payloads(later, time_budget_s=0, batch_size=3)
    assert (first["removed"], first["batches"], first["done"]) == (3, 1, False)
    rest = retention.remove_raw_payloads(later, time_budget_s=5, batch_size=3)
    assert (rest["removed"], rest["batches"], rest["done"]) == (5, 2, True)
    oldest_first = db.execute("SELECT count(*) AS n FROM outcome_events WHERE payload IS NOT NULL").fetchone()
    assert oldest_first["n"] == 0


def test_a_retention_batch_never_makes_ingest_wait(
    db, db_url: str, outcome_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch holds its rows while it runs; ingest of new events for the same outcome, on another
    connection, goes through meanwhile (its lock_timeout would fail it otherwise)."""
    holder = psycopg.connect(db_url, row_factory=dict_row)
    try:
        with holder.transaction():
            held = events_dal.remove_raw_payloads(holder, datetime.now(UTC) + timedelta(days=1), 100)
            assert held == 8
            monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=2s")
            close_connection()  # the code under test reconnects with the lock_timeout
            result = ingest_events(
                [
                    IncomingEvent(
                        provider="sendgrid",
                        event_key="new-open",
                        event_type="open",
                        occurred_at=datetime.now(UTC),
                        payload={"event": "open"},
                        data={"machine_open": False},
                        outcome_id=outcome_id,
                    )
                ],
                window_days=90,
            )
            assert result.applied == 1
    finally:
        holder.close()
    assert derived(db, outcome_id)["open_count"] == 2


def test_rows_an_ingest_holds_are_skipped_not_waited_for(db, db_url: str, outcome_id: str) -> None:
    later = datetime.now(UTC) + FINAL_PLUS_RETENTION + timedelta(days=1)
    with psycopg.connect(db_url, row_factory=dict_row) as ingest, ingest.transaction():
        ingest.execute("SELECT 1 FROM outcome_events WHERE event_key = 'Y2xpY2stMTAwMQ' FOR UPDATE")
        done = threading.Event()
        result: dict[str, Any] = {}

        def sweep() -> None:
            result.update(retention.remove_raw_payloads(later, time_budget_s=5))
            done.set()

        worker = threading.Thread(target=sweep)
        worker.start()
        assert done.wait(timeout=10), "the sweep waited for a row an ingest holds"
        worker.join()
    assert result["removed"] == 7
    held = db.execute("SELECT payload FROM outcome_events WHERE event_key = 'Y2xpY2stMTAwMQ'").fetchone()
    assert held["payload"] is not None  # the next run takes it


def test_the_scheduled_function_removes_what_is_due(db, outcome_id: str) -> None:
    db.execute(
        "UPDATE outcome_events SET received_at = received_at - interval '200 days' "
        "WHERE event_key IN ('cHJvY2Vzc2VkLTEwMDE', 'ZGVsaXZlcmVkLTEwMDE')"
    )
    result = invoke("RetentionFunction", load_event("retention_schedule.json"), ROOT / "template.yaml")
    assert result["removed"] == 2 and result["done"] is True
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE payload IS NULL").fetchone()["n"] == 2

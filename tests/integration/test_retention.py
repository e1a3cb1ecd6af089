"""Retention: raw provider payloads go once the outcome is final and the retention has passed; the
normalised events and the derived columns keep every fact; batches never make ingest wait."""

from __future__ import annotations

import json
import random
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
from tests.conftest import ROOT, ApiClient, count, load_event
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
            held, _ = events_dal.remove_raw_payloads(holder, datetime.now(UTC) + timedelta(days=1), 100)
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


# --- a run's batches carry their position (received_at, event_id) --------------------------------


def stored_event(db, key: str, received_at: datetime, *, status: str = "orphan", payload: bool = True) -> int:
    row = db.execute(
        """INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, received_at, status,
                                       match_email, payload)
           VALUES ('sendgrid', %s, 'open', %s, %s, %s, 'lee@contoso.example', %s) RETURNING event_id""",
        (key, received_at - timedelta(hours=1), received_at, status, json.dumps({"k": key}) if payload else None),
    ).fetchone()
    return int(row["event_id"])


def payloads(db) -> dict[int, tuple[bool, str | None]]:
    rows = db.execute("SELECT event_id, payload IS NOT NULL AS kept, match_email FROM outcome_events").fetchall()
    return {r["event_id"]: (r["kept"], r["match_email"]) for r in rows}


def test_a_run_of_many_batches_purges_exactly_what_is_due_ties_included(db) -> None:
    """Events one transaction stores share its now(): batches of 4 cut through groups of up to 9
    events received at the same instant, inserted in shuffled order (their ids do not follow their
    times). Every due payload goes, once; nothing received at or after the cutoff is touched."""
    now = datetime.now(UTC)
    cutoff = now - FINAL_PLUS_RETENTION
    groups = [(cutoff - timedelta(days=days), size) for days, size in ((50, 7), (40, 1), (30, 9), (20, 4), (1, 7))]
    groups.append((cutoff - timedelta(microseconds=1), 5))  # the last instant before the cutoff
    planned = [(at, f"due-{i}-{n}") for i, (at, size) in enumerate(groups) for n in range(size)]
    random.Random(7).shuffle(planned)
    due = {
        stored_event(db, key, at, status="ignored" if n % 3 == 0 else "orphan") for n, (at, key) in enumerate(planned)
    }
    # not final yet (at the cutoff, after it), and one whose payload went in an earlier run
    kept = {stored_event(db, f"young-{i}", cutoff + timedelta(days=d)) for i, d in enumerate((0, 0, 1, 30))}
    kept |= {stored_event(db, f"young-tie-{n}", cutoff) for n in range(3)}
    gone_before = stored_event(db, "gone", cutoff - timedelta(days=60), payload=False)
    before = payloads(db)

    result = retention.remove_raw_payloads(now, time_budget_s=60, batch_size=4)

    assert len(due) == 33 and (result["removed"], result["batches"], result["done"]) == (33, 9, True)
    after = payloads(db)
    assert {i for i, (has, _) in after.items() if has} == kept
    assert {i for i, (has, _) in after.items() if not has} == due | {gone_before}
    statuses = {r["event_id"]: r["status"] for r in db.execute("SELECT event_id, status FROM outcome_events")}
    for event_id in due:  # an orphan keeps the address it may still be matched by
        assert after[event_id][1] == (before[event_id][1] if statuses[event_id] == "orphan" else None)
    again = retention.remove_raw_payloads(now, time_budget_s=60, batch_size=4)
    assert (again["removed"], again["done"]) == (0, True)


def index_entries_read(conn: Any) -> int:
    """Index entries the scans of this transaction have read on outcome_events, dead ones included,
    besides the primary-key probes that update each row found."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) AS n"
        " FROM pg_index WHERE indrelid = 'outcome_events'::regclass AND NOT indisprimary"
    ).fetchone()
    return int(row["n"])


def test_each_batch_starts_after_the_rows_the_previous_one_purged(
    db, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a snapshot older than the run (a long transaction elsewhere), the index entries of the
    rows a batch purged cannot be removed, and a batch that started from the oldest entry again read
    all of them: 6, 12, 18 ... entries for 6 payloads (750 ms a batch after 1M in production). Each
    batch now reads its own rows' entries only."""
    now = datetime.now(UTC)
    start = now - FINAL_PLUS_RETENTION - timedelta(days=10)
    for n in range(60):  # groups of 5 received at the same instant
        stored_event(db, f"due-{n}", start + timedelta(minutes=n // 5))
    # the index walk a large table gets (a small one would be read whole instead)
    monkeypatch.setenv("PGOPTIONS", "-c enable_seqscan=off -c enable_bitmapscan=off")
    close_connection()
    read: list[int] = []
    real = events_dal.remove_raw_payloads

    def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
        before = index_entries_read(conn)
        result = real(conn, *args, **kwargs)
        read.append(index_entries_read(conn) - before)
        return result

    monkeypatch.setattr(events_dal, "remove_raw_payloads", counted)
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as old:
        old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert count(old, "outcome_events") == 60  # the snapshot, held until the run is over
        result = retention.remove_raw_payloads(now, time_budget_s=60, batch_size=6)
        old.execute("ROLLBACK")
    assert (result["removed"], result["batches"], result["done"]) == (60, 11, True)
    assert read[:10] == [6] * 10, read  # before: [6, 12, 18, ..., 60]
    assert read[10] <= 1, read

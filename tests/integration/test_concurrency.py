"""Concurrent delivery: N processes, each with its own connection, replay shuffled, duplicated
streams of every provider's events (and some registrations) at the same time. The database must
end exactly as one ordered delivery leaves it: derived rows equal the function of their events,
no orphan is left behind by a registration that raced it, and nothing deadlocks."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from flywheel.clients import http as http_client
from flywheel.dal.connection import close_connection
from flywheel.local.embedded import create_database
from flywheel.local.invoke import invoke
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event
from tests.integration.test_webhook_crm import FakeCrm
from tests.integration.test_webhook_replay import register, requests, snapshot
from tests.webhook_helpers import configure, route_event, sendgrid_body, sendgrid_headers, standard_headers

PROCESSES = 4
# before lock-ordered derivation and race-free orphan claims, 30 of 30 rounds failed (18 of 20 with
# every message registered up front, i.e. the derivation race alone): 4 rounds catch it every time
ROUNDS = 4
MESSAGES = 12
SENT = datetime(2026, 11, 20, 9, tzinfo=UTC)


def race_messages() -> list[dict[str, Any]]:
    return [{"org_id": "acme", "campaign_id": "race", "lead_id": f"race-{i}", "lead_email": f"l{i}@race.example",
             "body": f"Hi {i}", "framework": "AIDA", "tone": "casual", "sent_at": SENT.isoformat(),
             "provider_message_id": f"race{i}.dfd.1", "email_message_id": f"<race-{i}@mail.acme.example>",
             "idempotency_key": f"race-{i}"} for i in range(MESSAGES)]


def registration(messages: list[dict[str, Any]]) -> dict[str, Any]:
    event = load_event("messages_register_batch.json")
    event["body"] = json.dumps({"messages": messages})
    return {"function": "MessagesFunction", "event": event}


def webhook(event: dict[str, Any]) -> dict[str, Any]:
    return {"function": "WebhooksFunction", "event": event}


def sendgrid_request(events: list[dict[str, Any]]) -> dict[str, Any]:
    body = sendgrid_body(events)
    return webhook(route_event(load_event("webhooks_sendgrid_events.json"), body, **sendgrid_headers(body)))


def crm_request(name: str, body: dict[str, Any], msg_id: str) -> dict[str, Any]:
    raw = json.dumps(body)
    return webhook(route_event(load_event(name), raw, **standard_headers(raw.encode(), msg_id)))


def race_requests(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Many events on few outcomes, one request each, grouped by outcome."""
    groups = []
    t0 = int(SENT.timestamp())
    for i, m in enumerate(messages):
        out: list[dict[str, Any]] = []
        sg = {"email": m["lead_email"], "sg_message_id": f"{m['provider_message_id']}.filter0001.1.0"}
        kinds = ["processed", "delivered", "open", "open", "click"] + (["unsubscribe"] if i % 4 == 0 else [])
        events = [{**sg, "event": kind, "timestamp": t0 + 60 * (n + 1), "sg_event_id": f"race-{i}-{n}",
                   "sg_machine_open": kind == "open" and n == 2} for n, kind in enumerate(kinds)]
        out += [sendgrid_request([e]) for e in events]
        out.append(sendgrid_request(events[:3]))  # the same events again, as a batch
        if i % 3 == 0:
            for n, (kind, day) in enumerate((("deal_lost", 3), ("deal_won", 5))):
                out.append(crm_request("webhooks_crm_deal_won.json", {
                    "event": kind, "lead_email": m["lead_email"], "org_id": "acme", "deal_id": f"R-{i}",
                    "value": "1000.00", "currency": "USD", "occurred_at": (SENT + timedelta(days=day)).isoformat()},
                    f"msg_race_deal_{i}_{n}"))
        if i % 2 == 1:
            out.append(crm_request("webhooks_crm_meeting_booked.json", {
                "event": "meeting_booked", "lead_email": m["lead_email"], "org_id": "acme", "meeting_id": f"RM-{i}",
                "start_time": "2026-11-22T15:00:00Z", "end_time": "2026-11-22T15:30:00Z",
                "occurred_at": (SENT + timedelta(days=1)).isoformat()}, f"msg_race_meet_{i}"))
        groups.append(out)
    return groups


def _deliver(url: str, stream: list[dict[str, Any]], errors: Any) -> None:
    try:
        import os

        os.environ["DATABASE_URL"] = url
        reset_settings()
        for request in stream:
            result = invoke(request["function"], request["event"], ROOT / "template.yaml")
            if result["statusCode"] not in (200, 201):
                errors.put(f"{request['function']} {result['statusCode']}: {result.get('body', '')[:300]}")
        close_connection()
    except Exception:  # reported to the parent, which fails the test
        errors.put(traceback.format_exc())


def run_concurrently(url: str, streams: list[list[dict[str, Any]]]) -> list[str]:
    close_connection()  # children must not share the parent's socket
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    workers = [context.Process(target=_deliver, args=(url, stream, errors)) for stream in streams]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    return found


def deliver_in_order(url: str, stream: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    close_connection()
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    for request in stream:
        result = invoke(request["function"], request["event"], ROOT / "template.yaml")
        assert result["statusCode"] in (200, 201), result


@pytest.mark.integration
def test_concurrent_shuffled_replays_equal_one_ordered_delivery(db_url, pg_admin_url, template_db,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(FakeCrm()))
    configure(monkeypatch)
    messages = race_messages()
    early, late = messages[: MESSAGES // 2], messages[MESSAGES // 2:]

    # the reference: every message registered first, then each event delivered once, in order
    deliver_in_order(db_url, [registration(messages)], monkeypatch)
    ids = register()
    stream = [webhook(e) for e in requests(ids)] + [r for group in race_requests(messages) for r in group]
    deliver_in_order(db_url, stream, monkeypatch)
    expected = snapshot(db_url)
    assert any(o["deal_status"] == "won" for o in expected[0]) and any(o["unsubscribed_at"] for o in expected[0])

    mismatches = []
    for n in range(ROUNDS):
        url = create_database(pg_admin_url, f"{template_db}_race{n}_{int(time.time())}", template=template_db)
        deliver_in_order(url, [registration(early)], monkeypatch)
        ids = register()  # the sample messages, so the sample events carry the same outcome ids pattern
        groups = [[webhook(e) for e in requests(ids)], *race_requests(messages)]
        random.Random(n).shuffle(groups)
        streams = []
        for p in range(PROCESSES):
            # every process walks the outcomes in the same order, so they collide on the same rows;
            # within an outcome its events come shuffled, some twice; the late messages register mid-way
            rng = random.Random(1000 * n + p)
            stream = []
            for group in groups:
                copy = group + rng.sample(group, len(group) // 3)
                rng.shuffle(copy)
                stream += copy
            stream.insert(rng.randrange(len(stream)), registration(late))
            streams.append(stream)
        errors = run_concurrently(url, streams)
        assert not errors, errors[:3]
        got = snapshot(url)
        if got != expected:
            stale = [o["dedupe_key"] for o, e in zip(got[0], expected[0], strict=False) if o != e]
            orphans = sum(1 for e in got[1] if e["status"] == "orphan") - sum(
                1 for e in expected[1] if e["status"] == "orphan")
            mismatches.append(f"round {n}: {len(stale)} outcomes differ {stale[:5]}, extra orphans {orphans}")
    assert not mismatches, mismatches

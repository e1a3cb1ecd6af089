"""Every provider's events, replayed three times in shuffled order, end as one clean pass does."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx2
import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.clients import http as http_client
from flywheel.dal.connection import close_connection
from flywheel.local.embedded import create_database
from flywheel.local.invoke import invoke
from flywheel.local.seed import DANA
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event
from tests.integration.test_webhook_crm import FakeCrm
from tests.webhook_helpers import (
    calendly_headers,
    configure,
    event_body,
    hubspot_headers,
    public_url,
    route_event,
    sendgrid_body,
    sendgrid_headers,
    standard_headers,
)

Request = Callable[[], dict[str, Any]]


def register() -> dict[str, str]:
    """Registers the sample messages; returns outcome id by lead email."""
    ids = {}
    for name in ("messages_register_single.json", "messages_register_batch.json"):
        event = load_event(name)
        body = json.loads(event["body"])
        outcomes = json.loads(invoke("MessagesFunction", event, ROOT / "template.yaml")["body"])["outcomes"]
        for message, outcome in zip(body.get("messages", [body]), outcomes, strict=True):
            ids[message["lead_email"]] = outcome["outcome_id"]
    return ids


def requests(ids: dict[str, str]) -> list[dict[str, Any]]:
    dana = ids["dana.reyes@northwind.example"]
    out = []
    # SendGrid, one request per event so they interleave with everything else
    for raw in json.loads(load_event("webhooks_sendgrid_events.json")["body"]):
        body = sendgrid_body([raw])
        out.append(route_event(load_event("webhooks_sendgrid_events.json"), body, **sendgrid_headers(body)))
    reply = load_event("webhooks_sendgrid_inbound_parsed.json")
    out.append(route_event(reply, event_body(reply).replace(str(DANA).encode(), dana.encode())))
    out.append(route_event(load_event("webhooks_sendgrid_inbound_raw.json")))
    calendly = load_event("webhooks_calendly_invitee_created.json")
    booked = calendly["body"].replace(str(DANA), dana)
    no_show = json.dumps(
        {
            "created_at": "2026-12-02T10:00:00Z",
            "event": "invitee_no_show.created",
            "payload": {
                "uri": "https://api.calendly.com/invitee_no_shows/1",
                "invitee": json.loads(booked)["payload"]["uri"],
            },
        }
    )
    for text in (booked, no_show):
        out.append(route_event(calendly, text, **calendly_headers(text.encode())))
    hub = load_event("webhooks_hubspot_deal_won.json")
    out.append(route_event(hub, hub["body"], **hubspot_headers(hub["body"].encode(), public_url(hub))))
    out.append(load_event("webhooks_pipedrive_deal_won.json"))
    out.append(load_event("webhooks_salesforce_opportunity_won.json"))
    for name in ("webhooks_crm_deal_won.json", "webhooks_crm_meeting_booked.json"):
        event = load_event(name)
        out.append(
            route_event(
                event, event["body"], **standard_headers(event["body"].encode(), event["headers"]["webhook-id"])
            )
        )
    return out


def database_rows(url: str, more: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """Outcomes and events (and the rows of `more`'s queries) as data, with ids replaced by what
    they stand for (ids differ between databases)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        keys = {
            r["outcome_id"]: r["dedupe_key"] for r in conn.execute("SELECT outcome_id, dedupe_key FROM outcome_labels")
        }
        found = {
            "outcomes": conn.execute("SELECT * FROM outcome_labels ORDER BY dedupe_key").fetchall(),
            "events": conn.execute("SELECT * FROM outcome_events").fetchall(),
            **{name: conn.execute(query).fetchall() for name, query in (more or {}).items()},
        }
    for row in found["outcomes"]:
        for volatile in ("outcome_id", "created_at", "updated_at"):
            row.pop(volatile)
    for row in found["events"]:
        for volatile in ("event_id", "received_at"):
            row.pop(volatile)
    # outcome ids also travel inside payloads (utm_content, reply+ addresses) and event keys
    # (corrections): name them by their key
    text = json.dumps(found, default=str, sort_keys=True)
    for outcome_id, key in keys.items():
        text = text.replace(str(outcome_id), key)
    named = json.loads(text)
    named["events"].sort(key=lambda e: (e["provider"], e["event_key"]))
    return named


def snapshot(url: str) -> tuple[list[dict], list[dict]]:
    rows = database_rows(url)
    return rows["outcomes"], rows["events"]


def run_pass(url: str, monkeypatch: pytest.MonkeyPatch, times: int, shuffle: bool) -> tuple[list, list]:
    close_connection()
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    stream = requests(register()) * times
    if shuffle:
        random.Random(20261127).shuffle(stream)
    for event in stream:
        result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
        assert result["statusCode"] == 200, result
    return snapshot(url)


def test_three_shuffled_replays_equal_one_clean_pass(db_url, pg_admin_url, template_db, monkeypatch) -> None:
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(FakeCrm()))
    configure(monkeypatch)
    clean = run_pass(db_url, monkeypatch, times=1, shuffle=False)
    replay_url = create_database(pg_admin_url, f"{template_db}_replay", template=template_db)
    replayed = run_pass(replay_url, monkeypatch, times=3, shuffle=True)
    close_connection()
    outcomes, events = clean
    assert len(events) >= 16 and any(o["deal_status"] == "won" for o in outcomes)
    assert {e["status"] for e in events} == {"applied", "orphan", "ignored"}
    assert {o["stage"] for o in outcomes} >= {"deal_won", "replied"}
    assert replayed == clean

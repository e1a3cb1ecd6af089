"""Attribution rules: an event naming its message waits for it; email attribution stays inside one
organisation; email-only orphans are claimed; a claimed orphan has its live effects."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import ApiClient
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers, standard_headers


def register(api: ApiClient, org: str, key: str, **fields) -> str:
    message = {
        "org_id": org,
        "campaign_id": "c",
        "lead_id": key,
        "lead_email": "dana@northwind.example",
        "body": "hi",
        "sent_at": "2026-11-20T09:00:00Z",
        "idempotency_key": key,
        **fields,
    }
    status, body = api.post("/messages", message)
    assert status in (200, 201), body
    return body["outcomes"][0]["outcome_id"]


def row(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def sendgrid(api: ApiClient, events: list[dict]) -> dict:
    raw = sendgrid_body(events)
    status, body = api.post("/webhooks/sendgrid", body=raw, headers=sendgrid_headers(raw))
    assert status == 200, body
    return body


def crm(api: ApiClient, body: dict, msg_id: str) -> dict:
    raw = json.dumps(body).encode()
    status, result = api.post("/webhooks/crm/deals", body=raw, headers=standard_headers(raw, msg_id))
    assert status == 200, result
    return result


@pytest.fixture
def configured(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    configure(monkeypatch)
    return api


def test_an_event_naming_its_message_waits_for_it_instead_of_landing_on_the_previous_one(configured, db) -> None:
    api = configured
    previous = register(api, "acme", "m1", provider_message_id="old.dfd")
    # an unsubscribe for a message not registered yet: it names that message, not the lead's previous one
    sendgrid(
        api,
        [
            {
                "email": "dana@northwind.example",
                "timestamp": 1795424400,
                "event": "unsubscribe",
                "sg_event_id": "u1",
                "sg_message_id": "new.dfd.filter1.0",
            }
        ],
    )
    assert row(db, previous)["unsubscribed_at"] is None
    assert db.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 0
    # the message registers: it claims the orphan with exactly its live effect, the suppression
    current = register(api, "acme", "m2", provider_message_id="new.dfd", sent_at="2026-11-21T09:00:00Z")
    assert row(db, current)["unsubscribed_at"] is not None and row(db, current)["stage"] == "unsubscribed"
    [suppressed] = db.execute("SELECT * FROM suppressions").fetchall()
    assert (suppressed["org_id"], suppressed["email"], str(suppressed["outcome_id"])) == (
        "acme",
        "dana@northwind.example",
        current,
    )


def test_email_attribution_stays_in_the_events_organisation_and_orphans_are_claimed(configured, db) -> None:
    api = configured
    other = register(api, "globex", "g1")  # the same lead, another organisation
    result = crm(
        api,
        {
            "event": "deal_won",
            "lead_email": "dana@northwind.example",
            "org_id": "acme",
            "deal_id": "D1",
            "value": "100.00",
            "occurred_at": "2026-11-25T09:00:00Z",
        },
        "msg_deal_1",
    )
    assert result["orphans"] == 1 and row(db, other)["deal_status"] is None
    # acme's message to that lead, sent before the deal, registers later: it claims the deal
    mine = register(api, "acme", "a1")
    assert row(db, mine)["deal_status"] == "won" and row(db, other)["deal_status"] is None
    # a message sent after the event does not claim it
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE status = 'orphan'").fetchone()["n"] == 0


def test_a_claimed_reply_is_queued_for_classification(configured, db) -> None:
    api = configured
    # as SendGrid posts it: the SMTP envelope (which decides the parse domain's organisation) and the raw mail
    form = (
        b'--b\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n'
        b'{"to":["sam@reply.flywheel.example"],"from":"dana@northwind.example"}\r\n'
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        b"From: Dana <dana@northwind.example>\r\nTo: sam@reply.flywheel.example\r\nSubject: Re: hi\r\n"
        b"Message-ID: <r1@northwind.example>\r\nIn-Reply-To: <send-1@mail.acme.example>\r\n"
        b"Date: Tue, 24 Nov 2026 10:12:00 +0000\r\n\r\nYes, interested.\r\n--b--\r\n"
    )
    status, body = api.post(
        "/webhooks/sendgrid/inbound/inbound-token-123",
        body=form,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert status == 200 and body["orphans"] == 1
    assert db.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == 0
    outcome = register(api, "acme", "s1", email_message_id="<send-1@mail.acme.example>")
    assert row(db, outcome)["stage"] == "replied"
    [queued] = db.execute("SELECT topic, payload FROM outbox").fetchall()
    assert queued["topic"] == "replies" and queued["payload"]["outcome_id"] == outcome
    assert "interested" in queued["payload"]["text"]


def test_an_unexpected_database_error_logs_no_personal_data(configured, db, monkeypatch, caplog) -> None:
    import psycopg

    from flywheel.services import outcomes

    def broken(*args, **kwargs):
        raise psycopg.errors.UniqueViolation(
            "duplicate key value violates unique constraint DETAIL: Key (email)=(dana@northwind.example)"
        )

    monkeypatch.setattr(outcomes.outcomes_dal, "insert_outcomes", broken)
    with caplog.at_level(logging.INFO):
        status, body = configured.post(
            "/messages",
            {
                "org_id": "acme",
                "campaign_id": "c",
                "lead_id": "x",
                "lead_email": "dana@northwind.example",
                "body": "hi",
            },
        )
    assert status == 500 and body["error"] == "internal_error"
    logged = " ".join(r.getMessage() + json.dumps(getattr(r, "__dict__", {}), default=str) for r in caplog.records)
    assert "UniqueViolation" in logged and "dana@northwind.example" not in logged


def meeting(api: ApiClient, body: dict, msg_id: str) -> dict:
    raw = json.dumps(body).encode()
    status, result = api.post("/webhooks/crm/meetings", body=raw, headers=standard_headers(raw, msg_id))
    assert status == 200, result
    return result


def test_a_meeting_id_is_matched_only_within_its_organisation(configured, db) -> None:
    api = configured
    mine = register(api, "acme", "a1")
    theirs = register(api, "globex", "g1", lead_email="bob@globex-lead.example")
    booked = {
        "event": "meeting_booked",
        "meeting_id": "M-1",
        "occurred_at": "2026-11-21T09:00:00Z",
        "start_time": "2026-11-25T09:00:00Z",
        "end_time": "2026-11-25T09:30:00Z",
    }
    meeting(api, {**booked, "lead_email": "dana@northwind.example", "org_id": "acme"}, "msg_b1")
    # globex numbers its meetings too: its own M-1 is a no-show, for its own lead
    no_show = {"event": "meeting_no_show", "meeting_id": "M-1", "occurred_at": "2026-11-25T10:00:00Z"}
    result = meeting(api, {**no_show, "lead_email": "bob@globex-lead.example", "org_id": "globex"}, "msg_ns1")
    assert result["orphans"] == 1 and row(db, mine)["meeting_no_show"] is False
    # globex's booking of its M-1 claims it; acme's meeting is untouched
    meeting(api, {**booked, "lead_email": "bob@globex-lead.example", "org_id": "globex"}, "msg_b2")
    assert row(db, theirs)["meeting_no_show"] is True and row(db, mine)["meeting_no_show"] is False
    meeting(api, {**no_show, "lead_email": "dana@northwind.example", "org_id": "acme"}, "msg_ns2")
    assert row(db, mine)["meeting_no_show"] is True


def reply_to(api: ApiClient, message_id: str) -> dict:
    # as SendGrid posts it: the SMTP envelope (which decides the parse domain's organisation) and the raw mail
    form = (
        b'--b\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n'
        b'{"to":["sam@reply.flywheel.example"],"from":"dana@northwind.example"}\r\n'
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        b"From: Dana <dana@northwind.example>\r\nTo: sam@reply.flywheel.example\r\nSubject: Re: hi\r\n"
        b"Message-ID: <r-"
        + message_id.encode()
        + b"@northwind.example>\r\nIn-Reply-To: <"
        + message_id.encode()
        + b">\r\nDate: Tue, 24 Nov 2026 10:12:00 +0000\r\n\r\nYes, interested.\r\n--b--\r\n"
    )
    status, body = api.post(
        "/webhooks/sendgrid/inbound/inbound-token-123",
        body=form,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert status == 200, body
    return body


def test_a_reply_never_lands_on_another_organisations_message(configured, db) -> None:
    api = configured  # reply.flywheel.example is acme's parse domain
    theirs = register(api, "globex", "g1", email_message_id="<send-1@mail.globex.example>")
    assert reply_to(api, "send-1@mail.globex.example")["orphans"] == 1
    assert row(db, theirs)["replied_at"] is None
    # the same when the reply comes first: globex's message does not claim acme's orphan
    assert reply_to(api, "send-2@mail.globex.example")["orphans"] == 1
    later = register(api, "globex", "g2", email_message_id="<send-2@mail.globex.example>")
    assert row(db, later)["replied_at"] is None and db.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == 0
    # acme's own message with that Message-ID is replied to, as always
    mine = register(api, "acme", "a1", email_message_id="<send-3@mail.acme.example>")
    reply_to(api, "send-3@mail.acme.example")
    assert row(db, mine)["replied_at"] is not None

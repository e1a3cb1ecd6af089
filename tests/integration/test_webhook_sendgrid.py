"""POST /webhooks/sendgrid: verified, set-wise, idempotent, lossless."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from tests.conftest import ROOT, SHARED_FIXTURES, ApiClient, count, load_event
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    configure(monkeypatch)


def register(api: ApiClient, **overrides) -> str:
    message = json.loads(load_event("messages_register_single.json")["body"])
    message.update(overrides)
    status, body = api.post("/messages", message)
    assert status in (200, 201), body
    return body["outcomes"][0]["outcome_id"]


def signed_sample_event() -> dict:
    event = load_event("webhooks_sendgrid_events.json")
    headers = sendgrid_headers(event["body"].encode())
    event["headers"].update(headers)
    return event


def outcome(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def test_sample_batch_applies_to_its_outcome_and_keeps_the_rest(api: ApiClient, db, configured) -> None:
    outcome_id = register(api)
    result = invoke("WebhooksFunction", signed_sample_event(), ROOT / "template.yaml")
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body == {
        "received": 8,
        "stored": 8,
        "duplicates": 0,
        "applied": 5,
        "orphans": 2,
        "ignored": 1,
        "quarantined": 0,
    }
    row = outcome(db, outcome_id)
    assert row["delivered_at"] is not None and row["open_count"] == 1 and row["machine_open_count"] == 1
    assert row["click_count"] == 1 and row["stage"] == "clicked"
    assert row["quality_score"] == pytest.approx(0.35 + 0.1 * 0.82)
    statuses = {
        r["status"]: r["n"]
        for r in db.execute("SELECT status, count(*) AS n FROM outcome_events GROUP BY status").fetchall()
    }
    assert statuses == {"applied": 5, "orphan": 2, "ignored": 1}

    # the same batch again (SendGrid retries): nothing new, nothing changed
    again = invoke("WebhooksFunction", signed_sample_event(), ROOT / "template.yaml")
    assert json.loads(again["body"])["duplicates"] == 8
    assert count(db, "outcome_events") == 8 and outcome(db, outcome_id)["open_count"] == 1


def test_orphans_attach_when_the_message_is_registered_later(api: ApiClient, db, configured) -> None:
    invoke("WebhooksFunction", signed_sample_event(), ROOT / "template.yaml")
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE status = 'orphan'").fetchone()["n"] == 7
    outcome_id = register(api)
    assert outcome(db, outcome_id)["stage"] == "clicked"
    # the blocked bounce's message arrives too
    blocked_id = register(
        api, idempotency_key="other", provider_message_id="batchmsg0.dfd.64b469", lead_email="lee@contoso.example"
    )
    row = outcome(db, blocked_id)
    assert (row["bounce_type"], row["stage"], row["training_label"]) == ("blocked", "bounced", "negative")


def test_outcome_id_custom_arg_links_directly(api: ApiClient, db, configured) -> None:
    outcome_id = register(api, provider_message_id=None)
    events = [
        {
            "email": "dana.reyes@northwind.example",
            "timestamp": int(time.time()),
            "event": "delivered",
            "sg_event_id": "d-1",
            "sg_message_id": "zzz.filter1",
            "outcome_id": outcome_id,
        }
    ]
    body = sendgrid_body(events)
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200 and result["applied"] == 1
    assert outcome(db, outcome_id)["stage"] == "delivered"


@pytest.mark.skipif(not SHARED_FIXTURES.exists(), reason="shared provider fixtures absent")
def test_official_vector_is_accepted_through_the_route(api: ApiClient, db, monkeypatch: pytest.MonkeyPatch) -> None:
    vector = json.loads((SHARED_FIXTURES / "sendgrid_single.json").read_text())
    configure(monkeypatch)
    monkeypatch.setenv(
        "WEBHOOK_SECRETS_JSON", json.dumps({"sendgrid_public_key": vector["public_key_base64_der_spki"]})
    )
    body = (SHARED_FIXTURES / vector["payload_file"]).read_bytes()
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": vector["header_X-Twilio-Email-Event-Webhook-Signature"],
        "X-Twilio-Email-Event-Webhook-Timestamp": vector["header_X-Twilio-Email-Event-Webhook-Timestamp"],
    }
    from flywheel.webhooks import signatures

    # the vector was signed in 2020: outside the freshness window today ...
    status, result = api.post("/webhooks/sendgrid", body=body, headers=headers)
    assert status == 401 and "window" in result["message"]
    # ... and accepted as delivered a minute after it was signed
    signed_at = int(vector["header_X-Twilio-Email-Event-Webhook-Timestamp"])
    monkeypatch.setattr(signatures, "_now", lambda: signed_at + 60)
    status, result = api.post("/webhooks/sendgrid", body=body, headers=headers)
    assert status == 200 and result["orphans"] == 1  # a 2020 event whose message we never sent
    tampered = body.replace(b"dropped", b"delivered")
    status, result = api.post("/webhooks/sendgrid", body=tampered, headers=headers)
    assert status == 401 and result["error"] == "unauthorized"
    assert count(db, "outcome_events") == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Email-Event-Webhook-Timestamp": "1"},
        {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==", "X-Twilio-Email-Event-Webhook-Timestamp": "1"},
    ],
)
def test_missing_or_bad_signature_is_401_and_writes_nothing(api: ApiClient, db, configured, headers) -> None:
    body = load_event("webhooks_sendgrid_events.json")["body"].encode()
    status, result = api.post("/webhooks/sendgrid", body=body, headers=headers)
    assert status == 401 and result["error"] == "unauthorized"
    assert count(db, "outcome_events") == 0


def test_verification_off_only_by_explicit_setting_and_warns(api: ApiClient, db, monkeypatch, caplog) -> None:
    configure(monkeypatch, SENDGRID_VERIFY_SIGNATURE="false")
    body = load_event("webhooks_sendgrid_events.json")["body"].encode()
    status, _ = api.post("/webhooks/sendgrid", body=body)
    assert status == 200 and count(db, "outcome_events") == 8
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'[{"event": "delivered", ', 400, "malformed_payload"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed_payload"),
        (b'[{"event": "open", "timestamp": NaN}]', 400, "malformed_payload"),
        (b'{"event": "delivered"}', 422, "validation_error"),
    ],
)
def test_bad_bodies_are_rejected_whole(api: ApiClient, db, configured, body: bytes, status: int, error: str) -> None:
    got, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert (got, result["error"]) == (status, error)
    assert count(db, "outcome_events") == 0 and count(db, "quarantined_events") == 0


def nest(depth: int) -> list:
    value: list = ["deep"]
    for _ in range(depth):
        value = [value]
    return value


BAD_EVENTS: list[tuple[Any, str]] = [
    ({"event": "delivered", "timestamp": "yesterday", "sg_event_id": "b1"}, "timestamp"),
    ({"timestamp": 2_000_000_000, "sg_event_id": "b2"}, "event"),
    ({"event": "open", "timestamp": 10**12, "sg_event_id": "b3"}, "out of range"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "b4", "email": "x\u0000@y.example"}, "email"),
    ({"event": "bounce", "timestamp": 1795424400, "sg_event_id": "b9", "reason": "550 \u0000"}, "NUL"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "b5", "useragent": "\ud800"}, "surrogate"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "b6", "email": "dana\u202e@x.example"}, "email"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "b7", "org_id": "o" * 129}, "org_id"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "k" * 300}, "sg_event_id"),
    ({"event": "open", "timestamp": 1795424400, "sg_event_id": "b8", "extra": nest(40)}, "nested"),
    ("not an object", "not a JSON object"),
]


def test_malformed_events_are_quarantined_and_the_rest_stored(api: ApiClient, db, configured) -> None:
    good = {
        "email": "dana.reyes@northwind.example",
        "timestamp": 1795424400,
        "event": "delivered",
        "sg_event_id": "good-1",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.1.0",
    }
    raw = [good] + [event for event, _ in BAD_EVENTS]
    body = (json.dumps(raw) + "\r\n").encode()  # NUL and lone surrogates travel as JSON escapes
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200, result
    assert (result["stored"], result["quarantined"], result["received"]) == (1, len(BAD_EVENTS), len(raw))
    rows = db.execute("SELECT reason, raw FROM quarantined_events").fetchall()
    assert len(rows) == len(BAD_EVENTS)
    by_raw = {
        json.loads(r["raw"]) if not r["raw"].startswith("{") else json.loads(r["raw"]).get("sg_event_id"): r
        for r in rows
    }
    for event, expected in BAD_EVENTS:
        row = by_raw[event if isinstance(event, str) else event["sg_event_id"]]
        assert expected in row["reason"], (expected, row)
    assert "\\u0000" in by_raw["b4"]["raw"]  # kept verbatim, as an escape
    # a provider retry of the same batch quarantines nothing twice and stores nothing twice
    status, again = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200 and again["quarantined"] == 0 and again["duplicates"] == 1
    assert count(db, "quarantined_events") == len(BAD_EVENTS) and count(db, "outcome_events") == 1


def test_body_over_the_limit_is_413(api: ApiClient, db, monkeypatch) -> None:
    configure(monkeypatch, MAX_BODY_BYTES="2048")
    body = sendgrid_body(
        [{"event": "open", "timestamp": 1, "sg_event_id": f"e{i}", "email": "x@y.z"} for i in range(100)]
    )
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 413 and result["error"] == "payload_too_large"
    assert count(db, "outcome_events") == 0


def test_database_down_is_503(api: ApiClient, db, monkeypatch) -> None:
    from flywheel.dal.connection import close_connection

    configure(monkeypatch)
    close_connection()
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    body = load_event("webhooks_sendgrid_events.json")["body"].encode()
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 503 and result["error"] == "service_unavailable"
    assert count(db, "outcome_events") == 0


def test_five_thousand_events_in_one_batch(api: ApiClient, db, configured) -> None:
    ids = [
        register(
            api,
            idempotency_key=f"k{i}",
            provider_message_id=f"msg{i}.dfd",
            lead_id=f"l{i}",
            lead_email=f"l{i}@x.example",
        )
        for i in range(50)
    ]
    now = int(time.time())
    events = [
        {  # each message's events carry its recipient, as SendGrid's do
            "email": f"l{i % 60}@x.example",
            "timestamp": now - i,
            "event": ["delivered", "open", "click"][i % 3],
            "sg_event_id": f"evt-{i}",
            "sg_message_id": f"msg{i % 60}.dfd.filter0001.1",
        }
        for i in range(5000)
    ]
    body = sendgrid_body(events)
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200, result
    registered = sum(1 for i in range(5000) if i % 60 < 50)
    assert (result["stored"], result["applied"], result["orphans"]) == (5000, registered, 5000 - registered)
    assert count(db, "outcome_events") == 5000
    # message k gets events i = k, k+60, ...; 60 is a multiple of 3, so all of one type
    assert outcome(db, ids[0])["event_count"] == 84 and outcome(db, ids[0])["stage"] == "delivered"
    assert outcome(db, ids[1])["open_count"] == 84 and outcome(db, ids[2])["click_count"] == 84


def test_unsubscribes_and_spam_reports_are_suppressed(api: ApiClient, db, configured) -> None:
    outcome_id = register(api)
    now = int(time.time())
    events = [
        {
            "email": "dana.reyes@northwind.example",
            "timestamp": now,
            "event": "spamreport",
            "sg_event_id": "sp-1",
            "outcome_id": outcome_id,
        },
        {
            "email": "dana.reyes@northwind.example",
            "timestamp": now,
            "event": "group_unsubscribe",
            "sg_event_id": "gu-1",
            "outcome_id": outcome_id,
            "asm_group_id": 42,
        },
    ]
    body = sendgrid_body(events)
    status, _ = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200
    rows = db.execute("SELECT org_id, email, reason FROM suppressions").fetchall()
    assert rows == [{"org_id": "acme", "email": "dana.reyes@northwind.example", "reason": "sendgrid_spam_report"}]

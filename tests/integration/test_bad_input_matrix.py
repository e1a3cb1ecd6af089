"""A hand-written matrix of hostile inputs across every route (written by an outside review, in
addition to the schemathesis fuzzing): NUL, unpaired surrogates, bidi and zero-width characters,
out-of-range timestamps in each provider's own format, unparseable amounts and dates, numeric
overflow, NaN / Infinity, long ids, deep JSON, wrong media types and charsets, duplicate keys,
multipart edge cases, XML entity tricks, oversized and base64 bodies.

Each case is signed the way its provider signs (so the parsers are reached) and must end as one
of: a 4xx with the JSON error body and no row written; or, inside a verified provider batch, 200
with the good events stored and the bad one quarantined (visible through GET /quarantine)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from flywheel.clients import http as http_client
from tests.conftest import ApiClient, load_event
from tests.integration.test_api_fuzz import COUNTS
from tests.integration.test_webhook_crm import FakeCrm
from tests.webhook_helpers import (
    SECRETS,
    calendly_headers,
    configure,
    hubspot_headers,
    sendgrid_headers,
    standard_headers,
)

HOST = "abc123.execute-api.us-east-1.amazonaws.com"
BIDI = "\u202e"
ZERO_WIDTH = "\u200b"


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # "4xx"; "quarantine" (200, the bad event quarantined, the good one stored); "accepted" (200: mail and
    # CRM fields a provider may really send, read leniently: a garbled header, an unknown charset)
    expect: str = "4xx"
    sign: bool = True


def js(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def raw_json(text: str) -> bytes:
    """JSON text written by hand (escapes, NaN tokens, duplicate keys kept as they are)."""
    return text.encode("utf-8", "surrogatepass")


def deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


# --- POST /messages ------------------------------------------------------------------------------

MESSAGE = {
    "org_id": "acme",
    "campaign_id": "c",
    "lead_id": "l1",
    "lead_email": "dana@northwind.example",
    "body": "Hi Dana",
    "sent_at": "2026-11-20T09:00:00Z",
}


def message(**changes: Any) -> bytes:
    return js({**MESSAGE, **changes})


def message_cases() -> list[Case]:
    bad_fields: dict[str, Any] = {
        "org_nul": {"org_id": "ac\x00me"},
        "org_long": {"org_id": "a" * 129},
        "org_huge": {"org_id": "a" * 100_000},
        "org_space": {"org_id": "ac me"},
        "org_bidi": {"org_id": "acme" + BIDI},
        "lead_id_long": {"lead_id": "l" * 129},
        "lead_id_number": {"lead_id": 5},
        "email_bidi": {"lead_email": f"dana{BIDI}@northwind.example"},
        "email_zero_width": {"lead_email": f"da{ZERO_WIDTH}na@northwind.example"},
        "email_newline": {"lead_email": "dana@northwind.example\nBcc: x@y.example"},
        "email_nul": {"lead_email": "dana\x00@northwind.example"},
        "email_no_tld": {"lead_email": "dana@localhost"},
        "email_huge": {"lead_email": "a" * 400 + "@x.example"},
        "email_number": {"lead_email": 12},
        "body_empty": {"body": ""},
        "body_nul": {"body": "hi\x00"},
        "body_huge": {"body": "x" * 100_001},
        "body_list": {"body": ["hi"]},
        "subject_long": {"subject": "s" * 999},
        "sent_0001": {"sent_at": "0001-01-01T00:00:00Z"},
        "sent_9999": {"sent_at": "9999-12-31T23:59:59Z"},
        "sent_naive": {"sent_at": "2026-11-20T09:00:00"},
        "sent_month_13": {"sent_at": "2026-13-45T00:00:00Z"},
        "sent_number": {"sent_at": 10**20},
        "sent_offset_25h": {"sent_at": "2026-11-20T09:00:00+25:00"},
        "sent_1999": {"sent_at": "1999-12-31T23:59:59Z"},
        "sent_text": {"sent_at": "yesterday"},
        "sent_negative_epoch": {"sent_at": -1},
        "sent_next_month": {"sent_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()},
        "lead_extra_huge": {"lead": {"extra": {"stakeholders": [f"Person Number{i}" for i in range(2000)]}}},
        "icp_negative": {"lead": {"icp_score": -0.5}},
        "icp_two": {"lead": {"icp_score": 2}},
        "icp_string": {"lead": {"icp_score": "high"}},
        "country_three": {"lead": {"country": "USA"}},
        "country_digits": {"lead": {"country": "1A"}},
        "lead_unknown_field": {"lead": {"shoe_size": 44}},
        "channel_fax": {"channel": "fax"},
        "route_arm": {"route": {"arm": "both"}},
        "route_registry_nul": {"route": {"model_registry_id": "m\x00"}},
        "pmid_long": {"provider_message_id": "p" * 257},
        "pmid_empty": {"provider_message_id": ""},
        "msgid_long": {"email_message_id": "<" + "m" * 1000 + "@x>"},
        "idempotency_long": {"idempotency_key": "k" * 201},
        "unknown_field": {"colour": "red"},
        "decisions_not_object": {"agent_decisions": [1, 2]},
        "decisions_huge": {"agent_decisions": {"k": "x" * 210_000}},
        "decisions_nul_key": {"agent_decisions": {"a\x00": 1}},
        "sender_unknown": {"sender": {"phone": "1"}},
        "brief_long": {"brief": "b" * 10_001},
        "model_id_long": {"model_id": "m" * 257},
    }
    cases = [Case(f"messages.{name}", "POST", "/messages", message(**change)) for name, change in bad_fields.items()]
    surrogate = json.dumps(MESSAGE)[:-1]
    cases += [
        Case("messages.lone_surrogate_escape", "POST", "/messages", raw_json(surrogate + ', "subject": "\\ud800 hi"}')),
        Case("messages.low_surrogate_escape", "POST", "/messages", raw_json(surrogate + ', "subject": "\\udfff"}')),
        Case("messages.nul_escape", "POST", "/messages", raw_json(surrogate + ', "subject": "a\\u0000b"}')),
        Case("messages.nan_token", "POST", "/messages", raw_json(surrogate + ', "lead": {"icp_score": NaN}}')),
        Case(
            "messages.infinity_token", "POST", "/messages", raw_json(surrogate + ', "lead": {"icp_score": Infinity}}')
        ),
        Case("messages.float_overflow", "POST", "/messages", raw_json(surrogate + ', "lead": {"icp_score": 1e999}}')),
        Case(
            "messages.int_5000_digits",
            "POST",
            "/messages",
            raw_json(surrogate + ', "lead": {"icp_score": ' + "9" * 5000 + "}}"),
        ),
        Case("messages.duplicate_keys", "POST", "/messages", raw_json(surrogate + ', "org_id": "x y"}')),
        Case("messages.deep_100k", "POST", "/messages", deep(100_000)),
        Case(
            "messages.deep_40_in_decisions",
            "POST",
            "/messages",
            raw_json(surrogate + ', "agent_decisions": ' + deep(40).decode() + "}"),
        ),
        Case("messages.text_plain", "POST", "/messages", message(), {"Content-Type": "text/plain"}),
        Case(
            "messages.form_urlencoded",
            "POST",
            "/messages",
            b"org_id=acme",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        Case(
            "messages.latin1_bytes",
            "POST",
            "/messages",
            message(body="Grüße").decode().encode("latin-1"),
            {"Content-Type": "application/json; charset=iso-8859-1"},
        ),
        Case("messages.utf16", "POST", "/messages", message().decode().encode("utf-16")),
        Case("messages.invalid_utf8", "POST", "/messages", b'{"org_id": "\xff\xfe"}'),
        Case("messages.empty_object", "POST", "/messages", b"{}"),
        Case("messages.null", "POST", "/messages", b"null"),
        Case("messages.array", "POST", "/messages", b"[]"),
        Case("messages.number", "POST", "/messages", b"1"),
        Case("messages.string", "POST", "/messages", b'"hello"'),
        Case("messages.truncated", "POST", "/messages", message()[:-5]),
        Case("messages.trailing_garbage", "POST", "/messages", message() + b"}}"),
        Case("messages.batch_empty", "POST", "/messages", js({"messages": []})),
        Case("messages.batch_501", "POST", "/messages", js({"messages": [MESSAGE] * 501})),
        Case("messages.batch_not_list", "POST", "/messages", js({"messages": MESSAGE})),
        Case(
            "messages.batch_one_bad",
            "POST",
            "/messages",
            js({"messages": [MESSAGE, {**MESSAGE, "lead_email": "nope", "lead_id": "l2"}]}),
        ),
        Case("messages.oversized_7mb", "POST", "/messages", message(body="x" * 7_000_000)),
    ]
    return cases


# --- the other API routes ------------------------------------------------------------------------

UUID0 = "00000000-0000-4000-8000-000000000000"


def read_cases() -> list[Case]:
    gets = [
        "/messages/not-a-uuid?org_id=acme",
        f"/messages/{UUID0}",
        f"/messages/{UUID0}?org_id=ac%00me",
        f"/messages/{UUID0}?org_id=%ED%A0%80",
        f"/messages/{'1' * 5000}?org_id=acme",
        f"/messages/{UUID0}?org_id={'a' * 129}",
        f"/messages/{UUID0}?org_id=acme%E2%80%AE",
        "/quarantine",
        "/quarantine?org_id=acme&since=yesterday",
        "/quarantine?org_id=acme&limit=0",
        "/quarantine?org_id=acme&limit=-1",
        "/quarantine?org_id=acme&limit=" + "9" * 40,
        "/quarantine?org_id=acme&since=2026-13-45T00:00:00Z",
        "/quarantine?org_id=ac%00me",
        "/suppressions?org_id=ac%00me",
        "/suppressions?org_id=%ED%A0%80",
        "/suppressions?org_id=" + "a" * 129,
        "/suppressions?org_id=acme&limit=0",
        "/suppressions?org_id=acme&since=not-a-date",
        "/suppressions?org_id=acme%E2%80%AE",
        "/route?org_id=acme",
        "/route?org_id=acme&lead_id=l%00",
        "/route?org_id=ac%20me&lead_id=l",
        "/route?org_id=acme&lead_id=" + "l" * 129,
        "/route?org_id=%ED%A0%80&lead_id=l",
        "/insights/strategies?org_id=acme&segment=country",
        "/insights/strategies?org_id=acme&min_sample=0",
        "/insights/strategies?org_id=ac%00me",
        "/insights/strategies?org_id=acme&min_sample=" + "9" * 30,
        "/training/leaderboard?org_id=ac%00me",
        "/training/leaderboard",
        "/training/stats?org_id=acme&min_quality_score=NaN",
        "/training/stats?org_id=acme&min_quality_score=2",
        "/training/stats?org_id=acme&since_days=" + "9" * 30,
        "/training/stats?org_id=acme&since_days=-1",
        "/training/models?status=everything",
        "/training/models?status=%00",
        "/training/runs/not-a-uuid",
        f"/training/runs/{UUID0}",
        "/training/status/..%2F..%2Fetc",
        "/training/status/" + "j" * 300,
        "/training/status/job%00",
        "/experiments?limit=0",
        "/experiments?limit=" + "9" * 30,
        "/experiments/exp%00",
        "/experiments/%ED%A0%80",
        "/experiments/" + "e" * 5000,
        f"/experiments/{UUID0}/evaluations?limit=-1",
        "/experiments/exp%00/evaluations",
        f"/experiments/{UUID0}/evaluations?snapshots=maybe",
    ]
    return [Case(f"GET {path[:120]}", "GET", path) for path in gets]


CORRECTION = {"training_label": "positive", "reason": "checked", "actor": "qa@acme.example"}


def write_cases() -> list[Case]:
    corr = f"/outcomes/{UUID0}/corrections"
    reply = {"outcome_id": UUID0, "text": "Sounds good", "channel": "linkedin"}
    return [
        Case("corrections.bad_uuid", "POST", "/outcomes/nope/corrections", js(CORRECTION)),
        Case("corrections.unknown_outcome", "POST", corr, js(CORRECTION)),
        Case(
            "corrections.weight_nan", "POST", corr, raw_json(json.dumps(CORRECTION)[:-1] + ', "training_weight": NaN}')
        ),
        Case("corrections.weight_11", "POST", corr, js({**CORRECTION, "training_weight": 11})),
        Case("corrections.no_field", "POST", corr, js({"reason": "r", "actor": "a"})),
        Case("corrections.reason_nul", "POST", corr, js({**CORRECTION, "reason": "a\x00"})),
        Case("corrections.id_long", "POST", corr, js({**CORRECTION, "correction_id": "c" * 201})),
        Case("corrections.occurred_9999", "POST", corr, js({**CORRECTION, "occurred_at": "9999-01-01T00:00:00Z"})),
        Case("corrections.category_unknown", "POST", corr, js({**CORRECTION, "reply_category": "maybe"})),
        Case("corrections.text_plain", "POST", corr, js(CORRECTION), {"Content-Type": "text/plain"}),
        Case("replies.unknown_outcome", "POST", "/replies?org_id=acme", js(reply)),
        Case("replies.text_nul", "POST", "/replies?org_id=acme", js({**reply, "text": "a\x00"})),
        Case(
            "replies.surrogate",
            "POST",
            "/replies?org_id=acme",
            raw_json(json.dumps(reply)[:-1] + ', "subject": "\\udc00"}'),
        ),
        Case(
            "replies.occurred_0001",
            "POST",
            "/replies?org_id=acme",
            js({**reply, "occurred_at": "0001-01-01T00:00:00Z"}),
        ),
        Case("replies.channel_fax", "POST", "/replies?org_id=acme", js({**reply, "channel": "fax"})),
        Case("replies.text_huge", "POST", "/replies?org_id=acme", js({**reply, "text": "x" * 50_001})),
        Case("replies.deep", "POST", "/replies?org_id=acme", deep(50_000)),
        Case("training.run_bad_body", "POST", "/training/run", js({"min_quality_score": "high"})),
        Case("training.run_nan", "POST", "/training/run", raw_json('{"min_quality_score": NaN}')),
        Case(
            "training.deploy_unknown",
            "POST",
            "/training/deploy/flywheel-v9.9.9",
            js({"canary_percentage": 10, "reason": "r"}),
        ),
        Case(
            "training.deploy_pct_200",
            "POST",
            "/training/deploy/flywheel-v9.9.9",
            js({"canary_percentage": 200, "reason": "r"}),
        ),
        Case("training.archive_nul", "POST", "/training/archive/m%00", js({"reason": "r"})),
        Case("training.rollback_nul", "POST", "/training/rollback", js({"reason": "a\x00"})),
        Case("training.promote_force_no_reason", "POST", "/training/promote-winner", js({"force": True})),
        Case("experiments.restart_unknown", "POST", "/experiments/nope/restart", js({"reason": "r"})),
    ]


# --- webhooks ------------------------------------------------------------------------------------

T0 = 1795424400  # 2026-11-24
GOOD_SG = {
    "email": "dana@northwind.example",
    "timestamp": T0,
    "event": "delivered",
    "sg_event_id": "good-1",
    "sg_message_id": "abc.filter1.0",
    "org_id": "acme",
}


def sendgrid_batch(bad: Any) -> bytes:
    return js([GOOD_SG, bad]) + b"\r\n"


def sendgrid_cases() -> list[Case]:
    base = {"email": "x@northwind.example", "timestamp": T0, "event": "open", "sg_event_id": "bad-1", "org_id": "acme"}
    quarantined: dict[str, Any] = {
        "ts_1e12": {**base, "timestamp": 10**12},
        "ts_negative": {**base, "timestamp": -1},
        "ts_1999": {**base, "timestamp": 946684799},
        "ts_float_fraction": {**base, "timestamp": 1795424400.5},
        "ts_string": {**base, "timestamp": "yesterday"},
        "ts_missing": {k: v for k, v in base.items() if k != "timestamp"},
        "ts_1e20_float": {**base, "timestamp": 1e20},
        "ts_400_digits": {**base, "timestamp": 10**400},
        "ts_bool": {**base, "timestamp": True},
        "event_missing": {k: v for k, v in base.items() if k != "event"},
        "event_number": {**base, "event": 5},
        "event_empty": {**base, "event": ""},
        "email_bidi": {**base, "email": f"x{BIDI}@northwind.example"},
        "email_zero_width": {**base, "email": f"x{ZERO_WIDTH}@northwind.example"},
        "email_nul": {**base, "email": "x\x00@northwind.example"},
        "email_not_email": {**base, "email": "nobody"},
        "event_id_long": {**base, "sg_event_id": "e" * 300},
        "event_id_empty": {**base, "sg_event_id": ""},
        "org_nul": {**base, "org_id": "ac\x00me"},
        "org_long": {**base, "org_id": "o" * 129},
        "message_id_long": {**base, "sg_message_id": "m" * 1025},
        "machine_open_list": {**base, "sg_machine_open": [1]},
        "category_deep": {**base, "category": json.loads(deep(40))},
        "url_nul": {**base, "url": "https://x\x00"},
        "not_object": 5,
        "null_event": None,
        "list_event": [base],
        "asm_text": {**base, "asm_group_id": "group"},
    }
    cases = [
        Case(f"sendgrid.{name}", "POST", "/webhooks/sendgrid", sendgrid_batch(bad), expect="quarantine")
        for name, bad in quarantined.items()
    ]
    good = json.dumps([GOOD_SG])[:-1]
    cases += [
        Case(
            "sendgrid.escape_nul",
            "POST",
            "/webhooks/sendgrid",
            raw_json(good + ', {"event": "open", "timestamp": 1795424400, "sg_event_id": "b\\u0000"}]'),
            expect="quarantine",
        ),
        Case(
            "sendgrid.escape_surrogate",
            "POST",
            "/webhooks/sendgrid",
            raw_json(good + ', {"event": "open", "timestamp": 1795424400, "sg_event_id": "s", "x": "\\udbff"}]'),
            expect="quarantine",
        ),
        Case("sendgrid.nan_token", "POST", "/webhooks/sendgrid", raw_json(good + ', {"timestamp": NaN}]')),
        Case("sendgrid.float_overflow", "POST", "/webhooks/sendgrid", raw_json(good + ', {"timestamp": 1e400}]')),
        Case("sendgrid.int_5000_digits", "POST", "/webhooks/sendgrid", raw_json(good + ', {"x": ' + "9" * 5000 + "}]")),
        Case("sendgrid.deep_100k", "POST", "/webhooks/sendgrid", b"[" + deep(100_000) + b"]"),
        Case("sendgrid.object_body", "POST", "/webhooks/sendgrid", js(GOOD_SG)),
        Case("sendgrid.not_json", "POST", "/webhooks/sendgrid", b"event=open"),
        Case("sendgrid.invalid_utf8", "POST", "/webhooks/sendgrid", b'[{"event": "\xff"}]'),
        Case("sendgrid.utf16", "POST", "/webhooks/sendgrid", json.dumps([GOOD_SG]).encode("utf-16")),
        # a lone surrogate written as raw (invalid UTF-8) bytes rather than as an escape
        Case(
            "sendgrid.raw_surrogate_bytes",
            "POST",
            "/webhooks/sendgrid",
            js([GOOD_SG, {"event": "open", "timestamp": T0, "sg_event_id": "r", "reason": "\ud800"}]),
        ),
        Case(
            "sendgrid.byte_order_mark", "POST", "/webhooks/sendgrid", b"\xef\xbb\xbf" + js([GOOD_SG]), expect="accepted"
        ),  # RFC 8259: a parser may ignore it
        Case("sendgrid.unsigned", "POST", "/webhooks/sendgrid", sendgrid_batch(base), sign=False),
        Case("sendgrid.oversized", "POST", "/webhooks/sendgrid", js([GOOD_SG] * 40_000)),
    ]
    return cases


def inbound_form(*fields: tuple[str, bytes], boundary: str = "b0und") -> tuple[bytes, dict[str, str]]:
    body = (
        b"".join(
            b"--"
            + boundary.encode()
            + b'\r\nContent-Disposition: form-data; name="'
            + name.encode()
            + b'"\r\n\r\n'
            + value
            + b"\r\n"
            for name, value in fields
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


MIME = (
    b"From: Dana <dana@northwind.example>\r\nTo: sam@reply.flywheel.example\r\nSubject: Re: hi\r\n"
    b"Message-ID: <r1@northwind.example>\r\nDate: Tue, 24 Nov 2026 10:12:00 +0000\r\n\r\nYes please.\r\n"
)


def inbound_cases() -> list[Case]:
    path = f"/webhooks/sendgrid/inbound/{SECRETS['inbound_parse_token']}"
    parsed = [
        ("from", b"Dana <dana@northwind.example>"),
        ("to", b"sam@reply.flywheel.example"),
        ("subject", b"Re: hi"),
        ("text", b"Yes please"),
        ("headers", b"Message-ID: <p1@northwind.example>"),
    ]
    cases: list[Case] = []

    def add(name: str, body: bytes, headers: dict[str, str], expect: str = "4xx") -> None:
        cases.append(Case(f"inbound.{name}", "POST", path, body, headers, expect))

    def accept(name: str, body: bytes, headers: dict[str, str]) -> None:
        add(name, body, headers, "accepted")

    add("no_boundary", b"--x\r\n\r\n", {"Content-Type": "multipart/form-data"})
    add("boundary_mismatch", inbound_form(("email", MIME))[0], {"Content-Type": "multipart/form-data; boundary=zz"})
    add("json_body", js({"email": MIME.decode()}), {"Content-Type": "application/json"})
    add("text_plain", MIME, {"Content-Type": "text/plain"})
    add("no_fields", *inbound_form(("spam_score", b"0.1")))
    add("email_not_mime", *inbound_form(("email", b"\x00\x01\x02 not a message")))
    add("email_nul_header", *inbound_form(("email", MIME.replace(b"Subject: Re: hi", b"Subject: Re:\x00hi"))))
    accept("email_date_9999", *inbound_form(("email", MIME.replace(b"Tue, 24 Nov 2026", b"Fri, 31 Dec 9999"))))
    accept("email_date_garbage", *inbound_form(("email", MIME.replace(b"Tue, 24 Nov 2026 10:12:00 +0000", b"soon"))))
    add("email_to_foreign_domain", *inbound_form(("email", MIME.replace(b"reply.flywheel.example", b"evil.example"))))
    accept("email_from_bidi", *inbound_form(("email", MIME.replace(b"dana@", "da\u202ena@".encode()))))
    # an over-long Message-ID is kept under a hash of itself (a reply is never lost for its id's length)
    accept("email_message_id_5k", *inbound_form(("email", MIME.replace(b"<r1@", b"<" + b"r" * 5000 + b"@"))))
    accept(
        "email_refs_2000",
        *inbound_form(
            (
                "email",
                MIME.replace(b"Date:", b"References: " + b" ".join(b"<%d@x>" % i for i in range(2000)) + b"\r\nDate:"),
            )
        ),
    )
    accept(
        "email_bad_base64",
        *inbound_form(
            ("email", MIME.replace(b"\r\n\r\nYes", b"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!"))
        ),
    )
    accept(
        "email_bad_charset",
        *inbound_form(
            ("email", MIME.replace(b"\r\n\r\nYes", b"\r\nContent-Type: text/plain; charset=x-bogus-9\r\n\r\nYes"))
        ),
    )
    nested = b"Content-Type: multipart/mixed; boundary=n\r\n\r\n" * 1
    accept(
        "email_deep_multipart",
        *inbound_form(
            (
                "email",
                MIME.split(b"\r\n\r\n")[0]
                + b"\r\n"
                + nested
                + (b"--n\r\nContent-Type: multipart/mixed; boundary=n\r\n\r\n" * 2000),
            )
        ),
    )
    add("parsed_charsets_not_json", *inbound_form(*parsed, ("charsets", b"{nope")))
    accept("parsed_charset_unknown", *inbound_form(*parsed, ("charsets", b'{"text": "x-klingon"}')))
    add(
        "parsed_charset_utf16_odd",
        *inbound_form(*parsed[:3], ("text", b"\xff\xfeY\x00e"), ("charsets", b'{"text": "utf-16"}')),
    )
    add("parsed_envelope_not_json", *inbound_form(*parsed, ("envelope", b"[[[")))
    add("parsed_envelope_nested_deep", *inbound_form(*parsed, ("envelope", b"[" * 200_000)))
    add("parsed_from_nul", *inbound_form(("from", b"x\x00@northwind.example"), *parsed[1:]))
    accept("parsed_text_invalid_utf8", *inbound_form(*parsed[:3], ("text", b"\xff\xfe\xfd"), parsed[4]))
    accept("parsed_headers_huge", *inbound_form(*parsed[:4], ("headers", b"X-A: " + b"a" * 2_000_000)))
    add("urlencoded", b"email=hi", {"Content-Type": "application/x-www-form-urlencoded"})
    add("empty_body", b"", {"Content-Type": "multipart/form-data; boundary=b0und"})
    cases.append(
        Case("inbound.wrong_token", "POST", "/webhooks/sendgrid/inbound/wrong", *inbound_form(("email", MIME)))
    )
    return cases


CALENDLY = json.loads(load_event("webhooks_calendly_invitee_created.json")["body"])


def calendly(**changes: Any) -> bytes:
    body = json.loads(json.dumps(CALENDLY))
    for dotted, value in changes.items():
        target = body
        *parents, last = dotted.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    return js(body)


def calendly_cases() -> list[Case]:
    changes: dict[str, dict[str, Any]] = {
        "created_9999": {"created_at": "9999-12-31T00:00:00Z"},
        "created_1970": {"created_at": "1970-01-01T00:00:00Z"},
        "created_garbage": {"created_at": "tomorrow"},
        "start_9999": {"payload__scheduled_event__start_time": "9999-01-01T00:00:00Z"},
        "end_month_13": {"payload__scheduled_event__end_time": "2026-13-01T00:00:00Z"},
        "email_bidi": {"payload__email": f"dana{BIDI}@northwind.example"},
        "email_nul": {"payload__email": "d\x00@x.io"},
        "uri_10k": {"payload__uri": "https://api.calendly.com/" + "u" * 10_000},
        "uri_missing": {"payload__uri": None},
        "payload_list": {"payload": [1]},
        "event_number": {"event": 7},
        "tracking_list": {"payload__tracking": [1]},
        "utm_nul": {"payload__tracking__utm_content": "x\x00"},
    }
    cases = [
        Case(f"calendly.{name}", "POST", "/webhooks/calendly", calendly(**change)) for name, change in changes.items()
    ]
    cases += [
        Case("calendly.not_json", "POST", "/webhooks/calendly", b"<xml/>"),
        Case("calendly.deep", "POST", "/webhooks/calendly", deep(100_000)),
        Case("calendly.unsigned", "POST", "/webhooks/calendly", calendly(), sign=False),
        Case(
            "calendly.stale",
            "POST",
            "/webhooks/calendly",
            calendly(),
            sign=False,
            headers=calendly_headers(calendly(), timestamp=T0 - 3600),
        ),
    ]
    return cases


HUBSPOT_GOOD = {
    "eventId": 100,
    "subscriptionId": 1,
    "portalId": 5799819,
    "appId": 1,
    "occurredAt": T0 * 1000,
    "subscriptionType": "contact.creation",
    "attemptNumber": 0,
    "objectId": 1,
}


def hubspot_cases() -> list[Case]:
    base = {
        **HUBSPOT_GOOD,
        "eventId": 101,
        "subscriptionType": "deal.propertyChange",
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "objectId": 697680835,
    }
    bad: dict[str, Any] = {
        "occurred_1e20": {**base, "occurredAt": 10**20},
        "occurred_400_digits": {**base, "occurredAt": 10**400},
        "occurred_negative": {**base, "occurredAt": -1},
        "occurred_seconds": {**base, "occurredAt": T0 - 10**9},
        "occurred_string": {**base, "occurredAt": "now"},
        "object_path": {**base, "objectId": "../../contacts/1"},
        "object_query": {**base, "objectId": "1?archived=true"},
        "object_unicode_digits": {**base, "objectId": "\u0661\u0662"},
        "object_float": {**base, "objectId": 1.5},
        "object_negative": {**base, "objectId": -5},
        "event_id_long": {**base, "eventId": "e" * 300},
        "event_id_missing": {k: v for k, v in base.items() if k != "eventId"},
        "property_value_object": {**base, "propertyValue": {"a": 1}},
        "portal_nul": {**base, "portalId": "p\x00"},
        "not_object": "event",
    }
    cases = [
        Case(f"hubspot.{name}", "POST", "/webhooks/crm/hubspot", js([HUBSPOT_GOOD, item]), expect="quarantine")
        for name, item in bad.items()
    ]
    cases += [
        Case("hubspot.batch_101", "POST", "/webhooks/crm/hubspot", js([HUBSPOT_GOOD] * 101)),
        Case("hubspot.object_body", "POST", "/webhooks/crm/hubspot", js(HUBSPOT_GOOD)),
        Case("hubspot.nan", "POST", "/webhooks/crm/hubspot", raw_json('[{"eventId": NaN}]')),
        Case("hubspot.unsigned", "POST", "/webhooks/crm/hubspot", js([HUBSPOT_GOOD]), sign=False),
        Case(
            "hubspot.stale",
            "POST",
            "/webhooks/crm/hubspot",
            js([HUBSPOT_GOOD]),
            sign=False,
            headers=hubspot_headers(js([HUBSPOT_GOOD]), f"https://{HOST}/webhooks/crm/hubspot", (T0 - 3600) * 1000),
        ),
    ]
    return cases


PIPEDRIVE = json.loads(load_event("webhooks_pipedrive_deal_won.json")["body"])


def pipedrive(section: str, **changes: Any) -> bytes:
    body = json.loads(json.dumps(PIPEDRIVE))
    body[section].update(changes)
    return js(body)


def pipedrive_cases() -> list[Case]:
    cases = [
        Case(f"pipedrive.{name}", "POST", "/webhooks/crm/pipedrive", body)
        for name, body in {
            "value_abc": pipedrive("data", value="abc"),
            "value_1e15": pipedrive("data", value=1e15),
            "value_negative_huge": pipedrive("data", value=-(10**13)),
            "value_list": pipedrive("data", value=[1]),
            "won_time_month_13": pipedrive("data", won_time="2026-13-45"),
            "won_time_9999": pipedrive("data", won_time="9999-01-01 00:00:00"),
            "update_time_garbage": js(
                {
                    **PIPEDRIVE,
                    "meta": {**PIPEDRIVE["meta"], "timestamp": None},
                    "data": {**PIPEDRIVE["data"], "update_time": "garbage"},
                }
            ),
            "meta_ts_1e20": pipedrive("meta", timestamp=10**20),
            "meta_ts_400_digits": pipedrive("meta", timestamp=10**400),
            "meta_ts_negative": pipedrive("meta", timestamp=-5),
            "meta_ts_text": pipedrive("meta", timestamp="yesterday"),
            "person_path": pipedrive("data", person_id="../../users"),
            "person_negative": pipedrive("data", person_id=-1),
            "person_huge": pipedrive("data", person_id=10**30),
            "person_object_nul": pipedrive("data", person_id={"value": "1\x00"}),
            "meta_id_nul": pipedrive("meta", id="x\x00"),
            "company_nul": pipedrive("meta", company_id="c\x00"),
            "no_meta": js({"data": PIPEDRIVE["data"]}),
            "meta_list": js({**PIPEDRIVE, "meta": []}),
            "array_body": js([PIPEDRIVE]),
            "nan_token": raw_json(json.dumps(PIPEDRIVE)[:-1] + ', "x": NaN}'),
        }.items()
    ]
    # a CRM's odd field shapes are read leniently: the deal is kept without them
    cases += [
        Case(f"pipedrive.{name}", "POST", "/webhooks/crm/pipedrive", body, expect="accepted")
        for name, body in {
            "person_email_number": pipedrive("data", person_id={"value": 8, "email": 5}),
            "person_email_object": pipedrive("data", person_id={"value": 8, "email": {"value": "d@x.example"}}),
            "custom_fields_list": pipedrive("data", custom_fields=[1, 2]),
            "currency_object": pipedrive("data", currency={"x": 1}),
            "currency_huge": pipedrive("data", currency="E" * 100_000),
            "meta_id_long": pipedrive("meta", id="m" * 600),  # its key is a hash of the id
        }.items()
    ]
    cases.append(
        Case(
            "pipedrive.wrong_auth",
            "POST",
            "/webhooks/crm/pipedrive",
            js(PIPEDRIVE),
            sign=False,
            headers={"Authorization": "Basic " + base64.b64encode(b"pipedrive:wrong").decode()},
        )
    )
    return cases


SF_BODY = load_event("webhooks_salesforce_opportunity_won.json")["body"]
SF_PATH = f"/webhooks/crm/salesforce/{SECRETS['salesforce_token']}"
SF_SECOND = (
    '<Notification><Id>04l7F000008aeB0QAI</Id><sObject xsi:type="sf:Opportunity" '
    'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>0067F000003pmdXQAQ</sf:Id>{fields}'
    "<sf:IsClosed>true</sf:IsClosed><sf:IsWon>true</sf:IsWon></sObject></Notification>"
)


def salesforce_with(fields: str) -> bytes:
    return SF_BODY.replace("</Notification>", "</Notification>" + SF_SECOND.format(fields=fields), 1).encode()


def salesforce_cases() -> list[Case]:
    quarantined = {
        "amount_nan": "<sf:Amount>NaN</sf:Amount>",
        "amount_infinity": "<sf:Amount>Infinity</sf:Amount>",
        "amount_abc": "<sf:Amount>abc</sf:Amount>",
        "amount_1e15": "<sf:Amount>1e15</sf:Amount>",
        "amount_rounds_to_1e12": "<sf:Amount>999999999999.995</sf:Amount>",
        "close_month_13": "<sf:CloseDate>2026-13-45</sf:CloseDate>",
        "close_9999": "<sf:CloseDate>9999-12-31</sf:CloseDate>",
        "id_long": "<sf:Amount>1</sf:Amount>",
    }
    cases = [
        Case(f"salesforce.{name}", "POST", SF_PATH, salesforce_with(fields), expect="quarantine")
        for name, fields in quarantined.items()
    ]
    cases[-1].body = (cases[-1].body or b"").replace(b"04l7F000008aeB0QAI", b"N" * 80)
    # an address that is no address is no contact (the deal is kept, attributed by nothing)
    cases += [
        Case(
            "salesforce.email_bidi",
            "POST",
            SF_PATH,
            salesforce_with(f"<sf:Contact_Email__c>d{BIDI}@x.example</sf:Contact_Email__c>"),
            expect="accepted",
        ),
        Case(
            "salesforce.outcome_not_uuid",
            "POST",
            SF_PATH,
            salesforce_with("<sf:Outcome_Id__c>not-a-uuid</sf:Outcome_Id__c>"),
            expect="accepted",
        ),
    ]
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org'
        b'/soap/envelope/"><soapenv:Body>&lol3;</soapenv:Body></soapenv:Envelope>'
    )
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + SF_BODY.encode().split(
        b"?>", 1
    )[1].replace(b"<sf:StageName>", b"<sf:StageName>&xxe;")
    cases += [
        Case(
            "salesforce.notification_without_sobject",
            "POST",
            SF_PATH,
            SF_BODY.replace(
                "</Notification>", "</Notification><Notification><Id>04l7F000008aeB1QAI</Id></Notification>", 1
            ).encode(),
            expect="quarantine",
        ),
        Case("salesforce.billion_laughs", "POST", SF_PATH, laughs),
        Case("salesforce.xxe_file", "POST", SF_PATH, xxe),
        Case(
            "salesforce.dtd_only", "POST", SF_PATH, b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://evil/x.dtd"><x/>'
        ),
        Case("salesforce.not_xml", "POST", SF_PATH, b'{"json": true}'),
        Case("salesforce.truncated", "POST", SF_PATH, SF_BODY.encode()[:300]),
        Case("salesforce.no_notifications", "POST", SF_PATH, b"<Envelope><Body/></Envelope>"),
        Case("salesforce.no_org", "POST", SF_PATH, SF_BODY.replace("00D7F00000107XsUAI", "").encode()),
        Case("salesforce.foreign_org", "POST", SF_PATH, SF_BODY.replace("00D7F00000107Xs", "00D000000000001").encode()),
        Case("salesforce.wrong_token", "POST", "/webhooks/crm/salesforce/nope", SF_BODY.encode()),
        Case(
            "salesforce.utf16",
            "POST",
            SF_PATH,
            SF_BODY.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
            expect="accepted",
        ),  # XML declares its own encoding
        Case("salesforce.deep", "POST", SF_PATH, b"<a>" * 100_000 + b"</a>" * 100_000),
        Case("salesforce.nul_char_ref", "POST", SF_PATH, SF_BODY.replace("Closed Won", "&#0;").encode()),
    ]
    return cases


CRM_DEAL = {
    "event": "deal_won",
    "lead_email": "dana@northwind.example",
    "org_id": "acme",
    "deal_id": "D1",
    "value": "100.00",
    "currency": "USD",
    "occurred_at": "2026-11-24T10:00:00Z",
}


CRM_CHANGES: dict[str, dict[str, Any]] = {
    "value_1e12": {"value": "1000000000000"},
    "value_rounds_to_1e12": {"value": "999999999999.995"},
    "value_rounds_to_1e12_thousandths": {"value": "999999999999.999"},
    "value_negative": {"value": "-1"},
    "value_abc": {"value": "abc"},
    "value_nan_string": {"value": "NaN"},
    "value_infinity_string": {"value": "Infinity"},
    "currency_two": {"currency": "US"},
    "occurred_9999": {"occurred_at": "9999-01-01T00:00:00Z"},
    "occurred_naive": {"occurred_at": "2026-11-24T10:00:00"},
    "close_date_month_13": {"close_date": "2026-13-45"},
    "deal_id_long": {"deal_id": "d" * 129},
    "org_bad": {"org_id": "ac me"},
    "extra_field": {"colour": "red"},
    "no_link": {"lead_email": None},
    "email_bidi": {"lead_email": f"d{BIDI}@x.example"},
    "outcome_nul": {"outcome_id": "a\x00"},
    "meeting_on_deals_route": {"event": "meeting_booked"},
}


def crm_cases() -> list[Case]:
    cases = [
        Case(f"crm.{name}", "POST", "/webhooks/crm/deals", js({**CRM_DEAL, **change}))
        for name, change in CRM_CHANGES.items()
    ]
    cases += [
        Case("crm.nan_token", "POST", "/webhooks/crm/deals", raw_json(json.dumps(CRM_DEAL)[:-1] + ', "value": NaN}')),
        Case(
            "crm.meeting_id_long",
            "POST",
            "/webhooks/crm/meetings",
            js({"event": "meeting_booked", "lead_email": "d@x.example", "meeting_id": "m" * 129}),
        ),
        Case(
            "crm.meeting_start_0001",
            "POST",
            "/webhooks/crm/meetings",
            js(
                {
                    "event": "meeting_booked",
                    "lead_email": "d@x.example",
                    "meeting_id": "m",
                    "start_time": "0001-01-01T00:00:00Z",
                }
            ),
        ),
        Case("crm.unsigned", "POST", "/webhooks/crm/deals", js(CRM_DEAL), sign=False),
        Case(
            "crm.stale",
            "POST",
            "/webhooks/crm/deals",
            js(CRM_DEAL),
            sign=False,
            headers=standard_headers(js(CRM_DEAL), "msg_stale", T0 - 3600),
        ),
    ]
    return cases


def header_cases() -> list[Case]:
    """Signature headers no provider writes, on requests nobody signed: each a 401. Digits `int`
    refuses ("²" is a digit to `str.isdigit`), numbers of thousands of digits, and signatures that
    are not ASCII (`hmac.compare_digest` refuses to compare those as str)."""
    huge, sup2, accent = "9" * 5000, "\u00b2", "\u00e9"
    now = str(T0)
    cases = [
        Case(f"headers.hubspot_{name}", "POST", "/webhooks/crm/hubspot", js([HUBSPOT_GOOD]), headers, sign=False)
        for name, headers in {
            "ts_5000_digits": {"X-HubSpot-Signature-v3": "abc", "X-HubSpot-Request-Timestamp": huge},
            "ts_400_digits": {"X-HubSpot-Signature-v3": "abc", "X-HubSpot-Request-Timestamp": "9" * 400},
            "ts_superscript": {"X-HubSpot-Signature-v3": "abc", "X-HubSpot-Request-Timestamp": sup2},
            "signature_accent": {"X-HubSpot-Signature-v3": accent, "X-HubSpot-Request-Timestamp": now + "000"},
        }.items()
    ]
    cases += [
        Case(
            f"headers.calendly_{name}",
            "POST",
            "/webhooks/calendly",
            calendly(),
            {"Calendly-Webhook-Signature": h},
            sign=False,
        )
        for name, h in {
            "ts_5000_digits": f"t={huge},v1=ab",
            "ts_superscript": f"t={sup2},v1=ab",
            "signature_accent": f"t={now},v1={accent}",
        }.items()
    ]
    cases += [
        Case(f"headers.crm_{name}", "POST", "/webhooks/crm/deals", js(CRM_DEAL), headers, sign=False)
        for name, headers in {
            "ts_5000_digits": {"webhook-id": "m", "webhook-timestamp": huge, "webhook-signature": "v1,abc"},
            "ts_superscript": {"webhook-id": "m", "webhook-timestamp": sup2, "webhook-signature": "v1,abc"},
            "signature_accent": {"webhook-id": "m", "webhook-timestamp": now, "webhook-signature": "v1," + accent},
        }.items()
    ]
    cases += [
        Case(
            "headers.sendgrid_ts_superscript",
            "POST",
            "/webhooks/sendgrid",
            sendgrid_batch(GOOD_SG),
            {
                "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
                "X-Twilio-Email-Event-Webhook-Timestamp": sup2,
            },
            sign=False,
        ),
        Case(
            "headers.inbound_token_accent",
            "POST",
            f"/webhooks/sendgrid/inbound/{accent}",
            *inbound_form(("email", MIME)),
        ),
    ]
    return cases


def all_cases() -> list[Case]:
    return [
        *message_cases(),
        *read_cases(),
        *write_cases(),
        *sendgrid_cases(),
        *inbound_cases(),
        *calendly_cases(),
        *hubspot_cases(),
        *pipedrive_cases(),
        *salesforce_cases(),
        *crm_cases(),
        *header_cases(),
    ]


def signed(case: Case) -> dict[str, str]:
    headers = {"Host": HOST, **case.headers}
    body = case.body or b""
    if not case.sign:
        return headers
    if case.path == "/webhooks/sendgrid":
        headers.update(sendgrid_headers(body))
    elif case.path == "/webhooks/calendly":
        headers.update(calendly_headers(body))
    elif case.path == "/webhooks/crm/hubspot":
        headers.update(hubspot_headers(body, f"https://{HOST}{case.path}"))
    elif case.path in ("/webhooks/crm/deals", "/webhooks/crm/meetings"):
        headers.update(standard_headers(body, "msg_" + hashlib.sha256(body).hexdigest()[:24]))
    elif case.path == "/webhooks/crm/pipedrive":
        headers["Authorization"] = "Basic " + base64.b64encode(b"pipedrive:pd-pass").decode()
    return headers


def test_the_matrix_has_enough_cases() -> None:
    cases = all_cases()
    assert len(cases) >= 150 and len({c.name for c in cases}) == len(cases), len(cases)


@pytest.mark.integration
def test_every_bad_input_is_a_clean_refusal_or_a_quarantine(api: ApiClient, db, monkeypatch, capfd, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(FakeCrm()))
    configure(monkeypatch, MAX_BODY_BYTES=str(6 * 1024 * 1024), REPLIES_QUEUE_URL="https://sqs.local/q")
    failures = []
    for case in all_cases():
        before = db.execute(COUNTS).fetchone()
        quarantined_before = db.execute("SELECT count(*) AS n FROM quarantined_events").fetchone()["n"]
        status, body, _ = api.request(case.method, case.path, body=case.body, headers=signed(case))
        after = db.execute(COUNTS).fetchone()
        if status >= 500:
            failures.append(f"{case.name}: {status} {str(body)[:200]}")
        elif case.expect == "4xx":
            if not 400 <= status < 500 or not isinstance(body, dict) or not (body.get("error") or status == 403):
                failures.append(f"{case.name}: expected a 4xx JSON error, got {status} {str(body)[:200]}")
            elif after != before:
                failures.append(f"{case.name}: {status} but rows were written")
        elif case.expect == "accepted":
            if status != 200:
                failures.append(f"{case.name}: expected 200, got {status} {str(body)[:200]}")
        else:
            quarantined = db.execute("SELECT count(*) AS n FROM quarantined_events").fetchone()["n"]
            if status != 200 or quarantined != quarantined_before + 1:
                failures.append(
                    f"{case.name}: expected 200 and one quarantined event, got {status} "
                    f"({quarantined - quarantined_before} quarantined) {str(body)[:200]}"
                )
        db.execute("TRUNCATE outcome_events, quarantined_events, suppressions, outbox")
    # nothing personal in the logs of all these refusals: no address, no message or reply text
    logged = capfd.readouterr()
    records = [r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in caplog.records]
    text = logged.out + logged.err + "\n".join(records)
    assert len(records) > 200  # the handlers did log
    leaked = [
        marker
        for marker in ("northwind.example", "dana@", "Hi Dana", "Yes please", "Grüße", "x.example")
        if marker in text
    ]
    assert not leaked, [line for line in text.splitlines() if any(m in line for m in leaked)][:5]
    assert not failures, f"{len(failures)} of {len(all_cases())}:\n" + "\n".join(failures)

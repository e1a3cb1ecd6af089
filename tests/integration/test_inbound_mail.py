"""Real-client replies, auto-replies and bounces through POST /webhooks/sendgrid/inbound/{token},
in both Inbound Parse modes, on real PostgreSQL and moto SQS."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from tests import mail_helpers as mh
from tests.conftest import ROOT, load_event
from tests.integration.test_webhook_replies import queued, register, replies_queue, reply_row  # noqa: F401
from tests.unit.test_inbound_mail import EXPECTED

MODES = {"raw": mh.raw_post, "parsed": mh.parsed_post}


def post(message, mode: str, outcome_id: str = "OUTCOME_ID", envelope_from: str | None = None) -> tuple[int, dict]:
    event = mh.api_event(*MODES[mode](message, outcome_id, envelope_from))
    result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("client", ["outlook_cp1252", "thunderbird_latin1", "russian_base64", "japanese_iso2022"])
def test_a_reply_is_stored_decoded_and_cut_the_same_in_both_modes(db, replies_queue, client: str, mode: str) -> None:  # noqa: F811
    [outcome_id] = register()
    status, body = post(mh.CLIENTS[client](), mode, outcome_id)
    assert status == 200 and body["outcome_id"] == outcome_id and body["kind"] == "reply"
    row = reply_row(db, outcome_id)
    assert row["stage"] == "replied" and row["reply_text"] == EXPECTED[client]
    assert row["reply_original_text"].startswith(EXPECTED[client].split("\n")[0])
    assert len(row["reply_original_text"]) > len(row["reply_text"]) and "\r" not in row["reply_original_text"]
    [job] = queued(replies_queue)
    assert job["text"] == EXPECTED[client] and job["outcome_id"] == outcome_id
    payload = db.execute("SELECT payload FROM outcome_events WHERE provider = 'sendgrid_inbound'").fetchone()["payload"]
    assert payload["mode"] == mode and payload["text"] == row["reply_original_text"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_out_of_office_is_not_engagement(db, replies_queue, mode: str) -> None:  # noqa: F811
    [outcome_id] = register()
    status, body = post(mh.out_of_office(), mode)  # linked by In-Reply-To
    assert status == 200 and body["outcome_id"] == outcome_id and body["kind"] == "auto_reply"
    row = reply_row(db, outcome_id)
    assert row["stage"] == "auto_replied" and row["replied_at"] is None and row["reply_text"] is None
    assert (row["auto_reply_category"], row["lead_returns_on"]) == ("out_of_office", date(2026, 12, 7))
    assert row["delivered_at"] is not None  # an automatic reply still proves delivery
    assert (row["training_label"], row["training_weight"]) == ("neutral", 1.0)
    assert queued(replies_queue) == []  # nothing for the classifier (nor the LLM bill) to do
    event = load_event("messages_get.json")
    event["pathParameters"], event["path"] = {"outcome_id": outcome_id}, f"/messages/{outcome_id}"
    shown = json.loads(invoke("MessagesFunction", event, ROOT / "template.yaml")["body"])
    assert (shown["lead_returns_on"], shown["auto_reply_category"]) == ("2026-12-07", "out_of_office")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_hard_bounce_dsn_marks_the_original_message(db, replies_queue, mode: str) -> None:  # noqa: F811
    [outcome_id] = register()
    status, body = post(mh.bounce(), mode)
    assert status == 200 and body["kind"] == "bounce" and body["applied"] == 1
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["bounce_type"], row["bounce_status"]) == ("bounced", "bounce", "5.1.1")
    assert "User unknown" in row["bounce_reason"] and row["replied_at"] is None
    assert row["training_label"] == "negative" and queued(replies_queue) == []


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dsn", ["exchange_ndr", "gmail_dsn", "global_dsn", "forwarded_dsn"])
def test_dsns_from_every_mta_bounce_their_message(db, replies_queue, mode: str, dsn: str) -> None:  # noqa: F811
    """Attributed by the original Message-ID, else by the address the message was sent to (the
    Original-Recipient of a forwarded lead), never counted as a reply."""
    [outcome_id] = register()
    status, body = post(getattr(mh, dsn)(), mode)  # the reply+ address carries no outcome id
    assert status == 200 and body["kind"] == "bounce" and body["applied"] == 1
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["bounce_type"], row["replied_at"]) == ("bounced", "bounce", None)
    assert queued(replies_queue) == []


def test_a_dsn_returned_to_the_reply_address_names_its_message(db, replies_queue) -> None:  # noqa: F811
    """A report that names neither our Message-ID nor the lead (the lead forwarded to a dead mailbox,
    and the MTA reports only that one) still reaches its message through reply+<outcome_id>."""
    [outcome_id] = register()
    message = mh.forwarded_dsn()
    [_, status_part] = [p for p in message.get_payload() if isinstance(p, Message)]
    [_, recipient] = [p for p in status_part.get_payload() if isinstance(p, Message)]
    recipient.replace_header("Original-Recipient", "rfc822;dana.private@mail.example")
    status, body = post(message, "raw", outcome_id)
    assert status == 200 and body["applied"] == 1
    assert reply_row(db, outcome_id)["bounce_status"] == "5.2.2"


def test_soft_and_delayed_dsns(db, replies_queue) -> None:  # noqa: F811
    [outcome_id] = register()
    post(mh.bounce("4.4.1", "delayed", "smtp; 451 4.4.1 try again later"), "raw")
    row = reply_row(db, outcome_id)
    assert row["deferred_count"] == 1 and row["bounced_at"] is None
    post(mh.bounce("4.4.7", "failed", "smtp; 451 4.4.7 gave up after 5 days"), "parsed")
    row = reply_row(db, outcome_id)
    assert (row["bounce_type"], row["bounce_status"], row["stage"]) == ("soft", "4.4.7", "bounced")
    post(mh.bounce(), "raw")  # a hard bounce outweighs a soft one
    assert reply_row(db, outcome_id)["bounce_type"] == "bounce"


def test_an_auto_reply_recognised_by_content_is_not_engagement_either(db, replies_queue) -> None:  # noqa: F811
    """No auto-reply headers: the classifier reads it as out-of-office and the outcome follows."""
    [outcome_id] = register()
    message = mh.apple_mail()
    message.set_payload("I'm on annual leave until 14 December and not checking email.\n")
    status, _ = post(message, "raw")
    [job] = queued(replies_queue)
    records = mh.classifier_records([job])
    assert invoke("ClassifierFunction", {"Records": records}, ROOT / "template.yaml") == {"batchItemFailures": []}
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["auto_reply_category"], row["replied_at"]) == ("auto_replied", "out_of_office", None)
    assert row["lead_returns_on"] == date(2026, 12, 14)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("Tue, 05 Mar 2024 10:00:00 +0000", "2024-02-29"),
        # a Date header over a day ahead of its arrival is not believed (the time received is used:
        # November 2026, and February 2027 has no 29th); tests/unit/test_reply_dates.py reads 2028
        ("Sun, 05 Mar 2028 10:00:00 +0000", None),
        ("Wed, 05 Mar 2025 10:00:00 +0000", None),
    ],
)
def test_an_out_of_office_naming_29_february_is_stored(
    db,
    replies_queue,  # noqa: F811
    mode: str,
    sent: str,
    expected: str | None,
) -> None:
    # the review's auto-reply: sent after a leap day, it names that leap day (it was a 500)
    register()
    message = mh.out_of_office()
    message.set_payload("I am out of the office until 29 February with limited access to email.\n")
    message.replace_header("Date", sent)
    status, body = post(message, mode)
    assert status == 200 and body["kind"] == "auto_reply"
    [data] = db.execute("SELECT data FROM outcome_events WHERE provider = 'sendgrid_inbound'").fetchone().values()
    assert (data["category"], data["return_date"]) == ("out_of_office", expected)


# --- hostile and unusual mail: never a 500, the reply kept ----------------------------------------

HOSTILE_TEXT = "Caf\u00e9 at 3 works. Our API sends \\u0000 for an empty field, ignore it.\n\nDana\n"
ENVELOPE_TO = b'{"to": ["reply+OUTCOME@reply.flywheel.example"]'
ENVELOPE_FROM = b'"from": "dana.reyes@northwind.example"}'
ATTACHMENT_INFO = b'{"attachment1": {"filename": "contract 2026.pdf", "type": "application/pdf"}}'


def hostile_reply() -> Message:
    """Gmail's reply with a PDF attached, its text non-ASCII and quoting a JSON escape."""
    message = mh.with_attachment()
    parts = message.get_payload()
    assert isinstance(parts, list)
    parts[0] = mh._text(HOSTILE_TEXT, "utf-8", "quoted-printable")
    return message


def _header_line(new: bytes, before: bytes = b"In-Reply-To:"):
    """Add a header line in front of another, with the line ending of the block (CRLF raw, LF parsed)."""

    def insert(body: bytes, mode: str) -> bytes:
        return body.replace(before, new + (b"\r\n" if mode == "raw" else b"\n") + before, 1)

    return insert


def _swap(old: bytes, new: bytes):
    def swap(body: bytes, mode: str) -> bytes:
        assert old in body, (old, mode)
        return body.replace(old, new)

    return swap


def _charset(name: str):
    """The text declared in a charset that is no text encoding (or no mail charset)."""

    def declare(body: bytes, mode: str) -> bytes:
        old, new = (
            (b'charset="utf-8"', f'charset="{name}"'.encode())
            if mode == "raw"
            else (b'"text": "utf-8"', f'"text": "{name}"'.encode())
        )
        assert old in body, mode
        return body.replace(old, new, 1)

    return declare


HOSTILE: dict[str, tuple[Any, tuple[str, ...]]] = {
    "envelope_to_null": (_swap(ENVELOPE_TO, b'{"to": null'), ("raw", "parsed")),
    "envelope_to_number": (_swap(ENVELOPE_TO, b'{"to": 5'), ("raw", "parsed")),
    "envelope_to_numbers": (_swap(ENVELOPE_TO, b'{"to": [5, null, {"a": 1}]'), ("raw", "parsed")),
    "envelope_from_object": (_swap(ENVELOPE_FROM, b'"from": {"address": 1}}'), ("raw", "parsed")),
    "attachment_info_strings": (_swap(ATTACHMENT_INFO, b'{"attachment1": "x"}'), ("parsed",)),
    "attachment_info_numbers": (_swap(ATTACHMENT_INFO, b'{"attachment1": {"filename": 5, "type": 7}}'), ("parsed",)),
    "charsets_not_strings": (_swap(b'"text": "utf-8"', b'"text": {"name": "utf-8"}'), ("parsed",)),
    "message_id_at_only": (
        _swap(b"Message-ID: <CAF=dana.attach.1@mail.gmail.com>", b"Message-ID: <@>"),
        ("raw", "parsed"),
    ),
    "message_id_empty": (
        _swap(b"Message-ID: <CAF=dana.attach.1@mail.gmail.com>", b"Message-ID: <>"),
        ("raw", "parsed"),
    ),
    # the parsed-mode `from` field stays fine: only the header block's From is broken
    "from_broken_encoded_word": (
        _swap(b"From: Dana Reyes <dana.reyes@northwind.example>", b"From: =?utf-8?q?=E2?= <"),
        ("raw", "parsed"),
    ),
    "cc_broken_encoded_word": (_header_line(b"Cc: =?utf-8?q?=E2?= <"), ("raw", "parsed")),
    "attachment_name_undefined_charset": (
        _swap(b'filename="contract 2026.pdf"', b"filename*=undefined''contract.pdf"),
        ("raw", "parsed"),
    ),
    **{
        f"charset_{name}": (_charset(name), ("raw", "parsed"))
        for name in (
            "base64",
            "x-base64",
            "zlib",
            "hex",
            "rot13",
            "unicode_escape",
            "raw_unicode_escape",
            "punycode",
            "undefined",
        )
    },
}


@pytest.mark.parametrize(("case", "mode"), [(case, mode) for case in sorted(HOSTILE) for mode in HOSTILE[case][1]])
def test_malformed_or_unusual_mail_keeps_the_reply(db, replies_queue, case: str, mode: str) -> None:  # noqa: F811
    """Headers CPython's email package cannot read, envelope / attachment-info / charsets members of
    another shape and charsets that name no text encoding: never a 500 (SendGrid would retry and
    finally drop the reply), and the reply is stored with its text readable."""
    change = HOSTILE[case][0]
    [outcome_id] = register()
    content_type, body = MODES[mode](hostile_reply(), outcome_id)
    body = change(body.replace(outcome_id.encode(), b"OUTCOME"), mode).replace(b"OUTCOME", outcome_id.encode())
    result = invoke("WebhooksFunction", mh.api_event(content_type, body), ROOT / "template.yaml")
    status, answer = result["statusCode"], json.loads(result["body"])
    assert status == 200, answer
    assert answer["outcome_id"] == outcome_id and answer["kind"] == "reply" and answer["stored"] == 1
    row = reply_row(db, outcome_id)
    assert row["stage"] == "replied"
    assert row["reply_text"].startswith("Caf\u00e9 at 3 works. Our API sends \\u0000 for an empty field")
    [job] = queued(replies_queue)
    assert job["text"] == row["reply_text"]


def test_a_dsn_whose_attachment_info_is_of_another_shape_still_bounces(db, replies_queue) -> None:  # noqa: F811
    """The file parts name their own media types: attachment-info members that are no strings say nothing."""
    [outcome_id] = register()
    content_type, body = mh.parsed_post(mh.bounce())
    start = body.index(b'{"attachment1"')
    info = json.loads(body[start : body.index(b"\r\n", start)])
    body = body.replace(json.dumps(info).encode(), json.dumps({k: {"type": 7, "filename": 1} for k in info}).encode())
    result = invoke("WebhooksFunction", mh.api_event(content_type, body), ROOT / "template.yaml")
    answer = json.loads(result["body"])
    assert result["statusCode"] == 200 and answer["kind"] == "bounce" and answer["applied"] == 1, answer
    assert reply_row(db, outcome_id)["bounce_status"] == "5.1.1"


def test_replies_whose_message_id_names_no_message_are_not_taken_for_one_another(db, replies_queue) -> None:  # noqa: F811
    """`Message-ID: <@>` is no key: two different replies carrying it are both kept."""
    [outcome_id] = register()
    for text in ("Yes, call me on Tuesday.", "Sorry, Wednesday is better."):
        message = mh.apple_mail()
        message.replace_header("Message-ID", "<@>")
        message.set_payload(text + "\n")
        status, body = post(message, "raw", outcome_id)
        assert status == 200 and body["stored"] == 1 and body["duplicates"] == 0, body
    keys = [r["event_key"] for r in db.execute("SELECT event_key FROM outcome_events ORDER BY event_key")]
    # the content's hash, within the organisation the reply reached
    assert len(keys) == 2 and all(k.startswith("acme|sha256:") for k in keys), keys


@pytest.mark.parametrize(
    "sent",
    [
        "Thu, 01 Jan 1970 00:00:00 +0000",  # a device whose clock was reset
        "Mon, 31 Dec 1999 23:00:00 +0000",
        "Tue, 01 Jan 2150 00:00:00 +0000",
        "Fri, 31 Dec 9999 23:59:59 +0000",
        "Wed, 01 Jan 2098 00:00:00 +0000",  # in range, but decades after it arrived
    ],
)
def test_a_reply_with_an_impossible_date_is_stored_as_received(db, replies_queue, sent: str) -> None:  # noqa: F811
    [outcome_id] = register()
    message = mh.apple_mail()
    message.replace_header("Date", sent)
    before = datetime.now(UTC)
    status, body = post(message, "raw", outcome_id)
    assert status == 200 and body["stored"] == 1, body
    replied_at = reply_row(db, outcome_id)["replied_at"]
    assert before <= replied_at <= datetime.now(UTC)


@pytest.mark.parametrize("ahead", [None, timedelta(hours=6)])
def test_a_reply_keeps_its_own_date_when_it_is_a_possible_one(db, replies_queue, ahead: timedelta | None) -> None:  # noqa: F811
    """Written before it arrived, or by a clock a few hours fast: the Date header is believed."""
    [outcome_id] = register()
    message = mh.apple_mail()  # written 2026-11-24 10:12 UTC
    written = datetime(2026, 11, 24, 10, 12, tzinfo=UTC)
    if ahead is not None:
        written = (datetime.now(UTC) + ahead).replace(microsecond=0)
        message.replace_header("Date", format_datetime(written))
    status, body = post(message, "raw", outcome_id)
    assert status == 200 and body["stored"] == 1, body
    assert reply_row(db, outcome_id)["replied_at"] == written


def _events(db) -> list[dict]:
    return db.execute(
        "SELECT event_type, status, data FROM outcome_events WHERE provider = 'sendgrid_inbound' ORDER BY event_type"
    ).fetchall()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("client", ["read_receipt_thunderbird", "read_receipt_outlook"])
def test_a_read_receipt_is_kept_and_is_no_reply(db, replies_queue, mode: str, client: str) -> None:  # noqa: F811
    """RFC 8098: "the message was displayed" is neither a reply (nobody wrote) nor engagement."""
    [outcome_id] = register()
    status, body = post(getattr(mh, client)(), mode, outcome_id)
    assert status == 200 and body["kind"] == "receipt" and body["ignored"] == 1, body
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["replied_at"], row["auto_replied_at"], row["reply_category"]) == (
        "sent",
        None,
        None,
        None,
    )
    assert (row["training_label"], row["training_weight"]) == ("neutral", 1.0) and queued(replies_queue) == []
    [event] = _events(db)
    assert (event["event_type"], event["status"]) == ("mdn_displayed", "ignored")
    assert event["data"]["disposition"] == "manual-action/MDN-sent-manually; displayed"
    assert event["data"]["original_message_id"] == "send-7f3a-1001@mail.acme.example"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("bounce", "envelope_from"),
    [("qmail_bounce", ""), ("yahoo_bounce", ""), ("exim_bounce", None), ("qmail_bounce", None)],
)
@pytest.mark.parametrize("addressed", [True, False])
def test_plain_text_bounces_are_hard_bounces(
    db,
    replies_queue,  # noqa: F811
    mode: str,
    bounce: str,
    envelope_from: str | None,
    addressed: bool,
) -> None:
    """qmail, Yahoo and Exim bounce without an RFC 3464 report: the text names the failed recipient
    and a 5.x.x status; attributed by reply+<outcome_id>, else by the returned copy's Message-ID."""
    [outcome_id] = register()
    status, body = post(getattr(mh, bounce)(), mode, outcome_id if addressed else "OUTCOME_ID", envelope_from)
    assert status == 200 and body["kind"] == "bounce" and body["applied"] == 1, body
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["bounce_type"], row["bounce_status"]) == ("bounced", "bounce", "5.1.1")
    assert row["replied_at"] is None and row["auto_replied_at"] is None and queued(replies_queue) == []
    [event] = _events(db)
    assert event["data"]["recipient"] == "dana.reyes@northwind.example" and event["data"]["source"] == "bounce_text"


def test_a_person_forwarding_a_bounce_is_a_reply(db, replies_queue) -> None:  # noqa: F811
    [outcome_id] = register()
    status, body = post(mh.forwarded_bounce_from_a_person(), "raw", outcome_id)
    assert status == 200 and body["kind"] == "reply"
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["bounce_type"]) == ("replied", None)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("iso2022_nec", "ご連絡ありがとうございます。㈱ノースウィンドの佐藤です。①資料 ②お見積りをお送りください。"),
        ("windows_31j", "資料を送ってください。来週火曜日は空いています。"),
        ("hebrew_logical", "תודה, אני מעוניין. שלח לי הצעת מחיר."),
    ],
)
def test_charsets_as_windows_and_java_label_them(db, replies_queue, mode: str, client: str, expected: str) -> None:  # noqa: F811
    [outcome_id] = register()
    status, _ = post(getattr(mh, client)(), mode, outcome_id)
    row = reply_row(db, outcome_id)
    assert status == 200 and row["reply_text"] == expected and "\x1b" not in row["reply_original_text"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_declined_invitation_is_a_not_now_answer(db, replies_queue, mode: str) -> None:  # noqa: F811
    """Outlook's "Declined:" has an empty text part: it is the lead's answer, classified by what the
    iCalendar REPLY says, never a reply without a category."""
    [outcome_id] = register()
    status, body = post(mh.calendar_answer("DECLINED"), mode, outcome_id)
    assert status == 200 and body["kind"] == "calendar", body
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["reply_category"], row["reply_classification_source"]) == (
        "replied",
        "not_now",
        "calendar",
    )
    assert row["training_label"] == "neutral" and queued(replies_queue) == []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_accepted_invitation_books_the_meeting_and_a_decline_cancels_it(db, replies_queue, mode: str) -> None:  # noqa: F811
    [outcome_id] = register()
    status, body = post(mh.calendar_answer("ACCEPTED"), mode, outcome_id)
    assert status == 200 and body["kind"] == "calendar" and body["applied"] == 1, body
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["replied_at"], row["training_label"]) == ("meeting_booked", None, "positive")
    assert row["meeting_scheduled_start"] == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    assert queued(replies_queue) == []
    declined = mh.calendar_answer("DECLINED")
    declined.replace_header("Date", format_datetime(datetime(2026, 11, 25, 9, 0, tzinfo=UTC)))
    post(declined, mode, outcome_id)
    row = reply_row(db, outcome_id)
    assert row["meeting_canceled_at"] is not None and row["stage"] == "replied" and row["reply_category"] == "not_now"


def test_a_tentative_answer_is_interested_and_a_comment_is_read_by_the_classifier(db, replies_queue) -> None:  # noqa: F811
    [outcome_id] = register()
    post(mh.calendar_answer("TENTATIVE"), "raw", outcome_id)
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["reply_category"], row["training_label"]) == ("replied", "interested", "positive")
    [other] = register()
    status, body = post(mh.calendar_answer("DECLINED", "Can't make Tuesday - could we do Thursday?\n"), "parsed", other)
    assert status == 200 and body["kind"] == "reply"
    [job] = queued(replies_queue)
    assert job["outcome_id"] == other and job["text"].startswith("Can't make Tuesday")
    assert reply_row(db, other)["reply_category"] is None  # the classifier's to say

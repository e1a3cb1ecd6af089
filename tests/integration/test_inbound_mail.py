"""Real-client replies, auto-replies and bounces through POST /webhooks/sendgrid/inbound/{token},
in both Inbound Parse modes, on real PostgreSQL and moto SQS."""

from __future__ import annotations

import json
from datetime import date
from email.message import Message

import pytest

from flywheel.local.invoke import invoke
from tests import mail_helpers as mh
from tests.conftest import ROOT, load_event
from tests.integration.test_webhook_replies import queued, register, replies_queue, reply_row  # noqa: F401
from tests.unit.test_inbound_mail import EXPECTED

MODES = {"raw": mh.raw_post, "parsed": mh.parsed_post}


def post(message, mode: str, outcome_id: str = "OUTCOME_ID") -> tuple[int, dict]:
    result = invoke("WebhooksFunction", mh.api_event(*MODES[mode](message, outcome_id)), ROOT / "template.yaml")
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
    record = {
        "messageId": "m-1",
        "receiptHandle": "r",
        "body": json.dumps(job),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:replies",
        "awsRegion": "us-east-1",
    }
    assert invoke("ClassifierFunction", {"Records": [record]}, ROOT / "template.yaml") == {"batchItemFailures": []}
    row = reply_row(db, outcome_id)
    assert (row["stage"], row["auto_reply_category"], row["replied_at"]) == ("auto_replied", "out_of_office", None)
    assert row["lead_returns_on"] == date(2026, 12, 14)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("Tue, 05 Mar 2024 10:00:00 +0000", "2024-02-29"),
        ("Sun, 05 Mar 2028 10:00:00 +0000", "2028-02-29"),
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

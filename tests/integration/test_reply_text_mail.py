"""What is stored and classified as the lead's reply, for replies as real clients build them: no text
of their own (an attachment, "Sent from my iPhone" above the quote), bottom-posted (Thunderbird),
inline answers, a "Thanks!" line after the greeting, a corporate disclaimer. WebhooksFunction ->
RepliesQueue -> ClassifierFunction on real PostgreSQL and moto SQS, in both Inbound Parse modes.

Our own message, quoted back, must never be stored, classified or trained on as the lead's words."""

from __future__ import annotations

from email.encoders import encode_base64
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart

import pytest

from flywheel.local.invoke import invoke
from tests import mail_helpers as mh
from tests.conftest import ROOT
from tests.integration.test_webhook_replies import queued, register, replies_queue, reply_row  # noqa: F401

MODES = {"raw": mh.raw_post, "parsed": mh.parsed_post}
SUBJECT = "Re: Dana, closing the books 3 days faster"
ATTRIBUTION = "On Tue, 24 Nov 2026 at 10:12, Sam Lee <sam@acme.example> wrote:"
PITCH = (
    "> Hi Dana,\n>\n> Finance teams at companies like Northwind cut month-end close by three days with Acme.\n"
    "> Would you be open to a 15-minute call next week to see how?\n>\n> Best,\n> Sam\n"
)
PITCH_WORDS = "Finance teams at companies like Northwind"


def _plain(text: str, message_id: str, **extra: str) -> Message:
    return mh._headers(mh._text(text, "utf-8", "quoted-printable"), SUBJECT, message_id, **extra)


def gmail_attachment_only() -> Message:
    """Gmail web, a PDF attached and nothing typed: the text part is an empty line and the quote."""
    alternative = MIMEMultipart("alternative", boundary="000000000000f1e2d3")
    alternative.attach(mh._text(f"\n\n{ATTRIBUTION}\n\n{PITCH}", "utf-8", "quoted-printable"))
    alternative.attach(
        mh._html(
            '<div dir="ltr"><br></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            "On Tue, 24 Nov 2026 at 10:12, Sam Lee &lt;sam@acme.example&gt; wrote:<br></div>"
            '<blockquote class="gmail_quote">Hi Dana, Finance teams at companies like Northwind...</blockquote></div>'
        )
    )
    msg = MIMEMultipart("mixed", boundary="000000000000a4b5c6")
    msg.attach(alternative)
    pdf = MIMEBase("application", "pdf")
    pdf.set_payload(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    encode_base64(pdf)
    pdf.add_header("Content-Disposition", "attachment", filename="vendor-contract.pdf")
    msg.attach(pdf)
    return mh._headers(msg, SUBJECT, "<CAF=dana.attachment.only@mail.gmail.com>")


def iphone_signature_only() -> Message:
    """iPhone Mail, sent without typing: its signature above the '>'-quoted original."""
    text = f"\n\nSent from my iPhone\n\n> On 24 Nov 2026, at 10:12, Sam Lee <sam@acme.example> wrote:\n>\n{PITCH}"
    msg = _plain(text, "<E5F6A7B8-IPHONE@northwind.example>", X_Mailer="iPhone Mail (22B91)")
    msg.set_param("format", "flowed")
    return msg


def thunderbird_bottom_posted() -> Message:
    text = f"On 24/11/2026 10:12, Sam Lee wrote:\n{PITCH}\nNot interested, we just signed with a competitor.\n\nDana\n"
    return _plain(text, "<7a8b9c0d.bottom@northwind.example>", User_Agent="Mozilla Thunderbird")


def gmail_inline_answers() -> Message:
    text = (
        f"Hi Sam, answers inline.\n\n{ATTRIBUTION}\n\n> Would you be open to a 15-minute call next week?\n\n"
        "No. We already use BlackLine and are happy with it.\n\n> Is month-end close a priority?\n\nNot this year.\n"
    )
    return _plain(text, "<CAF=dana.inline@mail.gmail.com>")


def thanks_after_greeting() -> Message:
    text = f"Hi Sam,\n\nThanks!\nLet's talk Tuesday at 2pm.\nSend me an invite.\n\nDana\n\n{ATTRIBUTION}\n\n{PITCH}"
    return _plain(text, "<CAF=dana.thanks@mail.gmail.com>")


def outlook_disclaimer() -> Message:
    text = (
        "Not right now, maybe next quarter.\n\nDana Reyes\nCFO | Northwind\n\n"
        "This message is intended only for the addressee. If you have received this email in error, please notify "
        "the sender and delete it from your system. You must not copy, forward or disclose its contents.\n\n"
        "________________________________\nFrom: Sam Lee <sam@acme.example>\nSent: Tuesday, November 24, 2026 10:12 AM\n"
        "To: Dana Reyes <dana.reyes@northwind.example>\nSubject: Dana, closing the books 3 days faster\n\n"
        + PITCH.replace("> ", "").replace(">", "")
    )
    return mh._headers(
        mh._text(text, "windows-1252", "quoted-printable"),
        "RE: Dana, closing the books 3 days faster",
        "<DB9PR01MB5678.disclaimer@northwind.example>",
        Thread_Index="AQHZ5678",
    )


def through(db, url: str, message: Message, mode: str) -> tuple[dict, list[dict]]:
    [outcome_id] = register()
    result = invoke("WebhooksFunction", mh.api_event(*MODES[mode](message, outcome_id)), ROOT / "template.yaml")
    assert result["statusCode"] == 200, result["body"]
    jobs = queued(url)
    records = mh.classifier_records(jobs)
    if records:
        assert invoke("ClassifierFunction", {"Records": records}, ROOT / "template.yaml") == {"batchItemFailures": []}
    return reply_row(db, outcome_id), jobs


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("client", [gmail_attachment_only, iphone_signature_only], ids=lambda c: c.__name__)
def test_a_reply_without_text_of_its_own_is_an_empty_reply_never_our_pitch(db, replies_queue, client, mode) -> None:  # noqa: F811
    row, jobs = through(db, replies_queue, client(), mode)
    assert jobs == []  # nothing to classify: the quoted history is ours
    assert (row["stage"], row["reply_text"]) == ("replied", "")
    assert row["replied_at"] is not None and PITCH_WORDS in row["reply_original_text"]
    # recorded as a neutral reply, not one left unclassified for ever
    assert (row["reply_category"], row["reply_classification_source"]) == ("other", "empty")
    assert (row["training_label"], row["training_weight"]) == ("neutral", 1.0)
    unclassified = db.execute(
        "SELECT count(*) AS n FROM outcome_labels WHERE replied_at IS NOT NULL AND reply_category IS NULL"
    ).fetchone()
    assert unclassified["n"] == 0


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("client", "expected", "not_category"),
    [
        (thunderbird_bottom_posted, "Not interested, we just signed with a competitor.\n\nDana", "interested"),
        (
            gmail_inline_answers,
            "Hi Sam, answers inline.\n\nNo. We already use BlackLine and are happy with it.\n\nNot this year.",
            "interested",
        ),
        (thanks_after_greeting, "Hi Sam,\n\nThanks!\nLet's talk Tuesday at 2pm.\nSend me an invite.\n\nDana", "other"),
        (outlook_disclaimer, "Not right now, maybe next quarter.\n\nDana Reyes\nCFO | Northwind", "auto_reply"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_only_the_leads_own_lines_are_stored_and_classified(
    db,
    replies_queue,  # noqa: F811
    client,
    expected: str,
    not_category: str,
    mode: str,
) -> None:
    row, [job] = through(db, replies_queue, client(), mode)
    assert row["reply_text"] == job["text"] == expected
    assert PITCH_WORDS not in row["reply_text"]
    assert row["stage"] == "replied" and row["reply_category"] not in (None, not_category)

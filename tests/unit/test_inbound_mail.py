"""Inbound Parse, both modes over the same real-client messages: decoded by charset, newlines
normalised, quote and signature cut, auto-replies and DSNs recognised."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.header import Header

import pytest

from flywheel.errors import InvalidInput, MalformedPayload
from flywheel.webhooks.inbound import parse_mail, to_events
from tests import mail_helpers as mh

EXPECTED = {
    "gmail": "Hi Sam,\n\nThis is timely \u2013 we\u2019re re-evaluating our close process this quarter.\n"
    "Tuesday at 2pm works, send an invite.\n\nDana",
    "outlook_cp1252": "We\u2019d pay \u20ac5k a year for this if the numbers hold \u2013 send me the pricing sheet.",
    "apple_mail": "Yes, let\u2019s talk. Thursday after 3 works for me.",
    "thunderbird_latin1": "Bonjour Sam,\n\nTr\u00e8s int\u00e9ress\u00e9 par votre proposition. Envoyez-moi une "
    "pr\u00e9sentation, s'il vous pla\u00eet.",
    "outlook_german_cp1252": "Hallo Herr Lee,\n\nbitte melden Sie sich im Januar wieder \u2013 aktuell haben wir keine "
    "Kapazit\u00e4t.",
    "russian_base64": "Добрый день, Сэм!\n\nИнтересно. Пришлите, пожалуйста, презентацию и цены.",
    "japanese_base64": "Sam様\n\nご連絡ありがとうございます。資料を送っていただけますか。\n\n佐藤",
    "japanese_iso2022": "了解しました。来週の火曜日にお電話ください。\n\n山田",
    "with_attachment": "Here's our current vendor contract so you can compare. Can you beat it?\n\nDana",
}
MODES = {"raw": mh.raw_post, "parsed": mh.parsed_post}


@pytest.mark.parametrize("client", sorted(EXPECTED))
def test_both_modes_store_the_same_new_text_and_keep_the_original(client: str) -> None:
    message = mh.CLIENTS[client]()
    mails = {mode: parse_mail(*post(message)) for mode, post in MODES.items()}
    for mode, mail in mails.items():
        assert mail.text == EXPECTED[client], mode
        assert "\r" not in mail.full_text and "\ufffd" not in mail.full_text, mode
        assert mail.full_text.startswith(EXPECTED[client].split("\n")[0]) and len(mail.full_text) > len(mail.text)
        assert mail.automated is None and mail.report is None
        assert mail.message_id and mail.references == ["send-7f3a-1001@mail.acme.example"] * 2
        assert mail.sender == "dana.reyes@northwind.example"
        assert "reply+outcome_id@reply.flywheel.example" in mail.recipients
    assert mails["raw"].full_text.strip() == mails["parsed"].full_text.strip()
    assert mails["raw"].subject == mails["parsed"].subject


# what the lead wrote, for the layouts added by the review of #12 (see tests/mail_helpers.py)
MORE_EXPECTED = {
    "yahoo_android": "Sounds good, let's talk Thursday.",
    "spark": "Can you send pricing?",
    "outlook_mobile_german": "Passt, rufen Sie mich Dienstag an.",
    "apple_mail_japanese": "承知しました。資料をお送りください。",
    "apple_mail_dutch": "Stuur me de prijzen maar.",
    "thunderbird_koi8r": "Интересно, пришлите цены.",
    "outlook_russian_cp1251": "Спасибо, пока не актуально. Напишите в марте.",
    "outlook_japanese_cp932": "①価格表 ②導入事例 をお送りください～",
    "outlook_chinese_gbk": "可以，下周三下午约个电话会议吧。朱镕",
    "outlook_traditional_chinese_big5": "請寄送價格表給我，謝謝。",
    "latin1_label_on_utf8": "Tr\u00e8s int\u00e9ress\u00e9, envoyez-moi une pr\u00e9sentation.",
    "outlook_html_only": "Thanks Sam \u2014 please send over the pricing sheet.",
    "gmail_related_inline_image": "Looks great \u2014 Tuesday 3pm?",
}


@pytest.mark.parametrize("client", sorted(MORE_EXPECTED))
def test_more_client_layouts_and_charsets_in_both_modes(client: str) -> None:
    message = mh.MORE_CLIENTS[client]()
    mails = {mode: parse_mail(*post(message)) for mode, post in MODES.items()}
    for mode, mail in mails.items():
        assert mail.text == MORE_EXPECTED[client], mode
        assert "\ufffd" not in mail.full_text and mail.automated is None, mode
    assert mails["raw"].full_text == mails["parsed"].full_text


def test_attachments_are_listed_not_kept() -> None:
    for post in MODES.values():
        mail = parse_mail(*post(mh.with_attachment()))
        [attachment] = mail.attachments
        assert (attachment.filename, attachment.content_type) == ("contract 2026.pdf", "application/pdf")
        assert attachment.size > 20


def test_parsed_mode_without_charsets_reads_utf8_then_windows_1252() -> None:
    content_type, body = mh.parsed_post(mh.outlook_cp1252())
    body = body.replace(b'"text": "windows-1252"', b'"text": "x-unknown-charset"')
    mail = parse_mail(content_type, body)
    assert mail.text == EXPECTED["outlook_cp1252"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_auto_reply_by_headers_is_out_of_office_with_its_return_date(mode: str) -> None:
    mail = parse_mail(*MODES[mode](mh.out_of_office()))
    assert mail.automated == "Auto-Submitted: auto-replied"
    [event] = to_events(mail, ["reply.flywheel.example"], datetime(2026, 11, 24, tzinfo=UTC))
    assert event.event_type == "reply" and event.data["automated"] is True
    assert event.data["category"] == "out_of_office" and event.data["return_date"] == date(2026, 12, 7).isoformat()


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Auto-Submitted", "auto-generated"),
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Out of office"),
        ("Precedence", "auto_reply"),
        ("Precedence", "bulk"),
        ("Precedence", "junk"),
        ("Return-Path", "<>"),
    ],
)
def test_every_auto_reply_header(header: str, value: str) -> None:
    message = mh.gmail()
    message[header] = value
    for post in MODES.values():
        mail = parse_mail(*post(message))
        assert mail.automated is not None, (header, value)
        [event] = to_events(mail, [], datetime(2026, 11, 24, tzinfo=UTC))
        assert event.data["category"] == "auto_reply"


@pytest.mark.parametrize(
    "subject", ["自動応答: ご提案", "自动答复: 提议", "自動回覆: 提議", "Réponse automatique : Idée"]
)
def test_outlook_automatic_reply_subjects_without_headers(subject: str) -> None:
    message = mh.gmail()
    message.replace_header("Subject", Header(subject, "utf-8").encode())
    for post in MODES.values():
        assert parse_mail(*post(message)).automated == "automatic-reply subject", subject


def test_a_person_saying_no_to_auto_submitted_is_a_person() -> None:
    message = mh.gmail()
    message["Auto-Submitted"] = "no"
    assert parse_mail(*mh.raw_post(message)).automated is None


def test_empty_envelope_sender_is_automatic() -> None:
    mail = parse_mail(*mh.parsed_post(mh.gmail(), envelope_from=""))
    assert mail.automated == "empty Return-Path"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("status", "action", "kind", "bounce_type"),
    [
        ("5.1.1", "failed", "bounce", "bounce"),
        ("4.4.7", "failed", "bounce", "soft"),
        ("4.4.1", "delayed", "deferred", "soft"),
        ("2.0.0", "delivered", "dsn_delivered", None),
    ],
)
def test_delivery_status_notifications(mode: str, status: str, action: str, kind: str, bounce_type: str | None) -> None:
    mail = parse_mail(*MODES[mode](mh.bounce(status, action, f"smtp; 550 {status} mailbox problem")))
    assert mail.report is not None and mail.report.original_message_id == "send-7f3a-1001@mail.acme.example"
    [event] = to_events(mail, [], datetime(2026, 11, 24, tzinfo=UTC))
    assert event.event_type == kind and event.references == ["send-7f3a-1001@mail.acme.example"]
    assert event.email == "dana.reyes@northwind.example" and event.data["status"] == status
    assert event.data["reason"] == f"550 {status} mailbox problem"
    if bounce_type:
        assert event.data["bounce_type"] == bounce_type


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(
    ("dsn", "status", "references"),
    [
        ("exchange_ndr", "5.1.10", ["send-7f3a-1001@mail.acme.example"]),
        ("gmail_dsn", "5.1.1", ["send-7f3a-1001@mail.acme.example"]),
        ("global_dsn", "5.1.1", ["send-7f3a-1001@mail.acme.example"]),  # RFC 6533
        ("forwarded_dsn", "5.2.2", []),  # no original: the lead's address is the Original-Recipient
    ],
)
def test_delivery_reports_from_exchange_gmail_and_postfix(mode: str, dsn: str, status: str, references: list) -> None:
    mail = parse_mail(*MODES[mode](getattr(mh, dsn)(), "0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10"))
    [event] = to_events(mail, ["reply.flywheel.example"], datetime(2026, 11, 24, tzinfo=UTC))
    assert (event.event_type, event.data["status"], event.references) == ("bounce", status, references)
    assert event.email == "dana.reyes@northwind.example"  # attributed to the address we wrote to
    assert event.outcome_id == "0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10"  # returned to reply+<outcome_id>
    assert event.data["bounce_type"] == "bounce"


def test_dsn_without_original_headers_is_attributed_by_recipient() -> None:
    message = mh.bounce()
    message.set_payload(list(message.get_payload())[:2])
    mail = parse_mail(*mh.raw_post(message))
    [event] = to_events(mail, [], datetime(2026, 11, 24, tzinfo=UTC))
    assert event.references == [] and event.email == "dana.reyes@northwind.example" and event.event_type == "bounce"


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        ("application/json", b"{}", MalformedPayload),
        (
            "multipart/form-data; boundary=zz",
            b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--zz--\r\n',
            InvalidInput,
        ),
        (
            "multipart/form-data; boundary=zz",
            b'--zz\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n[1]\r\n--zz--',
            InvalidInput,
        ),
    ],
)
def test_bad_forms(content_type: str, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_mail(content_type, body)


def test_an_unreadable_report_is_kept_not_dropped() -> None:
    message = mh.bounce()
    message.set_payload(list(message.get_payload())[:1])  # the human-readable part only
    [event] = to_events(parse_mail(*mh.raw_post(message)), [], datetime(2026, 11, 24, tzinfo=UTC))
    assert event.event_type == "dsn_unreadable" and not event.known and event.payload["text"]


@pytest.mark.parametrize(
    ("label", "text"),
    [  # labels of the WHATWG Encoding Standard's table that Python's registry does not know
        ("Windows-31J", "資料①"),
        ("ISO-8859-8-I", "תודה"),
        ("logical", "תודה"),
        ("ks_c_5601-1989", "관심"),
        ("windows-949", "관심"),
        ("x-mac-ukrainian", "Дякую"),
        ("cn-big5", "資料"),
        ("iso88592", "Dziękuję"),
        ("unicode-1-1-utf-8", "Grüße"),
    ],
)
def test_whatwg_labels(label: str, text: str) -> None:
    from flywheel.webhooks.inbound import _codec, _decode

    codec = _codec(label)
    assert codec is not None and _decode(text.encode(codec.name), label) == text


@pytest.mark.parametrize("label", ["iso-2022-jp", "ISO-2022-JP-2", "utf-8", None, "x-unknown"])
def test_iso_2022_jp_with_windows_characters_is_never_read_as_utf8(label: str | None) -> None:
    """NEC row 13 (㈱ ①), which Python's JIS X 0208 codecs refuse, read as the WHATWG jis0208 index
    does; 7-bit text with ISO-2022 escapes is never taken for UTF-8 (it would keep the escapes)."""
    from flywheel.webhooks.inbound import _decode

    raw = "佐藤".encode("iso2022_jp") + b"\x1b$B-j-!\x1b(B ok"
    assert _decode(raw, label) == "佐藤㈱① ok"


def test_a_mails_organisation_is_its_reply_address_or_envelope_never_a_cc() -> None:
    from flywheel.webhooks.inbound import InboundMail, addressed_org

    orgs = {"reply.acme.example": "acme", "reply.globex.example": "globex"}.get
    oid = "0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10"

    def mail(headers: list[str], envelope: list[str]) -> InboundMail:
        found = InboundMail("raw", "lee@contoso.example", [*headers, *envelope], None, "", None)
        found.envelope = {"to": envelope}
        return found

    # the reply+ address decides, whatever else the headers copy (sorted first or not)
    copied = mail([f"reply+{oid}@reply.globex.example", "x@reply.acme.example"], [f"reply+{oid}@reply.acme.example"])
    assert addressed_org(copied, [], orgs) == "acme"
    assert addressed_org(mail([f"reply+{oid}@reply.acme.example", "s@reply.globex.example"], []), [], orgs) == "acme"
    # no reply+ address: the envelope, never the headers the sender wrote
    assert addressed_org(mail(["s@reply.globex.example"], ["any@reply.acme.example"]), [], orgs) == "acme"
    assert addressed_org(mail(["s@reply.globex.example"], []), [], orgs) is None
    # an envelope spanning two organisations, no reply+ address: no guess
    assert addressed_org(mail([], ["a@reply.acme.example", "b@reply.globex.example"]), [], orgs) is None


def test_a_header_reply_address_counts_only_for_a_domain_this_delivery_went_to() -> None:
    from flywheel.webhooks.inbound import InboundMail, addressed_org, addressed_outcome

    orgs = {"reply.acme.example": "acme", "reply.globex.example": "globex"}.get
    oid = "0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10"

    def mail(headers: list[str], envelope: list[str]) -> InboundMail:
        found = InboundMail("raw", "lee@contoso.example", [*headers, *envelope], None, "", None)
        found.envelope = {"to": envelope} if envelope else {}
        return found

    # delivered to acme's domain; the only reply+ address is a Cc of globex's: it links nothing
    ccd = mail(["sales@reply.acme.example", f"reply+{oid}@reply.globex.example"], ["sales@reply.acme.example"])
    assert addressed_outcome(ccd, []) is None
    assert addressed_org(ccd, [], orgs) == "acme"
    # a header reply+ address of the domain the delivery went to still links (a forwarder's envelope)
    same = mail([f"reply+{oid}@reply.acme.example"], ["sales@reply.acme.example"])
    assert addressed_outcome(same, []) == oid and addressed_org(same, [], orgs) == "acme"
    # no envelope at all: the headers are all there is
    assert addressed_outcome(mail([f"reply+{oid}@reply.globex.example"], []), []) == oid

"""Replies built with the standard library's `email` package in each mail client's real layout, and
the two ways SendGrid Inbound Parse posts one: raw (`email` field) and parsed (fields + `charsets`).

Parsed mode follows SendGrid's documented default payload: `headers` (the raw header block), `text`
and `html` as the bytes of the part's own charset (named in the `charsets` JSON), `from`, `to`,
`cc`, `subject`, `envelope` (JSON), `SPF`, `dkim`, `spam_score`, `sender_ip`, `attachments` (a count),
`attachment-info` (JSON) and one file part per attachment (`attachment1`, ...). Parts of a delivery
report other than its human-readable text arrive as attachments with their media type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from typing import Any

BOUNDARY = "xYzZY"
SENT = "<send-7f3a-1001@mail.acme.example>"  # the Message-ID of our outbound message (see events/)
LEAD = "Dana Reyes <dana.reyes@northwind.example>"
PARSE_TO = "reply+OUTCOME_ID@reply.flywheel.example"
DATE = format_datetime(datetime(2026, 11, 24, 10, 12, tzinfo=UTC))


def _headers(msg: Message, subject: str, message_id: str, **extra: str) -> Message:
    msg["From"] = LEAD
    msg["To"] = f"Sam Lee <{PARSE_TO}>"
    # non-ASCII subjects travel as RFC 2047 encoded words, as every client sends them
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    msg["Date"] = DATE
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = SENT
    msg["References"] = SENT
    for name, value in extra.items():
        msg[name.replace("_", "-")] = value
    return msg


def _text(body: str, charset: str, cte: str) -> MIMEText:
    return _encoded(body.encode(charset), charset, cte)


def _html(body: str, charset: str = "utf-8") -> MIMEText:
    return MIMEText(body, "html", charset)


def gmail() -> Message:
    """Gmail web: multipart/alternative, UTF-8 quoted-printable, 'On ... wrote:' and '>' quotes."""
    text = (
        "Hi Sam,\n\nThis is timely \u2013 we\u2019re re-evaluating our close process this quarter.\n"
        "Tuesday at 2pm works, send an invite.\n\nDana\n\n"
        "On Mon, Nov 23, 2026 at 9:00\u202fAM Sam Lee <sam@acme.example> wrote:\n\n"
        "> Hi Dana,\n>\n> Finance teams at companies like Northwind cut month-end close by three days.\n"
    )
    html = (
        '<div dir="ltr">Hi Sam,<div><br></div><div>This is timely \u2013 we\u2019re re-evaluating our close '
        "process this quarter.<br>Tuesday at 2pm works, send an invite.</div><div><br></div><div>Dana</div></div>"
        '<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Nov 23, 2026 at 9:00\u202fAM '
        'Sam Lee &lt;<a href="mailto:sam@acme.example">sam@acme.example</a>&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote">Hi Dana,<br>Finance teams at companies like Northwind...</blockquote></div>'
    )
    msg = MIMEMultipart("alternative", boundary="000000000000a1b2c3")
    msg.attach(_text(text, "utf-8", "quoted-printable"))
    msg.attach(_html(html))
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<CAF=dana.gmail.1@mail.gmail.com>")


def outlook_cp1252() -> Message:
    """Outlook desktop: windows-1252 quoted-printable (curly quotes, euro sign), header block quote."""
    text = (
        "We\u2019d pay \u20ac5k a year for this if the numbers hold \u2013 send me the pricing sheet.\n\n"
        "Best regards,\nDana Reyes\nCFO | Northwind\n\n"
        "________________________________\n"
        "From: Sam Lee <sam@acme.example>\nSent: Monday, November 23, 2026 9:00 AM\n"
        "To: Dana Reyes <dana.reyes@northwind.example>\nSubject: Dana, closing the books 3 days faster\n\n"
        "Hi Dana,\nFinance teams at companies like Northwind...\n"
    )
    msg = MIMEMultipart("alternative", boundary="_000_DB9PR01MB1234")
    msg.attach(_text(text, "windows-1252", "quoted-printable"))
    msg.attach(
        _html(
            "<html><body><p>We\u2019d pay \u20ac5k a year for this if the numbers hold \u2013 send me "
            'the pricing sheet.</p><div id="divRplyFwdMsg"><b>From:</b> Sam Lee</div></body></html>',
            "windows-1252",
        )
    )
    return _headers(
        msg,
        "RE: Dana, closing the books 3 days faster",
        "<DB9PR01MB1234.outlook@northwind.example>",
        Thread_Index="AQHZ1234",
        X_MS_Has_Attach="",
    )


def apple_mail() -> Message:
    """iPhone Mail: text/plain UTF-8, 'Sent from my iPhone' above the quoted original."""
    text = (
        "Yes, let\u2019s talk. Thursday after 3 works for me.\n\nSent from my iPhone\n\n"
        "> On 23 Nov 2026, at 09:00, Sam Lee <sam@acme.example> wrote:\n>\n> \ufeffHi Dana,\n"
        "> Finance teams at companies like Northwind...\n"
    )
    msg = _text(text, "utf-8", "quoted-printable")
    msg.set_param("format", "flowed")
    return _headers(
        msg,
        "Re: Dana, closing the books 3 days faster",
        "<A1B2C3D4-APPLE@northwind.example>",
        X_Mailer="iPhone Mail (22B91)",
    )


def thunderbird_latin1() -> Message:
    """Thunderbird in French: ISO-8859-1 quoted-printable."""
    text = (
        "Bonjour Sam,\n\nTr\u00e8s int\u00e9ress\u00e9 par votre proposition. Envoyez-moi une pr\u00e9sentation, "
        "s'il vous pla\u00eet.\n\nCordialement,\nClaire\n\n"
        "Le 23/11/2026 \u00e0 09:00, Sam Lee a \u00e9crit\u00a0:\n> Bonjour Claire,\n> Les \u00e9quipes finance...\n"
    )
    msg = _text(text, "iso-8859-1", "quoted-printable")
    return _headers(
        msg,
        "Re: Claire, une id\u00e9e pour Northwind",
        "<4f3e2d1c.claire@northwind.example>",
        User_Agent="Mozilla Thunderbird",
    )


def outlook_german_cp1252() -> Message:
    """Outlook in German: windows-1252 quoted-printable with 'Von:/Gesendet:/An:/Betreff:'."""
    text = (
        "Hallo Herr Lee,\n\nbitte melden Sie sich im Januar wieder \u2013 aktuell haben wir keine Kapazit\u00e4t.\n\n"
        "Mit freundlichen Gr\u00fc\u00dfen\nJonas M\u00fcller\n\n"
        "Von: Sam Lee <sam@acme.example>\nGesendet: Montag, 23. November 2026 09:00\n"
        "An: Jonas M\u00fcller <jonas@northwind.example>\nBetreff: Idee f\u00fcr Northwind\n\nHallo Herr M\u00fcller,\n"
    )
    msg = _text(text, "windows-1252", "quoted-printable")
    return _headers(msg, "AW: Idee f\u00fcr Northwind", "<AM0PR07MB5678.jonas@northwind.example>")


def russian_base64() -> Message:
    """Gmail/Yandex in Russian: UTF-8 base64 with 'пн, 23 нояб. 2026 г. в 09:00, Sam Lee <…>:'."""
    text = (
        "Добрый день, Сэм!\n\nИнтересно. Пришлите, пожалуйста, презентацию и цены.\n\nС уважением,\nОльга\n\n"
        "пн, 23 нояб. 2026 г. в 09:00, Sam Lee <sam@acme.example>:\n\n> Здравствуйте, Ольга!\n> ...\n"
    )
    msg = _text(text, "utf-8", "base64")
    return _headers(msg, "Re: Идея для Northwind", "<CAE=olga.ru.1@mail.gmail.com>")


def japanese_base64() -> Message:
    """Gmail in Japanese: UTF-8 base64 with '2026年11月23日(月) 9:00 Sam Lee <…>:'."""
    text = (
        "Sam様\n\nご連絡ありがとうございます。資料を送っていただけますか。\n\n佐藤\n\n"
        "2026年11月23日(月) 9:00 Sam Lee <sam@acme.example>:\n\n> 佐藤様\n> ご提案です。\n"
    )
    msg = _text(text, "utf-8", "base64")
    return _headers(msg, "Re: ご提案", "<CAJ=sato.ja.1@mail.gmail.com>")


def japanese_iso2022() -> Message:
    """A classic Japanese client: ISO-2022-JP, 7bit, the quote header on its own line."""
    text = "了解しました。来週の火曜日にお電話ください。\n\n山田\n\n2026年11月23日 9:00、Sam Lee <sam@acme.example> のメッセージ:\n> 山田様\n"
    msg = _text(text, "iso-2022-jp", "7bit")
    return _headers(msg, "Re: ご提案", "<20261124.yamada@northwind.example.jp>")


def with_attachment() -> Message:
    """A reply with a PDF attached (multipart/mixed)."""
    msg = MIMEMultipart("mixed", boundary="mixed-boundary-1")
    msg.attach(
        _text(
            "Here's our current vendor contract so you can compare. Can you beat it?\n\nDana\n",
            "utf-8",
            "quoted-printable",
        )
    )
    pdf = MIMEBase("application", "pdf")
    pdf.set_payload(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    from email.encoders import encode_base64

    encode_base64(pdf)
    pdf.add_header("Content-Disposition", "attachment", filename="contract 2026.pdf")
    msg.attach(pdf)
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<CAF=dana.attach.1@mail.gmail.com>")


def out_of_office() -> Message:
    """Exchange automatic reply: RFC 3834 Auto-Submitted plus Microsoft's headers."""
    msg = _text(
        "Thank you for your email. I'm out of the office until 7 December 2026 with no access to email.\n"
        "For urgent matters please contact finance@northwind.example.\n",
        "utf-8",
        "quoted-printable",
    )
    return _headers(
        msg,
        "Automatic reply: Dana, closing the books 3 days faster",
        "<ooo.dana.1@northwind.example>",
        Auto_Submitted="auto-replied",
        X_Auto_Response_Suppress="All",
        X_MS_Exchange_Inbox_Rules_Loop="dana.reyes@northwind.example",
    )


def bounce(
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <dana.reyes@northwind.example>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
) -> Message:
    """A Postfix DSN (RFC 3464): multipart/report with the human text, message/delivery-status and
    the original headers (text/rfc822-headers)."""
    report = MIMEMultipart("report", boundary="dsn-boundary-77", report_type="delivery-status")
    report.attach(
        MIMEText(
            "This is the mail system at host mx.acme.example.\n\nI'm sorry to have to inform you "
            "that your message could not be delivered to one or more recipients.\n\n"
            "<dana.reyes@northwind.example>: host mx.northwind.example said: 550 5.1.1 User unknown\n",
            "plain",
            "us-ascii",
        )
    )
    from email import message_from_string

    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload(
        [
            message_from_string(block)
            for block in (
                "Reporting-MTA: dns; mx.acme.example\nX-Postfix-Queue-ID: 4F2A1C0\n"
                "Arrival-Date: Mon, 23 Nov 2026 09:00:01 +0000\n",
                f"Final-Recipient: rfc822; dana.reyes@northwind.example\nOriginal-Recipient: rfc822;dana.reyes@northwind.example\n"
                f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; mx.northwind.example\nDiagnostic-Code: {diagnostic}\n",
            )
        ]
    )
    report.attach(status_part)
    original = MIMEText(
        f"From: Sam Lee <sam@acme.example>\nTo: {LEAD}\nSubject: Dana, closing the books 3 days faster\n"
        f"Message-ID: {SENT}\nDate: Mon, 23 Nov 2026 09:00:00 +0000\n",
        "rfc822-headers",
        "us-ascii",
    )
    report.attach(original)
    report["From"] = "MAILER-DAEMON@mx.acme.example (Mail Delivery System)"
    report["To"] = f"<{PARSE_TO}>"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = DATE
    report["Message-ID"] = f"<dsn-{status}-{action}@mx.acme.example>"
    report["Auto-Submitted"] = "auto-replied"
    return report


# --- more layouts (review of #12): mobile footers, localised attribution lines, Asian and Cyrillic
# charsets as Windows really writes them (supersets of the declared one), mislabelled charsets,
# HTML-only and multipart/related mail


def _encoded(body: bytes, charset: str, cte: str) -> MIMEText:
    """A text/plain part holding `body` as given, labelled with `charset` (the stdlib would relabel
    Shift_JIS as ISO-2022-JP and refuses bytes its codec cannot write)."""
    part = MIMEText("", "plain", "utf-8")
    del part["Content-Transfer-Encoding"]
    part.set_param("charset", charset)
    part.set_payload(body)
    if cte == "base64":
        from email.encoders import encode_base64

        encode_base64(part)
    elif cte == "quoted-printable":
        from email.encoders import encode_quopri

        encode_quopri(part)
    else:
        part["Content-Transfer-Encoding"] = cte
    return part


QUOTED = "> Hi Dana,\n> Finance teams at companies like Northwind cut month-end close by three days.\n"


def yahoo_android() -> Message:
    """Yahoo Mail on Android: indented attribution line, 'Sent from Yahoo Mail on Android'."""
    text = (
        "Sounds good, let's talk Thursday.\n\nSent from Yahoo Mail on Android\n\n"
        "  On Mon, Nov 23, 2026 at 9:00, Sam Lee<sam@acme.example> wrote:   \n\n   Hi Dana,\n   Finance teams...\n"
    )
    msg = MIMEMultipart("alternative")
    msg.attach(_text(text, "utf-8", "quoted-printable"))
    msg.attach(
        _html(
            '<div>Sounds good, let\'s talk Thursday.</div><div class="yahoo_quoted">On Mon ... wrote:'
            "<blockquote>Hi Dana</blockquote></div>"
        )
    )
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<1234.yahoo@mail.yahoo.com>")


def spark() -> Message:
    """Spark: 'Sent with Spark' footer, 'On <date>, <name> <address>, wrote:'."""
    text = (
        "Can you send pricing?\n\nSent with Spark\n\nOn 23 Nov 2026, 09:00 +0100, Sam Lee <sam@acme.example>, wrote:\n"
        + QUOTED
    )
    return _headers(_text(text, "utf-8", "quoted-printable"), "Re: Idea", "<spark.1@sparkmailapp.com>")


def outlook_mobile_german() -> Message:
    """Outlook for iOS in German: its localised footer with the aka.ms link above the header block."""
    text = (
        "Passt, rufen Sie mich Dienstag an.\n\nOutlook f\u00fcr iOS<https://aka.ms/o0ukef> beziehen\n"
        "________________________________\nVon: Sam Lee <sam@acme.example>\nGesendet: Montag, 23. November 2026 09:00\n"
        "An: Jonas <jonas@northwind.example>\nBetreff: Idee\n\nHallo\n"
    )
    return _headers(_text(text, "utf-8", "quoted-printable"), "AW: Idee", "<AM0PR07MB9.mobile@northwind.example>")


def apple_mail_japanese() -> Message:
    """Apple Mail in Japanese: '2026/11/23 9:00、Sam Lee <…>のメール:' and an unquoted original."""
    text = "承知しました。資料をお送りください。\n\n2026/11/23 9:00、Sam Lee <sam@acme.example>のメール:\n\n佐藤様\nご提案です。\n"
    return _headers(_text(text, "utf-8", "base64"), "Re: ご提案", "<A1.apple.ja@northwind.example>")


def apple_mail_dutch() -> Message:
    """iPhone Mail in Dutch: 'Verstuurd vanaf mijn iPhone', '… het volgende geschreven:'."""
    text = (
        "Stuur me de prijzen maar.\n\nVerstuurd vanaf mijn iPhone\n\nOp 23 nov. 2026 om 09:00 heeft Sam Lee "
        "<sam@acme.example> het volgende geschreven:\n\n\ufeff\nHallo Pieter,\nFinance teams...\n"
    )
    return _headers(_text(text, "utf-8", "quoted-printable"), "Re: Idee", "<A1.apple.nl@northwind.example>")


def thunderbird_koi8r() -> Message:
    """Thunderbird in Russian: KOI8-R, 8bit, '23.11.2026 09:00, Sam Lee пишет:'."""
    text = "Интересно, пришлите цены.\n\n23.11.2026 09:00, Sam Lee пишет:\n> Здравствуйте!\n> Предложение...\n"
    return _headers(_encoded(text.encode("koi8-r"), "koi8-r", "8bit"), "Re: Идея", "<tb.koi8@northwind.example>")


def outlook_russian_cp1251() -> Message:
    """Outlook in Russian: windows-1251 quoted-printable, closing and Outlook header block."""
    text = (
        "Спасибо, пока не актуально. Напишите в марте.\n\nС уважением,\nИван Петров\n\nОт: Sam Lee <sam@acme.example>\n"
        "Отправлено: 23 ноября 2026 г. 9:00\nКому: Иван Петров\nТема: Идея\n\nЗдравствуйте\n"
    )
    return _headers(
        _encoded(text.encode("cp1251"), "windows-1251", "quoted-printable"), "RE: Идея", "<ol.cp1251@northwind.example>"
    )


def outlook_japanese_cp932() -> Message:
    """Outlook in Japanese: labelled Shift_JIS, written in cp932 (circled digits, the wave dash)."""
    text = (
        "①価格表 ②導入事例 をお送りください～\n\n差出人: Sam Lee <sam@acme.example>\n送信日時: 2026年11月23日 9:00\n"
        "宛先: 佐藤\n件名: ご提案\n\n佐藤様\n"
    )
    return _headers(_encoded(text.encode("cp932"), "shift_jis", "base64"), "RE: ご提案", "<ol.sjis@northwind.example>")


def outlook_chinese_gbk() -> Message:
    """Outlook in Simplified Chinese: labelled GB2312, written in GBK (镕 is not in GB2312)."""
    text = (
        "可以，下周三下午约个电话会议吧。朱镕\n\n发件人: Sam Lee <sam@acme.example>\n发送时间: 2026年11月23日 9:00\n"
        "收件人: 王\n主题: 提议\n"
    )
    return _headers(_encoded(text.encode("gbk"), "gb2312", "base64"), "RE: 提议", "<ol.gbk@northwind.example>")


def outlook_traditional_chinese_big5() -> Message:
    """Outlook in Traditional Chinese: Big5, '寄件者/寄件日期/收件者/主旨'."""
    text = "請寄送價格表給我，謝謝。\n\n寄件者: Sam Lee <sam@acme.example>\n寄件日期: 2026年11月23日 上午 09:00\n收件者: 陳\n主旨: 提議\n"
    return _headers(_encoded(text.encode("big5"), "big5", "base64"), "RE: 提議", "<ol.big5@northwind.example>")


def latin1_label_on_utf8() -> Message:
    """A client that labels its UTF-8 text ISO-8859-1 (a classic webmail bug)."""
    text = "Tr\u00e8s int\u00e9ress\u00e9, envoyez-moi une pr\u00e9sentation.\n\nLe 23/11/2026 \u00e0 09:00, Sam Lee a \u00e9crit :\n> Bonjour\n"
    return _headers(
        _encoded(text.encode("utf-8"), "iso-8859-1", "quoted-printable"), "Re: Idée", "<wm.1@northwind.example>"
    )


def outlook_html_only() -> Message:
    """Outlook sending HTML only: head with title and style, Word markup, the original after a border."""
    html = (
        '<html><head><meta http-equiv=Content-Type content="text/html; charset=utf-8"><style><!-- p {margin:0} -->'
        "</style><title>RE: Idea</title></head><body lang=EN-US><div class=WordSection1><p class=MsoNormal>Thanks Sam "
        "&mdash; please send over the pricing&nbsp;sheet.<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        "<div style='border:none;border-top:solid #E1E1E1 1.0pt'><p class=MsoNormal><b>From:</b> Sam Lee "
        "&lt;sam@acme.example&gt;<br><b>Sent:</b> Monday, November 23, 2026 9:00 AM<br><b>To:</b> Dana Reyes<br>"
        "<b>Subject:</b> Idea</p></div><p class=MsoNormal>Hi Dana, finance teams...</p></div></body></html>"
    )
    return _headers(_html(html), "RE: Idea", "<ol.html@northwind.example>")


def gmail_related_inline_image() -> Message:
    """Gmail with an inline image: multipart/mixed > related > alternative, '[image: …]' in the text."""
    alternative = MIMEMultipart("alternative")
    alternative.attach(
        _text(
            "Looks great \u2014 Tuesday 3pm?\n[image: logo.png]\n\nOn Mon, Nov 23, 2026 at 9:00\u202fAM "
            "Sam Lee <sam@acme.example> wrote:\n\n" + QUOTED,
            "utf-8",
            "quoted-printable",
        )
    )
    alternative.attach(
        _html(
            '<div dir="ltr">Looks great \u2014 Tuesday 3pm?<img src="cid:ii_1"><div class="gmail_signature">'
            'Dana | CFO</div></div><div class="gmail_quote">On ... wrote:<blockquote>Hi</blockquote></div>'
        )
    )
    related = MIMEMultipart("related")
    related.attach(alternative)
    from email.mime.image import MIMEImage

    image = MIMEImage(b"\x89PNG\r\n\x1a\n" + b"0" * 40, "png")
    image.add_header("Content-ID", "<ii_1>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    related.attach(image)
    mixed = MIMEMultipart("mixed")
    mixed.attach(related)
    return _headers(mixed, "Re: Idea", "<CAF=inline.1@mail.gmail.com>")


MORE_CLIENTS = {
    "yahoo_android": yahoo_android,
    "spark": spark,
    "outlook_mobile_german": outlook_mobile_german,
    "apple_mail_japanese": apple_mail_japanese,
    "apple_mail_dutch": apple_mail_dutch,
    "thunderbird_koi8r": thunderbird_koi8r,
    "outlook_russian_cp1251": outlook_russian_cp1251,
    "outlook_japanese_cp932": outlook_japanese_cp932,
    "outlook_chinese_gbk": outlook_chinese_gbk,
    "outlook_traditional_chinese_big5": outlook_traditional_chinese_big5,
    "latin1_label_on_utf8": latin1_label_on_utf8,
    "outlook_html_only": outlook_html_only,
    "gmail_related_inline_image": gmail_related_inline_image,
}


def _report(
    human: Message,
    status: str,
    original: Message | None,
    sender: str,
    subject: str,
    message_id: str,
    global_: bool = False,
) -> Message:
    """multipart/report: the human-readable part, the status fields, the returned original."""
    from email import message_from_string

    report = MIMEMultipart("report", report_type="global-delivery-status" if global_ else "delivery-status")
    report.attach(human)
    blocks = MIMEBase("message", "global-delivery-status" if global_ else "delivery-status")
    # delivery-status is a list of field blocks to the stdlib; the RFC 6533 form is written as sent
    blocks.set_payload(status if global_ else [message_from_string(block) for block in status.split("\n\n")])
    report.attach(blocks)
    if original is not None:
        report.attach(original)
    report["From"], report["To"], report["Subject"] = sender, f"<{PARSE_TO}>", subject
    report["Date"], report["Message-ID"], report["Auto-Submitted"] = DATE, message_id, "auto-replied"
    return report


def _original() -> Message:
    from email import message_from_string
    from email.mime.message import MIMEMessage

    return MIMEMessage(
        message_from_string(
            f"From: Sam Lee <sam@acme.example>\nTo: {LEAD}\nSubject: Dana, closing the books 3 days faster\n"
            f"Message-ID: {SENT}\nDate: Mon, 23 Nov 2026 09:00:00 +0000\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n\nHi Dana,\nFinance teams at companies like Northwind...\n"
        )
    )


def exchange_ndr() -> Message:
    """Exchange Online's non-delivery report: text and HTML, 5.1.10, the whole original (message/rfc822)."""
    human = MIMEMultipart("alternative")
    human.attach(
        MIMEText(
            "Your message to dana.reyes@northwind.example couldn't be delivered.\n\n"
            "dana.reyes wasn't found at northwind.example.\n",
            "plain",
            "utf-8",
        )
    )
    human.attach(MIMEText("<html><body><b>Your message couldn't be delivered.</b></body></html>", "html", "utf-8"))
    status = (
        "Reporting-MTA: dns;AM0PR07MB5678.eurprd07.prod.outlook.com\nReceived-From-MTA: dns;mail.acme.example\n"
        "Arrival-Date: Mon, 23 Nov 2026 09:00:02 +0000\n\nFinal-Recipient: rfc822;dana.reyes@northwind.example\n"
        "Action: failed\nStatus: 5.1.10\nDiagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
        "Recipient not found by SMTP address lookup\n"
    )
    return _report(
        human,
        status,
        _original(),
        "Microsoft Outlook <MicrosoftExchange329e71ec@northwind.example>",
        "Undeliverable: Dana, closing the books 3 days faster",
        "<ndr.1@AM0PR07MB5678.outlook.com>",
    )


def gmail_dsn() -> Message:
    """Gmail's 'Address not found': related/alternative human part, 550-5.1.1, the original message."""
    alternative = MIMEMultipart("alternative")
    alternative.attach(
        MIMEText(
            "** Address not found **\n\nYour message wasn't delivered to "
            "dana.reyes@northwind.example because the address couldn't be found.\n",
            "plain",
            "utf-8",
        )
    )
    alternative.attach(MIMEText("<html>Address not found</html>", "html", "utf-8"))
    related = MIMEMultipart("related")
    related.attach(alternative)
    status = (
        "Reporting-MTA: dns; googlemail.com\nArrival-Date: Mon, 23 Nov 2026 01:00:01 -0800 (PST)\n\n"
        "Final-Recipient: rfc822; dana.reyes@northwind.example\nAction: failed\nStatus: 5.1.1\n"
        "Remote-MTA: dns; mx.northwind.example. (203.0.113.5, the server for the domain northwind.example.)\n"
        "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.\n"
        "Last-Attempt-Date: Mon, 23 Nov 2026 01:00:02 -0800 (PST)\n"
    )
    return _report(
        related,
        status,
        _original(),
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "Delivery Status Notification (Failure)",
        "<5f0c.dsn@mx.google.com>",
    )


def forwarded_dsn() -> Message:
    """Postfix at the lead's company: the lead forwards to a full mailbox elsewhere; the report names
    the lead's address only as Original-Recipient and returns no original headers."""
    status = (
        "Reporting-MTA: dns; mx.northwind.example\n\nFinal-Recipient: rfc822; dana.private@mail.example\n"
        "Original-Recipient: rfc822;dana.reyes@northwind.example\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 mailbox full\n"
    )
    return _report(
        MIMEText("This is the mail system at host mx.northwind.example.\n", "plain", "us-ascii"),
        status,
        None,
        "MAILER-DAEMON@mx.northwind.example (Mail Delivery System)",
        "Undelivered Mail Returned to Sender",
        "<dsn.fwd@mx.northwind.example>",
    )


def global_dsn() -> Message:
    """Postfix for SMTPUTF8 mail (RFC 6533): message/global-delivery-status and message/global-headers."""
    from email import message_from_string

    headers = MIMEBase("message", "global-headers")
    headers.set_payload([message_from_string(f"From: Sam Lee <sam@acme.example>\nTo: {LEAD}\nMessage-ID: {SENT}\n")])
    status = (
        "Reporting-MTA: dns; mx.acme.example\n\nFinal-Recipient: utf-8; dana.reyes@northwind.example\n"
        "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    return _report(
        MIMEText("This is the mail system at host mx.acme.example.\n", "plain", "utf-8"),
        status,
        headers,
        "MAILER-DAEMON@mx.acme.example (Mail Delivery System)",
        "Undelivered Mail Returned to Sender",
        "<dsn.global@mx.acme.example>",
        global_=True,
    )


# --- read receipts, plain-text bounces, charset labels, calendar answers (outside review 5, 7, 8, 11)


def _receipt(human: str, user_agent: str, subject: str, message_id: str) -> Message:
    """An RFC 8098 message disposition notification: multipart/report; report-type=disposition-notification,
    the human text, then message/disposition-notification (its fields), as Thunderbird and Exchange send it."""
    from email import message_from_string

    msg = MIMEMultipart("report", report_type="disposition-notification")
    msg.attach(MIMEText(human, "plain", "utf-8"))
    fields = MIMEBase("message", "disposition-notification")
    fields.set_payload(
        [
            message_from_string(
                f"Reporting-UA: northwind.example; {user_agent}\nFinal-Recipient: rfc822;dana.reyes@northwind.example\n"
                f"Original-Message-ID: {SENT}\nDisposition: manual-action/MDN-sent-manually; displayed\n"
            )
        ]
    )
    msg.attach(fields)
    return _headers(msg, subject, message_id)


def read_receipt_thunderbird() -> Message:
    return _receipt(
        "This is a Return Receipt for the mail that you sent to dana.reyes@northwind.example.\n\nNote: This Return "
        "Receipt only acknowledges that the message was displayed on the recipient's computer.\n",
        "Thunderbird 128.5.0",
        "Return Receipt (displayed) - Dana, closing the books 3 days faster",
        "<mdn.tb@northwind.example>",
    )


def read_receipt_outlook() -> Message:
    return _receipt(
        "Your message\n\n  To: Dana Reyes\n  Subject: Dana, closing the books 3 days faster\n\nwas read on "
        "Tuesday, November 24, 2026 11:02:13 AM (UTC+00:00).\n",
        "Microsoft Exchange Server",
        "Read: Dana, closing the books 3 days faster",
        "<mdn.ol@northwind.example>",
    )


_RETURNED = (
    f"From: Sam Lee <sam@acme.example>\nTo: {LEAD}\nSubject: Dana, closing the books 3 days faster\n"
    f"Message-ID: {SENT}\n\nHi Dana,\n"
)


def _text_bounce(text: str, sender: str, subject: str, message_id: str) -> Message:
    msg = MIMEText(text, "plain", "us-ascii")
    msg["From"], msg["To"], msg["Subject"] = sender, PARSE_TO, subject
    msg["Date"], msg["Message-ID"] = DATE, message_id
    return msg


def qmail_bounce() -> Message:
    """qmail's bounce: plain text from MAILER-DAEMON, no RFC 3464 report."""
    return _text_bounce(
        "Hi. This is the qmail-send program at mail.northwind.example.\nI'm afraid I wasn't able to deliver your "
        "message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<dana.reyes@northwind.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n" + _RETURNED,
        "MAILER-DAEMON@mail.northwind.example",
        "failure notice",
        "<qm.1@mail.northwind.example>",
    )


def yahoo_bounce() -> Message:
    """Yahoo's "Failure Notice" (qmail's layout)."""
    return _text_bounce(
        "Sorry, we were unable to deliver your message to the following address.\n\n<dana.reyes@northwind.example>:\n"
        "550: 5.1.1 <dana.reyes@northwind.example>: Recipient address rejected: User unknown\n\n"
        "--- Below this line is a copy of the message.\n\nReceived: from [127.0.0.1] by mail.acme.example\n"
        + _RETURNED,
        "MAILER-DAEMON@yahoo.com",
        "Failure Notice",
        "<yb.1@yahoo.com>",
    )


def exim_bounce() -> Message:
    """Exim's bounce (its default: no RFC 3464 report)."""
    return _text_bounce(
        "This message was created automatically by mail delivery software.\n\nA message that you sent could not be "
        "delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"
        "  dana.reyes@northwind.example\n    host mx.northwind.example [203.0.113.5]\n    SMTP error from remote mail "
        "server after RCPT TO:<dana.reyes@northwind.example>:\n    550 5.1.1 User unknown\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n" + _RETURNED,
        "Mail Delivery System <Mailer-Daemon@mx.northwind.example>",
        "Mail delivery failed: returning message to sender",
        "<ex.1@mx.northwind.example>",
    )


def forwarded_bounce_from_a_person() -> Message:
    """The lead forwards a bounce they got ("why did this bounce?"): a person's reply, not a bounce."""
    return _headers(
        _text(
            "Sam, your colleague's mail to our old address bounced - use this one.\n\n"
            "---------- Forwarded message ---------\nFrom: MAILER-DAEMON@mail.northwind.example\nSubject: failure notice\n\n"
            "<dana.old@northwind.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
            "utf-8",
            "quoted-printable",
        ),
        "Fwd: failure notice",
        "<fwd.bounce@northwind.example>",
    )


def iso2022_nec() -> Message:
    """Japanese Outlook on Windows: ISO-2022-JP holding NEC row 13 characters (㈱ ① ②), which
    Python's JIS X 0208 codec refuses."""

    def nec(pair: bytes) -> bytes:
        return b"\x1b$B" + pair + b"\x1b(B"

    body = (
        "ご連絡ありがとうございます。".encode("iso2022_jp")
        + nec(b"-j")
        + "ノースウィンドの佐藤です。".encode("iso2022_jp")
        + nec(b"-!")
        + "資料 ".encode("iso2022_jp")
        + nec(b'-"')
        + "お見積りをお送りください。\n".encode("iso2022_jp")
    )
    return _headers(_encoded(body, "iso-2022-jp", "7bit"), "Re: ご提案", "<nec@northwind.example.jp>")


def windows_31j() -> Message:
    """JavaMail's name for cp932 (WHATWG: a Shift_JIS label)."""
    text = "資料を送ってください。来週火曜日は空いています。\n"
    return _headers(
        _encoded(text.encode("cp932"), "Windows-31J", "base64"), "Re: ご提案", "<w31j@northwind.example.jp>"
    )


def hebrew_logical() -> Message:
    """ISO-8859-8-I: Hebrew in logical order (WHATWG: decoded as ISO-8859-8)."""
    text = "תודה, אני מעוניין. שלח לי הצעת מחיר.\n"
    return _headers(
        _encoded(text.encode("iso-8859-8"), "iso-8859-8-i", "quoted-printable"), "Re: idea", "<he@northwind.example>"
    )


def calendar_answer(partstat: str, comment: str = "", uid: str = "040000008200E00074C5B7101A82E008") -> Message:
    """Outlook's answer to a meeting invitation: multipart/alternative, the comment (usually empty)
    as text/plain, and text/calendar; method=REPLY naming the attendee's PARTSTAT."""
    ics = (
        "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nPRODID:Microsoft Exchange Server 2010\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\n"
        f"ATTENDEE;PARTSTAT={partstat};CN=Dana Reyes:mailto:dana.reyes@northwind.example\r\n"
        "ORGANIZER;CN=Sam Lee:mailto:sam@acme.example\r\nSUMMARY;LANGUAGE=en-US:Acme / Northwind\r\n"
        "  intro\r\nDTSTART:20261201T140000Z\r\nDTEND:20261201T143000Z\r\n"
        f"UID:{uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    msg = MIMEMultipart("alternative")
    msg.attach(_text(comment, "utf-8", "7bit" if not comment else "quoted-printable"))
    calendar = MIMEText(ics, "calendar", "utf-8")
    calendar.set_param("method", "REPLY")
    msg.attach(calendar)
    label = {"ACCEPTED": "Accepted", "DECLINED": "Declined", "TENTATIVE": "Tentative"}.get(partstat, partstat.title())
    return _headers(
        msg, f"{label}: Acme / Northwind intro", f"<cal.{partstat.lower()}.{len(comment)}@northwind.example>"
    )


CLIENTS = {
    "gmail": gmail,
    "outlook_cp1252": outlook_cp1252,
    "apple_mail": apple_mail,
    "thunderbird_latin1": thunderbird_latin1,
    "outlook_german_cp1252": outlook_german_cp1252,
    "russian_base64": russian_base64,
    "japanese_base64": japanese_base64,
    "japanese_iso2022": japanese_iso2022,
    "with_attachment": with_attachment,
}


# --- the two Inbound Parse modes -------------------------------------------------------------------


def _field(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return f"--{BOUNDARY}\r\n".encode() + head.encode() + b"\r\n" + value + b"\r\n"


def _form(fields: list[bytes]) -> tuple[str, bytes]:
    return f"multipart/form-data; boundary={BOUNDARY}", b"".join(fields) + f"--{BOUNDARY}--\r\n".encode()


def _envelope(msg: Message, sender: str | None) -> bytes:
    return json.dumps(
        {"to": [PARSE_TO], "from": sender if sender is not None else "dana.reyes@northwind.example"}
    ).encode()


def raw_post(msg: Message, outcome_id: str = "OUTCOME_ID", envelope_from: str | None = None) -> tuple[str, bytes]:
    """'POST the raw, full MIME message': the message's bytes (CRLF, as on the wire) in `email`."""
    wire = msg.as_bytes(policy=policy.SMTP).replace(b"OUTCOME_ID", outcome_id.encode())
    return _form(
        [
            _field("dkim", b"{@northwind.example : pass}"),
            _field("email", wire),
            _field("to", msg["To"].replace("OUTCOME_ID", outcome_id).encode()),
            _field("from", str(msg["From"]).encode()),
            _field("sender_ip", b"203.0.113.7"),
            _field("envelope", _envelope(msg, envelope_from).replace(b"OUTCOME_ID", outcome_id.encode())),
            _field("subject", str(msg["Subject"]).encode()),
            _field("spam_score", b"0.1"),
            _field("charsets", b'{"to":"UTF-8","subject":"UTF-8","from":"UTF-8"}'),
            _field("SPF", b"pass"),
        ]
    )


def _decoded(part: Message) -> tuple[bytes, str]:
    """A part's body in its own charset (transfer encoding undone, charset kept), as SendGrid posts it."""
    charset = part.get_content_charset() or "us-ascii"
    payload = part.get_payload(decode=True)
    return (payload if isinstance(payload, bytes) else b""), charset


def parsed_post(msg: Message, outcome_id: str = "OUTCOME_ID", envelope_from: str | None = None) -> tuple[str, bytes]:
    """The default (parsed) mode, built from the same message."""
    wire = msg.as_bytes(policy=policy.SMTP).replace(b"OUTCOME_ID", outcome_id.encode())
    header_block = wire.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    text: tuple[bytes, str] | None = None
    html: tuple[bytes, str] | None = None
    files: list[tuple[str, str, bytes]] = []

    def leaves(part: Message) -> list[Message]:
        if part.get_content_maintype() == "message" or not part.is_multipart():
            return [part]
        return [leaf for child in part.get_payload() if isinstance(child, Message) for leaf in leaves(child)]

    for part in leaves(msg):
        kind = part.get_content_type()
        if part.get_filename() or kind not in ("text/plain", "text/html"):
            if kind in ("message/delivery-status", "message/global-delivery-status"):
                payload = "".join(str(p) for p in part.get_payload()).encode()  # the field blocks as sent
                files.append(("details.txt", kind, payload))
            elif kind in ("message/disposition-notification", "message/global-disposition-notification"):
                mdn_fields = "".join(m.as_string() if isinstance(m, Message) else str(m) for m in part.get_payload())
                files.append(("MDNPart2.txt", kind, mdn_fields.encode()))  # the fields, as Thunderbird names them
            elif part.get_content_maintype() == "message":  # a returned original: the bytes of the message
                files.append(
                    (
                        part.get_filename() or "original.eml",
                        kind,
                        b"".join(m.as_bytes(policy=policy.SMTP) for m in part.get_payload() if isinstance(m, Message)),
                    )
                )
            else:
                body = part.get_payload(decode=True)
                files.append((part.get_filename() or "attachment.txt", kind, body if isinstance(body, bytes) else b""))
        elif kind == "text/plain" and text is None:
            text = _decoded(part)
        elif kind == "text/html" and html is None:
            html = _decoded(part)
    charsets: dict[str, str] = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
    from email.header import decode_header, make_header

    subject = str(make_header(decode_header(str(msg["Subject"]))))
    fields = [
        _field("headers", header_block),
        _field("dkim", b"{@northwind.example : pass}"),
        _field("to", msg["To"].replace("OUTCOME_ID", outcome_id).encode()),
        _field("from", str(msg["From"]).encode()),
        _field("sender_ip", b"203.0.113.7"),
        _field("subject", subject.encode()),
    ]
    if text:
        fields.append(_field("text", text[0]))
        charsets["text"] = text[1]
    if html:
        fields.append(_field("html", html[0]))
        charsets["html"] = html[1]
    info = {f"attachment{i}": {"filename": name, "type": kind} for i, (name, kind, _) in enumerate(files, start=1)}
    fields += [
        _field("envelope", _envelope(msg, envelope_from).replace(b"OUTCOME_ID", outcome_id.encode())),
        _field("attachments", str(len(files)).encode()),
    ]
    if files:
        fields.append(_field("attachment-info", json.dumps(info).encode()))
        fields += [
            _field(f"attachment{i}", body, filename=name, content_type=kind)
            for i, (name, kind, body) in enumerate(files, start=1)
        ]
    fields += [_field("charsets", json.dumps(charsets).encode()), _field("SPF", b"pass"), _field("spam_score", b"0.1")]
    return _form(fields)


def as_message(msg: Message) -> EmailMessage:
    from email import message_from_bytes

    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def api_event(content_type: str, body: bytes, token: str = "inbound-token-123") -> dict[str, Any]:
    import base64

    return {
        "resource": "/webhooks/sendgrid/inbound/{token}",
        "path": f"/webhooks/sendgrid/inbound/{token}",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type, "Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": [content_type]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"token": token},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/webhooks/sendgrid/inbound/{token}",
            "httpMethod": "POST",
            "path": f"/dev/webhooks/sendgrid/inbound/{token}",
            "stage": "dev",
            "requestId": "r-1",
            "accountId": "123456789012",
            "apiId": "abc123",
            "identity": {"sourceIp": "198.51.100.20"},
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def classifier_records(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SQS records ClassifierFunction receives for these queued reply jobs."""
    return [
        {
            "messageId": f"m-{i}",
            "receiptHandle": "r",
            "body": json.dumps(job),
            "attributes": {},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:replies",
            "awsRegion": "us-east-1",
        }
        for i, job in enumerate(jobs, start=1)
    ]

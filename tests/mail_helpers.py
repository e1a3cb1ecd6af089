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
    part = MIMEText("", "plain", charset)
    del part["Content-Transfer-Encoding"]
    part.set_payload(body.encode(charset))
    if cte == "quoted-printable":
        from email.encoders import encode_quopri

        encode_quopri(part)
    elif cte == "base64":
        from email.encoders import encode_base64

        encode_base64(part)
    else:
        part["Content-Transfer-Encoding"] = cte
    return part


def _html(body: str, charset: str = "utf-8") -> MIMEText:
    return MIMEText(body, "html", charset)


def gmail() -> Message:
    """Gmail web: multipart/alternative, UTF-8 quoted-printable, 'On ... wrote:' and '>' quotes."""
    text = ("Hi Sam,\n\nThis is timely \u2013 we\u2019re re-evaluating our close process this quarter.\n"
            "Tuesday at 2pm works, send an invite.\n\nDana\n\n"
            "On Mon, Nov 23, 2026 at 9:00\u202fAM Sam Lee <sam@acme.example> wrote:\n\n"
            "> Hi Dana,\n>\n> Finance teams at companies like Northwind cut month-end close by three days.\n")
    html = ('<div dir="ltr">Hi Sam,<div><br></div><div>This is timely \u2013 we\u2019re re-evaluating our close '
            'process this quarter.<br>Tuesday at 2pm works, send an invite.</div><div><br></div><div>Dana</div></div>'
            '<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Nov 23, 2026 at 9:00\u202fAM '
            'Sam Lee &lt;<a href="mailto:sam@acme.example">sam@acme.example</a>&gt; wrote:<br></div>'
            '<blockquote class="gmail_quote">Hi Dana,<br>Finance teams at companies like Northwind...</blockquote></div>')
    msg = MIMEMultipart("alternative", boundary="000000000000a1b2c3")
    msg.attach(_text(text, "utf-8", "quoted-printable"))
    msg.attach(_html(html))
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<CAF=dana.gmail.1@mail.gmail.com>")


def outlook_cp1252() -> Message:
    """Outlook desktop: windows-1252 quoted-printable (curly quotes, euro sign), header block quote."""
    text = ("We\u2019d pay \u20ac5k a year for this if the numbers hold \u2013 send me the pricing sheet.\n\n"
            "Best regards,\nDana Reyes\nCFO | Northwind\n\n"
            "________________________________\n"
            "From: Sam Lee <sam@acme.example>\nSent: Monday, November 23, 2026 9:00 AM\n"
            "To: Dana Reyes <dana.reyes@northwind.example>\nSubject: Dana, closing the books 3 days faster\n\n"
            "Hi Dana,\nFinance teams at companies like Northwind...\n")
    msg = MIMEMultipart("alternative", boundary="_000_DB9PR01MB1234")
    msg.attach(_text(text, "windows-1252", "quoted-printable"))
    msg.attach(_html("<html><body><p>We\u2019d pay \u20ac5k a year for this if the numbers hold \u2013 send me "
                     "the pricing sheet.</p><div id=\"divRplyFwdMsg\"><b>From:</b> Sam Lee</div></body></html>",
                     "windows-1252"))
    return _headers(msg, "RE: Dana, closing the books 3 days faster", "<DB9PR01MB1234.outlook@northwind.example>",
                    Thread_Index="AQHZ1234", X_MS_Has_Attach="")


def apple_mail() -> Message:
    """iPhone Mail: text/plain UTF-8, 'Sent from my iPhone' above the quoted original."""
    text = ("Yes, let\u2019s talk. Thursday after 3 works for me.\n\nSent from my iPhone\n\n"
            "> On 23 Nov 2026, at 09:00, Sam Lee <sam@acme.example> wrote:\n>\n> \ufeffHi Dana,\n"
            "> Finance teams at companies like Northwind...\n")
    msg = _text(text, "utf-8", "quoted-printable")
    msg.set_param("format", "flowed")
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<A1B2C3D4-APPLE@northwind.example>",
                    X_Mailer="iPhone Mail (22B91)")


def thunderbird_latin1() -> Message:
    """Thunderbird in French: ISO-8859-1 quoted-printable."""
    text = ("Bonjour Sam,\n\nTr\u00e8s int\u00e9ress\u00e9 par votre proposition. Envoyez-moi une pr\u00e9sentation, "
            "s'il vous pla\u00eet.\n\nCordialement,\nClaire\n\n"
            "Le 23/11/2026 \u00e0 09:00, Sam Lee a \u00e9crit\u00a0:\n> Bonjour Claire,\n> Les \u00e9quipes finance...\n")
    msg = _text(text, "iso-8859-1", "quoted-printable")
    return _headers(msg, "Re: Claire, une id\u00e9e pour Northwind", "<4f3e2d1c.claire@northwind.example>",
                    User_Agent="Mozilla Thunderbird")


def outlook_german_cp1252() -> Message:
    """Outlook in German: windows-1252 quoted-printable with 'Von:/Gesendet:/An:/Betreff:'."""
    text = ("Hallo Herr Lee,\n\nbitte melden Sie sich im Januar wieder \u2013 aktuell haben wir keine Kapazit\u00e4t.\n\n"
            "Mit freundlichen Gr\u00fc\u00dfen\nJonas M\u00fcller\n\n"
            "Von: Sam Lee <sam@acme.example>\nGesendet: Montag, 23. November 2026 09:00\n"
            "An: Jonas M\u00fcller <jonas@northwind.example>\nBetreff: Idee f\u00fcr Northwind\n\nHallo Herr M\u00fcller,\n")
    msg = _text(text, "windows-1252", "quoted-printable")
    return _headers(msg, "AW: Idee f\u00fcr Northwind", "<AM0PR07MB5678.jonas@northwind.example>")


def russian_base64() -> Message:
    """Gmail/Yandex in Russian: UTF-8 base64 with 'пн, 23 нояб. 2026 г. в 09:00, Sam Lee <…>:'."""
    text = ("Добрый день, Сэм!\n\nИнтересно. Пришлите, пожалуйста, презентацию и цены.\n\nС уважением,\nОльга\n\n"
            "пн, 23 нояб. 2026 г. в 09:00, Sam Lee <sam@acme.example>:\n\n> Здравствуйте, Ольга!\n> ...\n")
    msg = _text(text, "utf-8", "base64")
    return _headers(msg, "Re: Идея для Northwind", "<CAE=olga.ru.1@mail.gmail.com>")


def japanese_base64() -> Message:
    """Gmail in Japanese: UTF-8 base64 with '2026年11月23日(月) 9:00 Sam Lee <…>:'."""
    text = ("Sam様\n\nご連絡ありがとうございます。資料を送っていただけますか。\n\n佐藤\n\n"
            "2026年11月23日(月) 9:00 Sam Lee <sam@acme.example>:\n\n> 佐藤様\n> ご提案です。\n")
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
    msg.attach(_text("Here's our current vendor contract so you can compare. Can you beat it?\n\nDana\n",
                     "utf-8", "quoted-printable"))
    pdf = MIMEBase("application", "pdf")
    pdf.set_payload(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    from email.encoders import encode_base64

    encode_base64(pdf)
    pdf.add_header("Content-Disposition", "attachment", filename="contract 2026.pdf")
    msg.attach(pdf)
    return _headers(msg, "Re: Dana, closing the books 3 days faster", "<CAF=dana.attach.1@mail.gmail.com>")


def out_of_office() -> Message:
    """Exchange automatic reply: RFC 3834 Auto-Submitted plus Microsoft's headers."""
    msg = _text("Thank you for your email. I'm out of the office until 7 December 2026 with no access to email.\n"
                "For urgent matters please contact finance@northwind.example.\n", "utf-8", "quoted-printable")
    return _headers(msg, "Automatic reply: Dana, closing the books 3 days faster", "<ooo.dana.1@northwind.example>",
                    Auto_Submitted="auto-replied", X_Auto_Response_Suppress="All",
                    X_MS_Exchange_Inbox_Rules_Loop="dana.reyes@northwind.example")


def bounce(status: str = "5.1.1", action: str = "failed",
           diagnostic: str = "smtp; 550 5.1.1 <dana.reyes@northwind.example>: Recipient address rejected: "
                             "User unknown in virtual mailbox table") -> Message:
    """A Postfix DSN (RFC 3464): multipart/report with the human text, message/delivery-status and
    the original headers (text/rfc822-headers)."""
    report = MIMEMultipart("report", boundary="dsn-boundary-77", report_type="delivery-status")
    report.attach(MIMEText("This is the mail system at host mx.acme.example.\n\nI'm sorry to have to inform you "
                           "that your message could not be delivered to one or more recipients.\n\n"
                           "<dana.reyes@northwind.example>: host mx.northwind.example said: 550 5.1.1 User unknown\n",
                           "plain", "us-ascii"))
    from email import message_from_string

    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([message_from_string(block) for block in (
        "Reporting-MTA: dns; mx.acme.example\nX-Postfix-Queue-ID: 4F2A1C0\n"
        "Arrival-Date: Mon, 23 Nov 2026 09:00:01 +0000\n",
        f"Final-Recipient: rfc822; dana.reyes@northwind.example\nOriginal-Recipient: rfc822;dana.reyes@northwind.example\n"
        f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; mx.northwind.example\nDiagnostic-Code: {diagnostic}\n")])
    report.attach(status_part)
    original = MIMEText(f"From: Sam Lee <sam@acme.example>\nTo: {LEAD}\nSubject: Dana, closing the books 3 days faster\n"
                        f"Message-ID: {SENT}\nDate: Mon, 23 Nov 2026 09:00:00 +0000\n", "rfc822-headers", "us-ascii")
    report.attach(original)
    report["From"] = "MAILER-DAEMON@mx.acme.example (Mail Delivery System)"
    report["To"] = f"<{PARSE_TO}>"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = DATE
    report["Message-ID"] = f"<dsn-{status}-{action}@mx.acme.example>"
    report["Auto-Submitted"] = "auto-replied"
    return report


CLIENTS = {"gmail": gmail, "outlook_cp1252": outlook_cp1252, "apple_mail": apple_mail,
           "thunderbird_latin1": thunderbird_latin1, "outlook_german_cp1252": outlook_german_cp1252,
           "russian_base64": russian_base64, "japanese_base64": japanese_base64,
           "japanese_iso2022": japanese_iso2022, "with_attachment": with_attachment}


# --- the two Inbound Parse modes -------------------------------------------------------------------

def _field(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return f"--{BOUNDARY}\r\n".encode() + head.encode() + b"\r\n" + value + b"\r\n"


def _form(fields: list[bytes]) -> tuple[str, bytes]:
    return f"multipart/form-data; boundary={BOUNDARY}", b"".join(fields) + f"--{BOUNDARY}--\r\n".encode()


def _envelope(msg: Message, sender: str | None) -> bytes:
    return json.dumps({"to": [PARSE_TO], "from": sender if sender is not None else "dana.reyes@northwind.example"}
                      ).encode()


def raw_post(msg: Message, outcome_id: str = "OUTCOME_ID", envelope_from: str | None = None) -> tuple[str, bytes]:
    """'POST the raw, full MIME message': the message's bytes (CRLF, as on the wire) in `email`."""
    wire = msg.as_bytes(policy=policy.SMTP).replace(b"OUTCOME_ID", outcome_id.encode())
    return _form([_field("dkim", b"{@northwind.example : pass}"), _field("email", wire),
                  _field("to", msg["To"].replace("OUTCOME_ID", outcome_id).encode()),
                  _field("from", str(msg["From"]).encode()), _field("sender_ip", b"203.0.113.7"),
                  _field("envelope", _envelope(msg, envelope_from).replace(b"OUTCOME_ID", outcome_id.encode())),
                  _field("subject", str(msg["Subject"]).encode()), _field("spam_score", b"0.1"),
                  _field("charsets", b'{"to":"UTF-8","subject":"UTF-8","from":"UTF-8"}'), _field("SPF", b"pass")])


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
        if part.get_content_type() == "message/delivery-status" or not part.is_multipart():
            return [part]
        return [leaf for child in part.get_payload() for leaf in leaves(child)]

    for part in leaves(msg):
        kind = part.get_content_type()
        if part.get_filename() or kind not in ("text/plain", "text/html"):
            if kind == "message/delivery-status":
                payload = "".join(str(p) for p in part.get_payload()).encode()  # the field blocks as sent
                files.append(("details.txt", kind, payload))
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
    fields = [_field("headers", header_block), _field("dkim", b"{@northwind.example : pass}"),
              _field("to", msg["To"].replace("OUTCOME_ID", outcome_id).encode()), _field("from", str(msg["From"]).encode()),
              _field("sender_ip", b"203.0.113.7"), _field("subject", subject.encode())]
    if text:
        fields.append(_field("text", text[0]))
        charsets["text"] = text[1]
    if html:
        fields.append(_field("html", html[0]))
        charsets["html"] = html[1]
    info = {f"attachment{i}": {"filename": name, "type": kind} for i, (name, kind, _) in enumerate(files, start=1)}
    fields += [_field("envelope", _envelope(msg, envelope_from).replace(b"OUTCOME_ID", outcome_id.encode())),
               _field("attachments", str(len(files)).encode())]
    if files:
        fields.append(_field("attachment-info", json.dumps(info).encode()))
        fields += [_field(f"attachment{i}", body, filename=name, content_type=kind)
                   for i, (name, kind, body) in enumerate(files, start=1)]
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
        "resource": "/webhooks/sendgrid/inbound/{token}", "path": f"/webhooks/sendgrid/inbound/{token}",
        "httpMethod": "POST", "headers": {"Content-Type": content_type, "Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": [content_type]}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"token": token}, "stageVariables": None,
        "requestContext": {"resourcePath": "/webhooks/sendgrid/inbound/{token}", "httpMethod": "POST",
                           "path": f"/dev/webhooks/sendgrid/inbound/{token}", "stage": "dev", "requestId": "r-1",
                           "accountId": "123456789012", "apiId": "abc123", "identity": {"sourceIp": "198.51.100.20"}},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }

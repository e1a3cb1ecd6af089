"""SendGrid Inbound Parse: a reply, as parsed multipart fields or as the raw MIME message."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from flywheel.domain.ingest import IncomingEvent, content_key
from flywheel.domain.lifecycle import EventType
from flywheel.domain.registration import normalise_message_id
from flywheel.domain.reply_text import reply_text
from flywheel.errors import InvalidInput, MalformedPayload

PROVIDER = "sendgrid_inbound"
_REPLY_TO = re.compile(r"^reply\+([0-9a-fA-F-]{36})@(.+)$")
_MESSAGE_IDS = re.compile(r"<([^<>\s]+)>")
@dataclass
class Reply:
    sender: str | None
    recipients: list[str]
    subject: str | None
    text: str
    message_id: str | None
    references: list[str] = field(default_factory=list)
    sent_at: datetime | None = None


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    if "multipart/form-data" not in content_type.lower():
        raise MalformedPayload("expected multipart/form-data from SendGrid Inbound Parse")
    envelope = b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    message = BytesParser(policy=policy.HTTP).parsebytes(envelope)
    if not message.is_multipart():
        raise MalformedPayload("multipart body could not be parsed")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or part.get_filename():
            continue  # attachments are not needed to learn from a reply
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        fields[str(name)] = raw.decode(part.get_content_charset() or "utf-8", "replace")
    if not fields:
        raise MalformedPayload("multipart body has no fields")
    return fields


def _ids(value: str | None) -> list[str]:
    found = _MESSAGE_IDS.findall(value or "") or ([value.strip()] if value and value.strip() else [])
    return [mid for mid in (normalise_message_id(v) for v in found) if mid]


def _strip_html(markup: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _address(value: str | None) -> str | None:
    pairs = getaddresses([value or ""])
    return pairs[0][1].strip().lower() if pairs and pairs[0][1] else None


def _from_mime(raw: str) -> Reply:
    message = BytesParser(policy=policy.default).parsebytes(raw.encode("utf-8", "surrogateescape"))
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain", "html"))
    content = part.get_content() if part is not None else ""
    if part is not None and part.get_content_subtype() == "html":
        content = _strip_html(content)
    return Reply(
        sender=_address(message.get("from")),
        recipients=[a.lower() for _, a in getaddresses(message.get_all("to", []) + message.get_all("cc", [])) if a],
        subject=message.get("subject"),
        text=reply_text(str(content)),
        message_id=next(iter(_ids(message.get("message-id"))), None),
        references=_ids(message.get("in-reply-to")) + _ids(message.get("references")),
        sent_at=_date(message.get("date")),
    )


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_reply(content_type: str, body: bytes) -> Reply:
    fields = _form_fields(content_type, body)
    envelope: dict[str, Any] = {}
    if fields.get("envelope"):
        try:
            envelope = json.loads(fields["envelope"])
        except ValueError as exc:
            raise InvalidInput("envelope is not JSON", field="envelope") from exc
    # the SMTP envelope names the parse address even when the To header does not
    envelope_to = [str(a).lower() for a in envelope.get("to", []) if a]
    if "email" in fields:  # "POST the raw, full MIME message" is on
        reply = _from_mime(fields["email"])
        reply.recipients = list(dict.fromkeys(reply.recipients + envelope_to))
        return reply
    headers = HeaderParser(policy=policy.default).parsestr(fields.get("headers", ""))
    recipients = [a.lower() for _, a in getaddresses([fields.get("to", ""), fields.get("cc", "")]) if a]
    recipients += envelope_to
    text = fields.get("text") or _strip_html(fields.get("html", ""))
    if not (fields.get("from") or envelope.get("from")):
        raise InvalidInput("reply has no sender", field="from")
    return Reply(
        sender=_address(fields.get("from")) or str(envelope.get("from", "")).lower() or None,
        recipients=list(dict.fromkeys(recipients)),
        subject=fields.get("subject"),
        text=reply_text(text),
        message_id=next(iter(_ids(headers.get("message-id"))), None),
        references=_ids(headers.get("in-reply-to")) + _ids(headers.get("references")),
        sent_at=_date(headers.get("date")),
    )


def addressed_outcome(reply: Reply, domains: list[str]) -> str | None:
    """The outcome id carried by a `reply+<outcome_id>@<parse domain>` recipient."""
    for recipient in reply.recipients:
        match = _REPLY_TO.match(recipient)
        if match and (not domains or match.group(2) in domains):
            return match.group(1)
    return None


def recipient_domains(reply: Reply) -> set[str]:
    return {r.rsplit("@", 1)[1].lower() for r in reply.recipients if "@" in r}


def to_event(reply: Reply, domains: list[str], received_at: datetime) -> IncomingEvent:
    payload = {"from": reply.sender, "to": reply.recipients, "subject": reply.subject, "text": reply.text,
               "message_id": reply.message_id, "references": reply.references}
    return IncomingEvent(
        provider=PROVIDER,
        event_key=reply.message_id or content_key({k: payload[k] for k in ("from", "subject", "text")}),
        event_type=EventType.REPLY.value,
        occurred_at=reply.sent_at or received_at,
        payload=payload,
        data={"text": reply.text, "subject": reply.subject, "from": reply.sender},
        outcome_id=addressed_outcome(reply, domains),
        references=reply.references,
        email=reply.sender,
    )

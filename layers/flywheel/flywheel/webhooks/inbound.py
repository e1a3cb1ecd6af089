"""SendGrid Inbound Parse: a reply, as parsed multipart fields or as the raw MIME message.

Both modes end in the same `InboundMail`, so the same message is stored the same way whichever
mode the parse host uses:
- parsed mode posts every text field as the bytes of its original charset and names that charset in
  the `charsets` JSON field (an ISO-8859-1 reply arrives as Latin-1 bytes); raw mode posts the MIME
  message in `email`, whose parts declare their own charsets and transfer encodings;
- newlines are normalised (raw MIME has CRLF), the new text is cut from the quoted history and the
  signature (`flywheel.domain.reply_text`), and the full original is kept beside it;
- auto-replies are recognised by their headers (RFC 3834 and the common vendor headers) and subject,
  and delivery status notifications (RFC 3464, and the plain-text bounces of qmail, Yahoo and Exim)
  become bounce events for the original message;
- read receipts (RFC 8098) are kept, never applied, and answers to meeting invitations (iCalendar
  REPLY) book, cancel or answer by their PARTSTAT.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import _header_value_parser as header_tokens
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from flywheel.domain.ingest import IncomingEvent, bounded, content_key, org_keys
from flywheel.domain.inputs import BadValue, plausible
from flywheel.domain.lifecycle import EventType
from flywheel.domain.registration import normalise_message_id
from flywheel.domain.reply_rules import OUT_OF_OFFICE, return_date
from flywheel.domain.reply_text import html_to_text, normalise_newlines, reply_text
from flywheel.errors import InvalidInput, MalformedPayload

PROVIDER = "sendgrid_inbound"
_REPLY_TO = re.compile(r"^reply\+([0-9a-fA-F-]{36})@(.+)$")
_MESSAGE_IDS = re.compile(r"<([^<>\s]+)>")
# subjects that only automatic replies carry, in the languages our prospects write in
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply|out of (?:the )?office|ooo|"
    r"abwesenheitsnotiz|abwesend|automatische antwort|réponse automatique|absence|respuesta automática|"
    r"fuera de la oficina|resposta automática|ausência|risposta automatica|fuori ufficio|automatisch antwoord|"
    r"afwezig|автоответ|автоматический ответ|自動返信|自動応答|自动回复|自动答复|自動回覆|不在|자동 회신)\s*[:：]",
    re.IGNORECASE,
)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass
class AttachmentInfo:
    filename: str | None
    content_type: str
    size: int


@dataclass
class Bounce:
    """One failed (or delayed) recipient of a delivery status notification."""

    recipient: str | None  # Final-Recipient: where delivery failed
    action: str
    status: str | None
    diagnostic: str | None
    original_recipient: str | None = None  # the address our message was sent to, when forwarded

    @property
    def lead_address(self) -> str | None:
        """The address to attribute by: the one we wrote to (RFC 3464 Original-Recipient), else
        where it failed (a lead's forwarding to a dead mailbox names the dead mailbox last)."""
        return self.original_recipient or self.recipient

    @property
    def hard(self) -> bool:
        return bool(self.status and self.status.startswith("5"))


@dataclass
class DeliveryReport:
    original_message_id: str | None
    bounces: list[Bounce]
    reporting_mta: str | None = None
    source: str = "dsn"  # "dsn" (RFC 3464) or "bounce_text" (a plain-text bounce: qmail, Yahoo, Exim)


@dataclass
class Receipt:
    """A message disposition notification (RFC 8098 read receipt): "the message was displayed"."""

    disposition: str | None  # `manual-action/MDN-sent-manually; displayed`
    original_message_id: str | None
    recipient: str | None  # Final-Recipient: the reader

    @property
    def kind(self) -> str:
        """`displayed`, `deleted`, `dispatched`, `processed` (RFC 8098 disposition types)."""
        found = re.search(r";\s*([a-z-]+)", (self.disposition or "").lower())
        return found.group(1) if found else "unknown"


@dataclass
class CalendarReply:
    """An iCalendar REPLY (RFC 5546): an attendee's answer to an invitation (Outlook's "Accepted:",
    "Declined:", "Tentative:"; Google Calendar's and Apple's alike)."""

    partstat: str  # ACCEPTED, DECLINED, TENTATIVE, DELEGATED ...
    uid: str | None
    start: str | None
    end: str | None
    summary: str | None


@dataclass
class InboundMail:
    mode: str  # "raw" or "parsed"
    sender: str | None
    recipients: list[str]
    subject: str | None
    full_text: str  # the whole decoded body, quoted history included
    message_id: str | None
    references: list[str] = field(default_factory=list)
    sent_at: datetime | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    html: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    envelope: dict[str, Any] = field(default_factory=dict)
    charsets: dict[str, str] = field(default_factory=dict)
    report: DeliveryReport | None = None
    receipt: Receipt | None = None
    calendar: CalendarReply | None = None

    @property
    def text(self) -> str:
        """What the lead wrote: quoted history and signature cut off. Empty when they wrote
        nothing of their own (an attachment, "Sent from my iPhone" above the quote): the quoted
        history - our own message - is never stored or classified as theirs."""
        return reply_text(self.full_text)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def automated(self) -> str | None:
        """Why this mail was written by a machine (None for a person's reply)."""
        auto_submitted = (self.header("Auto-Submitted") or "").strip().lower()
        if auto_submitted and not auto_submitted.startswith("no"):
            return f"Auto-Submitted: {auto_submitted}"  # RFC 3834
        for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Autogenerated"):
            if self.header(name) is not None:
                return f"{name} header"
        precedence = (self.header("Precedence") or "").strip().lower()
        if precedence in ("auto_reply", "bulk", "junk"):
            return f"Precedence: {precedence}"
        return_path = self.header("Return-Path")
        if (return_path is not None and return_path.strip() in ("<>", "")) or self.envelope.get("from") in ("", "<>"):
            return "empty Return-Path"
        if self.subject and _AUTO_SUBJECT.match(self.subject):
            return "automatic-reply subject"
        return None


# --- headers ---------------------------------------------------------------------------------------


class _Verbatim:
    """A header value kept as it was sent (undecodable bytes replaced): the last fallback."""

    max_count = None

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["decoded"] = value
        kwds["parse_tree"] = header_tokens.UnstructuredTokenList([header_tokens.ValueTerminal(value, "vtext")])


# MIME headers the email package reads attributes of (`is_attachment` reads `content_disposition`)
_MIME_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding", "mime-version"})


class _LenientHeaders(HeaderRegistry):
    """The standard header factory, except that a value its parser cannot read is never an error.

    CPython's structured header parsers raise on some malformed values (`Message-ID: <@>` and
    `From: =?utf-8?q?=E2?= <` raise IndexError when the header is read, an encoded word in the
    `undefined` charset raises UnicodeError), and they run whenever a header is read. Such a header
    reads as unstructured text (the address and Message-ID readers here work on its text), or when
    even that parser cannot read it, as sent; an unreadable MIME header reads as absent (RFC 2045:
    text/plain, 7bit, inline)."""

    def __init__(self) -> None:
        super().__init__()
        self._unstructured = self["X-Unparseable"]
        self._verbatim = type("_VerbatimHeader", (_Verbatim, BaseHeader), {})

    def __call__(self, name: str, value: str) -> Any:
        header_class = self[name]
        try:
            return header_class(name, value)
        except Exception:  # IndexError, ValueError, UnicodeError ...: whatever the parser trips on
            if name.lower() in _MIME_HEADERS:
                return header_class(name, "")
        try:
            return self._unstructured(name, value)
        except Exception:
            return self._verbatim(name, value)


# the policies every mail, header block and form of a request is read with
_MAIL_POLICY = policy.default.clone(header_factory=_LenientHeaders())
_FORM_POLICY = policy.HTTP.clone(header_factory=_LenientHeaders())


def _filename(part: Message) -> str | None:
    """The part's file name; one in an RFC 2231 charset no codec can read (`undefined`) is none."""
    try:
        return part.get_filename()
    except (LookupError, UnicodeError):
        return None


# --- decoding --------------------------------------------------------------------------------------

# Labels that mail clients put on text written in a superset of the labelled charset (the WHATWG
# Encoding Standard reads them the same way): Outlook labels windows-1252 as ISO-8859-1, Windows
# labels cp932 (①, ～, NEC and IBM extensions) as Shift_JIS and GBK as GB2312, Big5 mail carries
# HKSCS characters, and EUC-KR mail carries the Unified Hangul Code (cp949). ISO-2022-JP is read
# with JIS X 0201 katakana (`iso2022_jp_ext`) and, see `_jis_windows`, the NEC characters.
_SUPERSETS = {
    "iso8859-1": "windows-1252",
    "ascii": "windows-1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "euc_kr": "cp949",
    "iso2022_jp": "iso2022_jp_ext",
}

# The labels of the WHATWG Encoding Standard's table (https://encoding.spec.whatwg.org/#names-and-labels)
# that Python's codec registry does not know, with the encoding the standard reads them as. Java's
# and Windows' names among them are real mail labels: `Windows-31J` (JavaMail's Shift_JIS),
# `ISO-8859-8-I` (Hebrew in logical order: the same bytes as ISO-8859-8), `ks_c_5601-1989`.
# The labels the standard reads as `replacement` (ISO-2022-KR, ISO-2022-CN, HZ) stay Python's codecs:
# a browser refuses them for script-injection reasons that do not apply to stored text.
_WHATWG_LABELS = {
    **dict.fromkeys(("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"), "utf-8"),
    **{f"iso8859{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15)},
    **dict.fromkeys(("iso-8859-6-e", "iso-8859-6-i", "csiso88596e", "csiso88596i"), "iso8859-6"),
    "sun_eu_greek": "iso8859-7",
    **dict.fromkeys(("iso-8859-8-e", "iso-8859-8-i", "csiso88598e", "csiso88598i", "visual", "logical"), "iso8859-8"),
    "csisolatin9": "iso8859-15",
    **dict.fromkeys(("koi", "koi8"), "koi8-r"),
    "koi8-ru": "koi8-u",
    **dict.fromkeys(("mac", "csmacintosh"), "mac-roman"),
    "x-mac-ukrainian": "mac-cyrillic",
    **dict.fromkeys(("windows-874", "dos-874", "iso885911"), "cp874"),
    "iso88591": "windows-1252",
    "iso88599": "cp1254",
    **dict.fromkeys(("csgb2312", "gb_2312", "gb_2312-80"), "gb18030"),
    **dict.fromkeys(("cn-big5", "x-x-big5"), "big5hkscs"),
    "cseucpkdfmtjapanese": "euc_jp",
    "windows-31j": "cp932",
    **dict.fromkeys(("cseuckr", "csksc56011987", "iso-ir-149", "ks_c_5601-1989", "ksc_5601", "windows-949"), "cp949"),
    "unicodefffe": "utf-16-be",
    **dict.fromkeys(("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff"), "utf-16-le"),
}


# Codecs that turn bytes into text but are no charset: unicode_escape makes a NUL of the six
# characters `\u0000`, punycode and idna read host names, `undefined` always fails. Like the bytes
# codecs (base64, zlib, rot13 ...: not text encodings at all) they read as an unknown charset.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined", "charmap"})


def _codec(charset: str) -> codecs.CodecInfo | None:
    label = charset.strip().strip('"').lower()
    label = _WHATWG_LABELS.get(label, label)
    for name in (label, label.removeprefix("x-")):  # x-mac-cyrillic, x-sjis ...
        try:
            found = codecs.lookup(name)
        except LookupError:
            continue
        if not getattr(found, "_is_text_encoding", True) or found.name in _NOT_CHARSETS:
            continue
        superset = _SUPERSETS.get(found.name)
        return codecs.lookup(superset) if superset else found
    return None


def _decode(raw: bytes, charset: str | None) -> str:
    """Bytes in their declared charset (read as the superset clients really write in); UTF-8
    mislabelled as a single-byte charset (a valid multi-byte UTF-8 sequence is next to impossible
    in real Latin-1 or Cyrillic text) and undeclared or unknown charsets are read as UTF-8, else as
    windows-1252 (what clients that forget to declare it send); never raises.

    Text with ISO-2022-JP escape sequences is never read as UTF-8 (its bytes are 7-bit, so UTF-8
    "succeeds" and keeps the escapes): undeclared, it is read as ISO-2022-JP."""
    codec = _codec(charset) if charset else None
    if (codec is None or codec.name == "utf-8") and _JIS_ESCAPE.search(raw) and raw.isascii():
        codec = codecs.lookup("iso2022_jp_ext")
    if codec is not None and codec.name.startswith("iso2022_jp") and _JIS_ESCAPE.search(raw):
        return raw.decode(codec.name, _JIS_WINDOWS)  # never fails: the last resort is U+FFFD
    if codec is not None and codec.name != "utf-8" and _single_byte(codec) and not raw.isascii():
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for candidate in (codec, codecs.lookup("utf-8")):
        if candidate is None:
            continue
        try:
            return raw.decode(candidate.name)
        except UnicodeError:
            continue
    return raw.decode("windows-1252", "replace")


# the designations of ISO-2022-JP (RFC 1468) and its extensions: ASCII, JIS X 0201, JIS X 0208, JIS X 0212
_JIS_ESCAPE = re.compile(rb"\x1b(?:\$[@B]|\([BJI]|\$\(D)")
_JIS_WINDOWS = "flywheel-jis-windows"


def _jis_windows(error: UnicodeError) -> tuple[str, int]:
    """Python's ISO-2022-JP codecs read JIS X 0208 only; Windows writes its own characters into
    ISO-2022-JP too (CP50220: NEC row 13 ① ㈱ №, the NEC-selected IBM rows 89-92), and the WHATWG
    Encoding Standard's jis0208 index reads them. A pair the codec refuses is read as that index
    does: the same JIS row and cell in cp932 (Windows' Shift_JIS, whose index it is). The decoder
    stays in its two-byte state; anything else is U+FFFD."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    pair = error.object[error.start : error.start + 2]
    if len(pair) == 2 and all(0x21 <= b <= 0x7E for b in pair):
        row, cell = pair
        lead = (row + 1) // 2 + (0x70 if row <= 0x5E else 0xB0)
        trail = cell + (0x1F if row % 2 else 0x7D)
        trail += 1 if row % 2 and trail >= 0x7F else 0
        try:
            return bytes((lead, trail)).decode("cp932"), error.start + 2
        except UnicodeDecodeError:
            pass
    return "\ufffd", error.end


codecs.register_error(_JIS_WINDOWS, _jis_windows)


def _single_byte(codec: codecs.CodecInfo) -> bool:
    return codec.name.startswith(("cp12", "iso8859", "koi8", "mac-", "cp874", "cp85", "cp86"))


@dataclass
class _Part:
    raw: bytes
    content_type: str
    filename: str | None


def _form_parts(content_type: str, body: bytes) -> dict[str, _Part]:
    if "multipart/form-data" not in content_type.lower():
        raise MalformedPayload("expected multipart/form-data from SendGrid Inbound Parse")
    envelope = b"Content-Type: " + content_type.encode(errors="replace") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    message = BytesParser(policy=_FORM_POLICY).parsebytes(envelope)
    if not message.is_multipart():
        raise MalformedPayload("multipart body could not be parsed")
    parts: dict[str, _Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):  # message/* file parts are parsed as messages: keep their bytes
            inner = part.get_payload()
            payload = b"".join(
                m.as_bytes() if isinstance(m, Message) else str(m).encode()
                for m in (inner if isinstance(inner, list) else [inner])
            )
        parts[str(name)] = _Part(payload, part.get_content_type(), _filename(part))
    if not parts:
        raise MalformedPayload("multipart body has no fields")
    return parts


def _json_field(parts: dict[str, _Part], name: str) -> dict[str, Any]:
    if name not in parts or not parts[name].raw.strip():
        return {}
    try:
        value = json.loads(_decode(parts[name].raw, "utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise InvalidInput(f"{name} is not JSON", field=name) from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return value


def _ids(value: str | None) -> list[str]:
    found = _MESSAGE_IDS.findall(value or "") or ([value.strip()] if value and value.strip() else [])
    return [mid for mid in (normalise_message_id(v) for v in found) if mid and _names_a_message(mid)]


def _links(value: str | None) -> list[str]:
    """The Message-IDs a mail refers to, as link hints: one longer than RFC 5322's 998 octets can be
    no registered message's (registration refuses it), and would overflow the orphans' index
    (outcome_events_orphan_references): it links nothing, and the mail is kept."""
    return [mid for mid in _ids(value) if len(mid.encode("utf-8", "surrogatepass")) <= 998]


def _names_a_message(message_id: str) -> bool:
    """`<@>`, `<x@>` name no message: keyed by one, the replies of different people would be taken
    for the same reply (and all but the first dropped as duplicates)."""
    return all(any(c.isalnum() for c in side) for side in message_id.split("@", 1))


def _address(value: str | None) -> str | None:
    pairs = getaddresses([value or ""])
    return pairs[0][1].strip().lower() if pairs and pairs[0][1] else None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _header_value(value: Any) -> str:
    return " ".join(str(value).split())


# --- delivery status notifications (RFC 3464) ------------------------------------------------------


def _field_blocks(text: str) -> list[Message]:
    blocks = re.split(r"\n\s*\n", normalise_newlines(text).strip())
    return [HeaderParser().parsestr(block.strip() + "\n") for block in blocks if block.strip()]


def _typed(value: str | None) -> str | None:
    """`rfc822; lee@contoso.example` -> `lee@contoso.example`; `smtp; 550 ...` -> `550 ...`."""
    if value is None:
        return None
    return " ".join(value.split(";", 1)[-1].split()) or None


def _address_field(value: str | None) -> str | None:
    address = _typed(value)
    return address.strip("<>").lower() if address else None


def parse_delivery_status(status_text: str, original_headers: str | None) -> DeliveryReport:
    blocks = _field_blocks(status_text)
    per_message = blocks[0] if blocks else Message()
    bounces = []
    for block in blocks[1:] or blocks:
        first = _address_field(block.get("Original-Recipient"))
        recipient = _address_field(block.get("Final-Recipient")) or first
        action = (block.get("Action") or "").strip().lower()
        if not recipient and not action:
            continue
        status_match = _STATUS.search(block.get("Status") or "") or _STATUS.search(block.get("Diagnostic-Code") or "")
        bounces.append(
            Bounce(
                recipient=recipient,
                action=action or "failed",
                status=status_match.group(0) if status_match else None,
                diagnostic=_typed(block.get("Diagnostic-Code")),
                original_recipient=first if first != recipient else None,
            )
        )
    original = HeaderParser().parsestr(normalise_newlines(original_headers)) if original_headers else Message()
    message_id = next(iter(_links(original.get("Message-ID"))), None)
    return DeliveryReport(
        original_message_id=message_id, bounces=bounces, reporting_mta=_typed(per_message.get("Reporting-MTA"))
    )


# RFC 3464, and RFC 6533's internationalised forms (Postfix and Exchange send them for SMTPUTF8 mail)
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")


def _is_report(content_type: str | None) -> bool:
    value = (content_type or "").lower()
    return "multipart/report" in value and "delivery-status" in value


# --- read receipts (RFC 8098 message disposition notifications) -----------------------------------

_MDN_TYPES = ("message/disposition-notification", "message/global-disposition-notification")  # RFC 6533


def _is_receipt(content_type: str | None) -> bool:
    value = (content_type or "").lower()
    return "multipart/report" in value and "disposition-notification" in value


def parse_receipt(fields_text: str) -> Receipt:
    blocks = _field_blocks(fields_text)
    fields = blocks[0] if blocks else Message()
    return Receipt(
        disposition=" ".join((fields.get("Disposition") or "").split()) or None,
        original_message_id=next(iter(_links(fields.get("Original-Message-ID"))), None),
        recipient=_address_field(fields.get("Final-Recipient") or fields.get("Original-Recipient")),
    )


# --- plain-text bounces (qmail, Yahoo, Exim: no RFC 3464 report) -----------------------------------

# who sends bounces: the null sender (RFC 5321 4.5.5) or a mailer daemon
_DAEMONS = frozenset({"mailer-daemon", "mailer_daemon", "mail-daemon", "maildaemon", "postmaster"})
# the subjects of the bounces that are no RFC 3464 report (anchored: "Re:"/"Fwd:" of one is a person)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:failure notice|mail delivery failed|undeliver(?:ed|able)(?: mail)?\b|delivery (?:status notification "
    r"\(failure\)|failure|has failed)|returned mail|mail system error|non-?delivery|message not delivered|"
    r"warning: could not send message)",
    re.IGNORECASE,
)
# where the returned copy of our message starts (qmail/Yahoo, Exim, Sendmail/others)
_RETURNED_COPY = re.compile(
    r"^-+ ?(?:below this line is a copy of the message|this is a copy of the message|original message|"
    r"the header of the original message is following).*$",
    re.IGNORECASE | re.MULTILINE,
)
# qmail and Yahoo: `<address>:` on its own line, then the reason until a blank line
_QMAIL_RECIPIENT = re.compile(r"^<([^<>\s@]+@[^<>\s]+)>:[ \t]*\n((?:[ \t]*\S.*(?:\n|$))*)", re.MULTILINE)
# Exim: "The following address(es) failed:", a blank line, the address indented, the reason indented deeper
_EXIM_RECIPIENT = re.compile(
    r"^[ \t]{1,3}<?([^<>\s@]+@[^<>\s:]+?)>?:?[ \t]*\n((?:[ \t]{4,}\S.*(?:\n|$))*)", re.MULTILINE
)
_EXIM_FAILED = re.compile(r"following address(?:es|\(es\))? failed:", re.IGNORECASE)
_SMTP_REPLY = re.compile(r"(?:^|[\s:(])([45])\d\d(?=[\s:-])")
_PERMANENT = re.compile(r"permanent (?:error|failure)|user unknown|no (?:such user|mailbox)", re.IGNORECASE)
_TEMPORARY = re.compile(r"temporary (?:error|failure)|too long in the queue", re.IGNORECASE)


def _from_a_daemon(mail: InboundMail) -> bool:
    return_path = mail.header("Return-Path")
    local = (mail.sender or "").rsplit("@", 1)[0]
    return (
        (return_path is not None and return_path.strip() in ("<>", ""))
        or mail.envelope.get("from") in ("", "<>")
        or local in _DAEMONS
    )


def _text_status(reason: str, whole: str) -> str | None:
    """The status a plain-text bounce gives a recipient: its enhanced code (RFC 3463) when it has
    one, else the class of its SMTP reply code or of what the text says (`x.0.0`); None when it
    says neither (a failure of unknown severity counts as soft: no address is marked dead on a guess)."""
    if found := _STATUS.search(reason):
        return found.group(0)
    if found := _SMTP_REPLY.search(reason):
        return f"{found.group(1)}.0.0"
    if _PERMANENT.search(reason) or _PERMANENT.search(whole):
        return "5.0.0"
    if _TEMPORARY.search(reason) or _TEMPORARY.search(whole):
        return "4.0.0"
    return None


def parse_text_bounce(mail: InboundMail) -> DeliveryReport | None:
    """A bounce that is no multipart/report: one from a mailer daemon or the null sender, or with a
    bounce subject, whose text names the failed recipients the way qmail (and Yahoo, its heir) or
    Exim write them. A person's reply quoting a bounce is neither: it comes from the person, under
    "Re:"/"Fwd:"."""
    if not (_from_a_daemon(mail) or (mail.subject and _BOUNCE_SUBJECT.match(mail.subject))):
        return None
    text = normalise_newlines(mail.full_text)
    copy = _RETURNED_COPY.search(text)
    notice, returned = (text[: copy.start()], text[copy.end() :]) if copy else (text, "")
    found = _QMAIL_RECIPIENT.findall(notice)
    if not found and (failed := _EXIM_FAILED.search(notice)):
        found = _EXIM_RECIPIENT.findall(notice[failed.end() :])
    bounces = []
    for address, reason_lines in found:
        reason = " ".join(reason_lines.split()) or None
        status = _text_status(reason or "", notice)
        bounces.append(Bounce(recipient=address.lower(), action="failed", status=status, diagnostic=reason))
    if not bounces and not (_from_a_daemon(mail) and mail.subject and _BOUNCE_SUBJECT.match(mail.subject)):
        return None  # not a bounce we know: read as any other (automatic) mail
    original = HeaderParser().parsestr(returned.lstrip("\n").split("\n\n", 1)[0] + "\n")
    return DeliveryReport(
        original_message_id=next(iter(_links(original.get("Message-ID"))), None),
        bounces=bounces,
        source="bounce_text",
    )


# --- calendar replies (RFC 5545 / RFC 5546 iTIP) --------------------------------------------------


def parse_calendar_reply(ics: str) -> CalendarReply | None:
    """The attendee's answer in an iCalendar `METHOD:REPLY` (None for any other calendar: an
    invitation, a cancellation). Lines are unfolded (RFC 5545 3.1); the first VEVENT is read."""
    lines = re.sub(r"\n[ \t]", "", normalise_newlines(ics)).split("\n")
    method, in_event = None, False
    event: dict[str, str] = {}
    partstat = None
    for line in lines:
        name_params, _, value = line.partition(":")
        name, *params = name_params.split(";")
        name = name.strip().upper()
        if name == "METHOD":
            method = value.strip().upper()
        elif name == "BEGIN" and value.strip().upper() == "VEVENT":
            in_event = True
        elif name == "END" and value.strip().upper() == "VEVENT":
            break
        elif in_event and name == "ATTENDEE" and partstat is None:
            stated = [p.split("=", 1)[1] for p in params if p.upper().startswith("PARTSTAT=")]
            partstat = stated[0].strip().strip('"').upper() if stated else None
        elif in_event and name in ("UID", "DTSTART", "DTEND", "SUMMARY"):
            event.setdefault(name, value.strip())
    if method != "REPLY" or partstat is None:
        return None
    return CalendarReply(
        partstat=partstat,
        uid=event.get("UID") or None,
        start=_ical_time(event.get("DTSTART")),
        end=_ical_time(event.get("DTEND")),
        summary=event.get("SUMMARY") or None,
    )


def _ical_time(value: str | None) -> str | None:
    """`20261201T140000Z` -> ISO 8601 UTC; a floating or zoned local time is kept without a zone
    (read as UTC downstream, like a CRM's date); a date alone is midnight."""
    found = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?", (value or "").strip())
    if not found:
        return None
    y, mo, d, h, mi, sec, utc = found.groups()
    try:
        moment = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0))
    except ValueError:
        return None
    return (moment.replace(tzinfo=UTC) if utc else moment).isoformat()


# --- raw mode ----------------------------------------------------------------------------------------


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else str(part.get_payload()).encode("utf-8", "replace")
    return _decode(raw, part.get_content_charset())


def _header_block(message: Message) -> str:
    """The fields of a header block as they were sent (no parser, no refolding: neither can fail)."""
    return "".join(f"{k}: {_sanitized(v)}\n" for k, v in message.raw_items())


def _as_text(message: Message) -> str:
    """A message as it was sent: its header block, then its body when it is text (the per-recipient
    fields of a message/global-delivery-status part are read as the body of its first block)."""
    payload = message.get_payload()
    return _header_block(message) + ("\n" + _sanitized(payload) if isinstance(payload, str) and payload else "")


def _sanitized(value: Any) -> str:
    """Undecodable bytes (kept by the parser as surrogate escapes) read as U+FFFD."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _raw_report(message: EmailMessage) -> DeliveryReport | None:
    if not _is_report(message.get("content-type")):
        return None
    status_text, original = "", None
    for part in message.walk():
        kind = part.get_content_type()
        if kind in _STATUS_TYPES:
            blocks = part.get_payload()
            status_text = "\n\n".join(
                _as_text(b) if isinstance(b, Message) else str(b)
                for b in (blocks if isinstance(blocks, list) else [blocks])
            )
        elif kind in ("message/rfc822", "message/global", "message/global-headers") and original is None:
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(first, Message):
                original = _header_block(first)
        elif kind == "text/rfc822-headers" and original is None:
            original = _part_text(part)
    return parse_delivery_status(status_text, original)


def _raw_receipt(message: EmailMessage) -> Receipt | None:
    if not _is_receipt(message.get("content-type")):
        return None
    for part in message.walk():
        if part.get_content_type() in _MDN_TYPES:
            inner = part.get_payload()  # the parser reads message/* as an embedded message: the fields
            first = inner[0] if isinstance(inner, list) and inner else inner
            return parse_receipt(_as_text(first) if isinstance(first, Message) else _sanitized(first))
    return Receipt(disposition=None, original_message_id=None, recipient=None)


_CALENDAR_TYPES = ("text/calendar", "application/ics")


def _raw_calendar(message: EmailMessage) -> CalendarReply | None:
    for part in message.walk():
        if part.get_content_type() in _CALENDAR_TYPES and (found := parse_calendar_reply(_part_text(part))):
            return found
    return None


def _from_mime(raw: bytes) -> InboundMail:
    message = BytesParser(policy=_MAIL_POLICY).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain", "html"))
    text, markup = "", None
    if body is not None:
        text = _part_text(body)
        if body.get_content_subtype() == "html":
            markup, text = text, html_to_text(text)
    attachments = [
        AttachmentInfo(name, p.get_content_type(), len(p.get_payload(decode=True) or b""))
        for p in message.walk()
        if (name := _filename(p)) and not p.is_multipart()
    ]
    return InboundMail(
        mode="raw",
        sender=_address(message.get("from")),
        recipients=[
            a.lower()
            for _, a in getaddresses([str(v) for v in message.get_all("to", []) + message.get_all("cc", [])])
            if a
        ],
        subject=_header_value(message.get("subject")) if message.get("subject") is not None else None,
        full_text=normalise_newlines(text),
        message_id=next(iter(_ids(message.get("message-id"))), None),
        references=_links(message.get("in-reply-to")) + _links(message.get("references")),
        sent_at=_date(message.get("date")),
        headers=[(k, _header_value(v)) for k, v in message.items()],
        html=markup,
        attachments=attachments,
        report=_raw_report(message),
        receipt=_raw_receipt(message),
        calendar=_raw_calendar(message),
    )


# --- parsed mode -------------------------------------------------------------------------------------


def _attachment_info(parts: dict[str, _Part]) -> dict[str, dict[str, str]]:
    """`{"attachment1": {"filename": ..., "type": ...}}`; an entry or a member of another shape says
    nothing (the file part itself still names its file and type)."""
    return {
        name: {k: v for k, v in entry.items() if k in ("filename", "type") and isinstance(v, str)}
        for name, entry in _json_field(parts, "attachment-info").items()
        if isinstance(entry, dict)
    }


def _from_fields(parts: dict[str, _Part], charsets: dict[str, str]) -> InboundMail:
    def text_field(name: str) -> str:
        return normalise_newlines(_decode(parts[name].raw, charsets.get(name))) if name in parts else ""

    headers = HeaderParser(policy=_MAIL_POLICY).parsestr(text_field("headers"))
    markup = text_field("html") or None
    body = text_field("text") or (html_to_text(markup) if markup else "")
    files = {
        name: p
        for name, p in parts.items()
        if p.filename is not None or name.startswith("attachment") and name[10:].isdigit()
    }
    info = _attachment_info(parts)
    attachments = [
        AttachmentInfo(
            p.filename or info.get(name, {}).get("filename"),
            info.get(name, {}).get("type") or p.content_type,
            len(p.raw),
        )
        for name, p in sorted(files.items())
    ]
    report = None
    if _is_report(headers.get("content-type")):
        kinds = {name: (info.get(name, {}).get("type") or p.content_type).lower() for name, p in files.items()}
        status = next((files[n].raw for n, k in kinds.items() if k in _STATUS_TYPES), b"")
        original = next((files[n].raw for n, k in kinds.items() if k in _ORIGINAL_TYPES), None)
        # without the machine-readable part, the human-readable text usually repeats its fields
        report = parse_delivery_status(
            _decode(status, "utf-8") if status else body,
            _decode(original, "utf-8").split("\n\n", 1)[0] if original else None,
        )
    receipt = None
    if _is_receipt(headers.get("content-type")):
        kinds = {name: (info.get(name, {}).get("type") or p.content_type).lower() for name, p in files.items()}
        fields = next((files[n].raw for n, k in kinds.items() if k in _MDN_TYPES), b"")
        receipt = parse_receipt(_decode(fields, "utf-8") if fields else "")
    calendar = next(
        (
            found
            for name, p in sorted(files.items())
            if (info.get(name, {}).get("type") or p.content_type).lower() in _CALENDAR_TYPES
            and (found := parse_calendar_reply(_decode(p.raw, "utf-8")))
        ),
        None,
    )
    sender = _address(text_field("from")) or _address(headers.get("from"))
    return InboundMail(
        mode="parsed",
        sender=sender,
        recipients=[a.lower() for _, a in getaddresses([text_field("to"), text_field("cc")]) if a],
        subject=" ".join(text_field("subject").split()) or None,
        full_text=body,
        message_id=next(iter(_ids(headers.get("message-id"))), None),
        references=_links(headers.get("in-reply-to")) + _links(headers.get("references")),
        sent_at=_date(headers.get("date")),
        headers=[(k, _header_value(v)) for k, v in headers.items()],
        html=markup,
        attachments=attachments,
        charsets=charsets,
        report=report,
        receipt=receipt,
        calendar=calendar,
    )


def parse_mail(content_type: str, body: bytes) -> InboundMail:
    parts = _form_parts(content_type, body)
    envelope = _json_field(parts, "envelope")
    # SendGrid's envelope is {"to": [addresses], "from": address} and its charsets {field: charset}:
    # a member of another shape is ignored (the headers and the fields still say who and how)
    charsets = {str(k): v for k, v in _json_field(parts, "charsets").items() if isinstance(v, str)}
    envelope_from = envelope.get("from") if isinstance(envelope.get("from"), str) else None
    envelope_to = _envelope_to(envelope)
    if "email" in parts:  # "POST the raw, full MIME message" is on
        mail = _from_mime(parts["email"].raw)
    else:
        mail = _from_fields(parts, charsets)
        if not (mail.sender or envelope_from or mail.report or mail.receipt):
            raise InvalidInput("reply has no sender", field="from")
    mail.envelope = envelope
    mail.charsets = charsets
    # the SMTP envelope names the parse address even when the To header does not
    mail.recipients = list(dict.fromkeys(mail.recipients + envelope_to))
    if mail.sender is None and envelope_from:
        mail.sender = envelope_from.lower()
    if mail.report is None and mail.receipt is None:
        mail.report = parse_text_bounce(mail)  # needs the envelope: who sent it
    return mail


def kind(mail: InboundMail, events: list[IncomingEvent]) -> str:
    """What the mail was, for the webhook's answer: bounce, receipt, calendar, auto_reply or reply."""
    if mail.report is not None:
        return "bounce"
    if mail.receipt is not None:
        return "receipt"
    replies = [e for e in events if e.event_type == EventType.REPLY.value]
    if mail.calendar is not None and not any(e.data.get("text") for e in replies):
        return "calendar"
    return "auto_reply" if replies and replies[0].data.get("automated") else "reply"


def _envelope_to(envelope: dict[str, Any]) -> list[str]:
    to = envelope.get("to")
    return [
        a.lower()
        for a in ([to] if isinstance(to, str) else to if isinstance(to, list) else [])
        if a and isinstance(a, str)
    ]


def reply_address(mail: InboundMail, domains: list[str]) -> tuple[str, str] | None:
    """(outcome id, parse domain) of the `reply+<outcome_id>@<parse domain>` recipient the mail is
    linked by: one of the SMTP envelope's first (where this delivery went), else one of the To/Cc
    headers whose domain this delivery went to (any, when there is no envelope). A header address of
    another parse domain is ignored, for the outcome id and the organisation alike: the sender writes
    the headers, and a reply that copies another organisation's reply+ address was delivered here
    as this domain's mail (that organisation's own delivery, if any, comes through its own URL)."""
    envelope = _envelope_to(mail.envelope)
    delivered_to = {r.rsplit("@", 1)[1] for r in envelope if "@" in r}
    for recipient in [*envelope, *mail.recipients]:
        match = _REPLY_TO.match(recipient)
        if not match or (domains and match.group(2) not in domains):
            continue
        if delivered_to and match.group(2) not in delivered_to:
            continue
        return match.group(1), match.group(2)
    return None


def addressed_outcome(mail: InboundMail, domains: list[str]) -> str | None:
    """The outcome id carried by a `reply+<outcome_id>@<parse domain>` recipient."""
    found = reply_address(mail, domains)
    return found[0] if found else None


def addressed_org(mail: InboundMail, domains: list[str], org_of: Callable[[str], str | None]) -> str | None:
    """The organisation a mail was sent to (`org_of`: a parse domain's): that of the matched
    reply+ address's domain, else that of the SMTP envelope's recipients when their domains name one
    organisation; else none. Never the To/Cc headers alone: the sender writes them, and a reply that
    copies another organisation's parse domain is still a reply to the message it answers."""
    found = reply_address(mail, domains)
    if found and (org := org_of(found[1])):
        return org
    orgs = {org for r in _envelope_to(mail.envelope) if "@" in r and (org := org_of(r.rsplit("@", 1)[1]))}
    return orgs.pop() if len(orgs) == 1 else None


def recipient_domains(mail: InboundMail) -> set[str]:
    return {r.rsplit("@", 1)[1].lower() for r in mail.recipients if "@" in r}


def _payload(mail: InboundMail) -> dict[str, Any]:
    """What is kept of the provider's post: headers, the full decoded text, attachment metadata."""
    return {
        "mode": mail.mode,
        "from": mail.sender,
        "to": mail.recipients,
        "subject": mail.subject,
        "message_id": mail.message_id,
        "references": mail.references,
        "headers": mail.headers,
        "text": mail.full_text,
        "html": mail.html,
        "envelope": mail.envelope,
        "charsets": mail.charsets,
        "attachments": [a.__dict__ for a in mail.attachments],
    }


# how far ahead of our clock a sender's may run (time zones stamped as UTC, unsynchronised clocks)
_CLOCK_SKEW = timedelta(days=1)


def _occurred(sent_at: datetime | None, received_at: datetime) -> datetime:
    """When the mail was written: its Date header, unless that is missing, unreadable or one no
    mail can carry (before 2000 - a device whose clock was reset to 1970 - or a day or more after
    it arrived): then when it arrived. A broken clock must not cost the reply."""
    if sent_at is None:
        return received_at
    try:
        written = plausible(sent_at)
    except BadValue:
        return received_at
    return written if written <= received_at + _CLOCK_SKEW else received_at


def _keyed(org_id: str | None, key: str) -> dict[str, Any]:
    """An event's key within the organisation the mail reached: one mail sent to two organisations'
    parse addresses is an event of each. A key over the limit (a Message-ID may fill the 998-character
    line) is stored under its hash, never refused: the payload keeps the Message-ID, and links go by
    `references` as before (domain.ingest.org_keys)."""
    return {**org_keys(org_id, key), "org_id": org_id}


def to_events(
    mail: InboundMail, domains: list[str], received_at: datetime, org_id: str | None = None
) -> list[IncomingEvent]:
    """A reply (a person's or an automatic one) -> one reply event; a DSN -> one event per
    recipient. `org_id`: the organisation this delivery is for (its keys are that organisation's)."""
    occurred = _occurred(mail.sent_at, received_at)
    if mail.report is not None:
        return _bounce_events(mail, domains, occurred, org_id)
    if mail.receipt is not None:
        return [_receipt_event(mail, domains, occurred, org_id)]
    payload = _payload(mail)
    text = mail.text
    data: dict[str, Any] = {"text": text, "full_text": mail.full_text, "subject": mail.subject, "from": mail.sender}
    why = mail.automated
    if why is not None:
        out_of_office = bool(OUT_OF_OFFICE.search(f"{mail.subject or ''}\n{text}"))
        back: date | None = return_date(text, occurred.date()) if out_of_office else None
        data.update(
            automated=True,
            category="out_of_office" if out_of_office else "auto_reply",
            detected_by=why,
            return_date=back.isoformat() if back else None,
        )
    key = mail.message_id or content_key({"from": mail.sender, "subject": mail.subject, "text": text})
    reply = IncomingEvent(
        provider=PROVIDER,
        **_keyed(org_id, key),
        event_type=EventType.REPLY.value,
        occurred_at=occurred,
        payload=payload,
        data=data,
        outcome_id=addressed_outcome(mail, domains),
        references=mail.references,
        email=mail.sender,
    )
    if mail.calendar is not None and why is None:
        return _calendar_events(mail, reply, key)
    return [reply]


def _receipt_event(mail: InboundMail, domains: list[str], occurred: datetime, org_id: str | None) -> IncomingEvent:
    """A read receipt is kept, never applied: it is no reply (nobody wrote anything), and no open
    either - a client sends it only when asked to and the reader agrees (or automatically, read or
    not), so it measures neither reading nor interest; the message was delivered, which SendGrid's
    own `delivered` event records."""
    receipt = mail.receipt
    assert receipt is not None
    base = mail.message_id or content_key({"from": mail.sender, "text": mail.full_text})
    return IncomingEvent(
        provider=PROVIDER,
        **_keyed(org_id, f"mdn:{base}"),
        event_type=f"mdn_{receipt.kind}",  # no EventType: stored as `ignored`
        occurred_at=occurred,
        payload=_payload(mail),
        data={
            k: v
            for k, v in {
                "disposition": receipt.disposition,
                "recipient": receipt.recipient,
                "original_message_id": receipt.original_message_id,
                "source": "mdn",
            }.items()
            if v is not None
        },
        outcome_id=addressed_outcome(mail, domains),
        references=[receipt.original_message_id] if receipt.original_message_id else mail.references,
        email=receipt.recipient or mail.sender,
    )


# what an attendee's answer says, when it says nothing else (the classifier's fields, source "calendar")
_CALENDAR_ANSWERS = {
    "DECLINED": {
        "category": "not_now",
        "sentiment_score": -0.2,
        "interest_level": "low",
        "objection_type": "timing",
        "reason": "declined the meeting invitation",
    },
    "TENTATIVE": {
        "category": "interested",
        "sentiment_score": 0.4,
        "interest_level": "medium",
        "objection_type": "none",
        "reason": "tentatively accepted the meeting invitation",
    },
}


def _calendar_events(mail: InboundMail, reply: IncomingEvent, own_key: str) -> list[IncomingEvent]:
    """An answer to a meeting invitation (RFC 5546 REPLY):
    - ACCEPTED books the meeting (`meeting_booked`, as a Calendly booking does; the meeting is the
      invitation's UID for this attendee, so a later DECLINED of the same invitation cancels it);
    - DECLINED cancels that meeting, and is the lead's answer: a reply, `not_now` (it turns down a
      time, not necessarily the offer);
    - TENTATIVE is a reply, `interested` (a rep should confirm it);
    - any other answer (DELEGATED ...) is kept, not applied.
    Outlook sends the answer with an empty text part: an answer without a comment is classified by
    what it says (source `calendar`), one with a comment is a reply the classifier reads as usual.
    `own_key`: the reply's key as the mail gives it (before it names the organisation)."""
    calendar = mail.calendar
    assert calendar is not None
    wrote = bool(reply.data.get("text"))
    # an over-long Message-ID stands for the invitation as it does for the key (the meeting id is indexed)
    meeting_id = f"ical:{calendar.uid or bounded(own_key)}:{mail.sender or ''}"

    def about_it(prefix: str, event_type: str, data: dict[str, Any]) -> IncomingEvent:
        """An event of the same mail, found the way its reply is."""
        return IncomingEvent(
            provider=PROVIDER,
            **_keyed(reply.org_id, f"{prefix}:{own_key}"),
            event_type=event_type,
            occurred_at=reply.occurred_at,
            payload=reply.payload,
            data=data,
            outcome_id=reply.outcome_id,
            references=reply.references,
            email=reply.email,
        )

    answer = {"partstat": calendar.partstat, "summary": calendar.summary, "meeting_id": meeting_id}
    reply.data.update(calendar=answer)
    events = [reply] if wrote or calendar.partstat in _CALENDAR_ANSWERS else []
    if calendar.partstat == "ACCEPTED":
        booked = {"start_time": calendar.start, "end_time": calendar.end, "source": "calendar_reply", **answer}
        events.append(about_it("ical", EventType.MEETING_BOOKED.value, booked))
    elif calendar.partstat == "DECLINED":
        events.append(about_it("ical", EventType.MEETING_CANCELED.value, {"source": "calendar_reply", **answer}))
    elif calendar.partstat not in _CALENDAR_ANSWERS:
        events.append(about_it("ical", "calendar_reply", answer))  # DELEGATED ...: kept, not applied
    if not wrote and calendar.partstat in _CALENDAR_ANSWERS:
        said = {
            "reply_key": f"{PROVIDER}:{reply.event_key}",
            **_CALENDAR_ANSWERS[calendar.partstat],
            "confidence": 1.0,
            "source": "calendar",
        }
        events.append(about_it("ical-answer", EventType.REPLY_CLASSIFIED.value, said))
    return events


def _bounce_events(
    mail: InboundMail, domains: list[str], occurred: datetime, org_id: str | None
) -> list[IncomingEvent]:
    report = mail.report
    assert report is not None
    payload = _payload(mail)
    base = mail.message_id or content_key({"from": mail.sender, "text": mail.full_text})
    if not report.bounces:  # a report we cannot read is kept (ignored), never dropped
        return [
            IncomingEvent(
                provider=PROVIDER,
                **_keyed(org_id, f"dsn:{base}"),
                event_type="dsn_unreadable",
                occurred_at=occurred,
                payload=payload,
                email=mail.sender,
            )
        ]
    events = []
    for bounce in report.bounces:
        if bounce.action in ("delivered", "relayed", "expanded"):
            kind = "dsn_" + bounce.action  # success notices: kept, not applied
        elif bounce.action == "delayed":
            kind = EventType.DEFERRED.value  # the MTA is still retrying
        else:
            kind = EventType.BOUNCE.value
        events.append(
            IncomingEvent(
                provider=PROVIDER,
                **_keyed(org_id, f"dsn:{base}:{bounce.recipient}"),
                event_type=kind,
                occurred_at=occurred,
                payload=payload,
                data={
                    k: v
                    for k, v in {
                        "bounce_type": "bounce" if bounce.hard else "soft",
                        "status": bounce.status,
                        "reason": bounce.diagnostic or f"DSN action {bounce.action}",
                        "recipient": bounce.recipient,
                        "original_recipient": bounce.original_recipient,
                        "source": report.source,
                    }.items()
                    if v is not None
                },
                # a DSN sent back to a reply+<outcome_id> return path names its message like a reply does
                outcome_id=addressed_outcome(mail, domains),
                references=[report.original_message_id] if report.original_message_id else [],
                email=bounce.lead_address,
            )
        )
    return events

"""The new text of a reply: what the lead wrote, without quoted history and signature.

Quote detection starts with mail-parser-reply (maintained, multi-language, no dependencies; it
knows the Outlook header blocks and the Gmail "On ... wrote:" line in most of our languages).
Our own rules then cover what it misses (measured in tests/unit/test_reply_text.py):
- Gmail/Apple attribution lines in Spanish, Portuguese, Dutch, Russian, Japanese and Chinese, and
  any line that ends with an address and a colon ("пн, 6 янв. 2025 г. в 10:00, Sam <…>:");
- Outlook header blocks (From/Sent/To/Subject) in Russian, Japanese and the other languages;
- separator lines, and `>`-quoted lines in between new text;
- signatures: the "-- " delimiter, "Sent from my iPhone" in every language we read, and a closing
  ("Best regards", "Mit freundlichen Grüßen", "С уважением", ...) followed by a few short lines.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

LANGUAGES = ["en", "de", "fr", "es", "pt", "it", "nl", "ru", "ja", "zh"]

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# "On Mon, Jan 6, 2025 at 10:00 AM Sam <sam@x>" + "wrote:" and its translations
_WROTE = (r"wrote|a écrit|schrieb|escribió|ha scritto|schreef|escreveu|skrev|написал[аи]?|kirjoitti|napisał[a]?|"
          r"写道|寫道|のメッセージ")
_ATTRIBUTION = [
    re.compile(rf"^\s*(?:on|le|am|el|il|op|em|den|på|в|il giorno)\b.{{0,220}}(?:{_WROTE})\b.{{0,80}}[:：]\s*$",
               re.IGNORECASE),
    # "Sam Lee wrote:", or any line with a date or an address before the verb; not "what one CFO
    # wrote:" in the middle of a message
    re.compile(rf"^\s*(?:[A-ZÀ-ÖØ-ÞА-ЯЁ][\w.'’-]*\s+){{1,4}}(?:{_WROTE})\s*[:：]\s*$"),
    re.compile(rf"^.{{0,200}}[\d@].{{0,200}}(?:{_WROTE})\s*[:：]\s*$", re.IGNORECASE),
    # Gmail in Russian/Japanese, Yandex, Mail.ru: a date and an address, then a colon
    re.compile(rf"^.{{0,160}}<{_EMAIL}>\)?\s*[:：]\s*$"),
    re.compile(rf"^.{{0,120}}\b{_EMAIL}\s*[:：]\s*$"),
]
_SEPARATORS = [
    re.compile(r"^\s*-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht|message d'origine|"
               r"mensaje original|mensagem original|messaggio originale|oorspronkelijk bericht|"
               r"исходное сообщение|пересылаемое сообщение|元のメッセージ|原始邮件|weitergeleitete nachricht|"
               r"message transféré|mensaje reenviado|messaggio inoltrato)\s*-{2,}", re.IGNORECASE),
    re.compile(r"^\s*(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié)\s*:",
               re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*-{5,}\s*$"),
]
# the first line of an Outlook header block, and the lines that must follow it
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|von|de|van|da|от|差出人|发件人|寄件者)\s*\*?\s*[:：]\s*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|date|à|objet|enviado|fecha|para|asunto|"
    r"data|assunto|inviato|oggetto|verzonden|aan|onderwerp|отправлено|дата|кому|тема|送信日時|宛先|件名|"
    r"发送时间|收件人|主题|日期)\s*\*?\s*[:：]", re.IGNORECASE)
_MOBILE = re.compile(
    r"^\s*(?:sent from my\b.{0,40}|sent from (?:mail|outlook|yahoo mail|gmail)\b.*|get outlook for (?:ios|android)\b.*|"
    r"von meinem .{1,40} gesendet|gesendet von meinem .{1,40}|envoyé de mon .{1,40}|enviado desde mi .{1,40}|"
    r"enviado do meu .{1,40}|"
    r"inviato da(?:l mio)? \w+|verzonden (?:vanaf|met) (?:mijn )?\w+|отправлено с (?:моего )?\w+|"
    r"\w+から送信|发自我的\w+|從我的 ?\w+傳送)\s*$", re.IGNORECASE)
_CLOSING = re.compile(
    r"^\s*(?:best|best regards|kind regards|warm regards|regards|many thanks|thanks|thank you|cheers|all the best|"
    r"talk soon|"
    r"sincerely|yours sincerely|br|mit freundlichen grüßen|mit freundlichen grüssen|freundliche grüße|viele grüße|"
    r"beste grüße|liebe grüße|gruß|grüße|cordialement|bien cordialement|bien à vous|salutations|saludos|"
    r"un saludo|saludos cordiales|atentamente|atenciosamente|cumprimentos|abraços|cordiali saluti|saluti|"
    r"distinti saluti|met vriendelijke groet|vriendelijke groet|groeten|met groet|с уважением|спасибо|"
    r"всего доброго|よろしくお願いいたします|敬具|以上|此致|祝好|谢谢)\s*[,.!]?\s*$", re.IGNORECASE)
_SIGNATURE_MAX_LINES = 6


@cache
def _parser() -> Any:
    """`EmailReplyParser(languages=LANGUAGES).parse_reply`, without the signature and disclaimer
    searches it runs on every part: `latest_reply` is the first part's content, which they never
    change, and they cost most of a parse (two large patterns over the whole text)."""
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.parser import EmailMessage

    class _Parts(EmailMessage):  # type: ignore[misc]
        def _process_signatures_disclaimers(self, text: str) -> tuple[list[str], str]:
            return [], ""

    languages = EmailReplyParser(languages=LANGUAGES).languages
    return lambda text: _Parts(text=text, languages=languages).read().latest_reply


def normalise_newlines(text: str) -> str:
    """CRLF (raw MIME) and lone CR become LF, so both Inbound Parse modes store the same text."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_header_block(lines: list[str], i: int) -> bool:
    if not _HEADER_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1:i + 5] if line.strip()]
    return sum(1 for line in following[:3] if _HEADER_NEXT.match(line)) >= 2


def _cut_quotes(lines: list[str]) -> list[str]:
    kept: list[str] = []
    for i, line in enumerate(lines):
        joined = line + " " + (lines[i + 1].strip() if i + 1 < len(lines) else "")
        if (any(p.match(line) for p in _ATTRIBUTION + _SEPARATORS) or _is_header_block(lines, i)
                or (_ATTRIBUTION[0].match(joined) and not line.rstrip().endswith((".", "!", "?")))):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return kept


def _cut_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if line.rstrip() == "--" or line == "-- " or _MOBILE.match(line):
            return lines[:i]
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in content[-(_SIGNATURE_MAX_LINES + 1):]:
        rest = [line for line in lines[i + 1:] if line.strip()]
        if (_CLOSING.match(lines[i]) and any(lines[j].strip() for j in range(i)) and len(rest) <= _SIGNATURE_MAX_LINES
                and all(len(line) <= 60 for line in rest)):
            return lines[:i]
    return lines


def strip_quotes(text: str) -> str:
    """The text without its quoted history (attribution lines, header blocks, `>` quotes); the
    signature stays. Newlines normalised."""
    normalised = normalise_newlines(text)
    try:
        first_pass = _parser()(normalised)
    except Exception:  # noqa: BLE001 - a third-party parser must never lose a reply; our rules still run
        first_pass = normalised
    lines = _cut_quotes(normalise_newlines(first_pass or normalised).split("\n"))
    return "\n".join(line.rstrip() for line in lines).strip()


def reply_text(text: str) -> str:
    """The new text of a reply: quoted history, quoted lines and the signature are cut off.

    A stable, pure function (the dataset builder uses the same rules on outbound bodies)."""
    lines = _cut_signature(strip_quotes(text).split("\n"))
    return "\n".join(lines).strip()


# strip_signature: the RFC 3676 delimiter or an underscore rule starts a signature
_SIGNATURE_DELIMITER = re.compile(r"^--\s*$|^__+\s*$")
def is_closing_line(line: str) -> bool:
    """A sign-off such as "Best," or "Mit freundlichen Grüßen" on a line of its own."""
    return bool(_CLOSING.match(line))


def strip_signature(text: str, known_signature: str | None = None) -> tuple[str, bool]:
    """The text without its trailing signature block, and whether one was cut.

    A signature starts at a `-- ` delimiter line, at the sender's registered signature, or after
    a closing line ("Best,", "Mit freundlichen Grüßen") followed by at most six short lines; the
    closing line itself is kept. Mobile footers ("Sent from my iPhone") are dropped too."""
    lines = text.replace("\r\n", "\n").rstrip().split("\n")
    while lines and _MOBILE.match(lines[-1]):
        lines.pop()
    cut: int | None = None
    for i, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line):
            cut = i
            break
    if cut is None and known_signature and known_signature.strip():
        first = next((ln.strip() for ln in known_signature.splitlines() if ln.strip()
                      and not _CLOSING.match(ln)), "")
        for i in range(len(lines) - 1, -1, -1):
            if first and lines[i].strip() == first:
                cut = i
                break
    if cut is None:
        for i in range(max(0, len(lines) - 8), len(lines)):
            tail = lines[i + 1:]
            if _CLOSING.match(lines[i]) and 0 < len(tail) <= 6 and all(len(t.strip()) <= 80 for t in tail):
                cut = i + 1
                break
    if cut is None:
        return "\n".join(lines).strip(), False
    return "\n".join(lines[:cut]).rstrip(), True

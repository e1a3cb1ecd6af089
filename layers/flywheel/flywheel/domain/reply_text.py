"""The new text of a reply: what the lead wrote, without the quoted original."""

from __future__ import annotations

import re

# Where the quoted original starts, in the languages our prospects write in.
_QUOTE_HEADERS = [
    re.compile(r"^\s*(on|le|am|el|il|op|em|den|på)\s.{0,200}(wrote|a écrit|schrieb|escribió|ha scritto|schreef|"
               r"escreveu|skrev)\b.{0,120}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original)\s*-{2,}",
               re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*(from|von|de|van):\s.+$", re.IGNORECASE),
]


def reply_text(text: str) -> str:
    """The new text of a reply: quoted lines and the quoted original are cut off."""
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        joined = line + " " + (lines[i + 1] if i + 1 < len(lines) else "")
        if any(p.match(line) for p in _QUOTE_HEADERS) or (
            _QUOTE_HEADERS[0].match(joined) and line.strip().lower().startswith(("on ", "le ", "am "))
        ):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


# Where a signature starts: the RFC 3676 delimiter, or a closing line in the languages above
_SIGNATURE_DELIMITER = re.compile(r"^--\s*$|^__+\s*$")
_CLOSING = re.compile(
    r"^\s*(best|best regards|kind regards|warm regards|regards|cheers|thanks|thank you|many thanks|sincerely|"
    r"all the best|talk soon|mit freundlichen grüßen|viele grüße|beste grüße|liebe grüße|cordialement|"
    r"bien à vous|saludos|un saludo|atentamente|cordiali saluti|saluti|met vriendelijke groet|groeten|"
    r"atenciosamente|abraços|с уважением|よろしくお願いいたします|敬具)\s*[,.!]?\s*$", re.IGNORECASE)
_MOBILE_FOOTER = re.compile(r"^\s*(sent from my|envoyé de mon|von meinem .* gesendet|enviado desde mi)\b",
                            re.IGNORECASE)


def is_closing_line(line: str) -> bool:
    """A sign-off such as "Best," or "Mit freundlichen Grüßen" on a line of its own."""
    return bool(_CLOSING.match(line))


def strip_signature(text: str, known_signature: str | None = None) -> tuple[str, bool]:
    """The text without its trailing signature block, and whether one was cut.

    A signature starts at a `-- ` delimiter line, at the sender's registered signature, or after
    a closing line ("Best,", "Mit freundlichen Grüßen") followed by at most six short lines; the
    closing line itself is kept. Mobile footers ("Sent from my iPhone") are dropped too."""
    lines = text.replace("\r\n", "\n").rstrip().split("\n")
    while lines and _MOBILE_FOOTER.match(lines[-1]):
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

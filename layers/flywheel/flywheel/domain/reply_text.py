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

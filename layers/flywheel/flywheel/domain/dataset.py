"""Turning outcomes into a clean fine-tuning dataset: redaction, examples, de-duplication, split.

Pure functions over plain rows; the streaming, the files and the upload are done by callers.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SYSTEM_PROMPT = (
    "You write short, specific, personalised outbound sales emails. Use the lead's context and the brief, "
    "follow the requested framework and tone, and end with one clear ask."
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w/])")
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_TOKENISH = re.compile(r"[A-Za-z0-9_-]{16,}")


@dataclass
class Redactor:
    """Replaces a lead's personal data with placeholders and counts what it replaced."""

    counts: Counter[str] = field(default_factory=Counter)

    def redact(self, text: str | None, lead: dict[str, str | None]) -> str:
        if not text:
            return ""
        text = _URL.sub(self._url, text)
        text = _EMAIL.sub(lambda m: self._count("email", "{{email}}"), text)
        text = _PHONE.sub(self._phone, text)
        for key, placeholder in (("first_name", "{{first_name}}"), ("last_name", "{{last_name}}"),
                                 ("company", "{{company}}")):
            value = (lead.get(key) or "").strip()
            if len(value) >= 2:
                pattern = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)
                text, n = pattern.subn(placeholder, text)
                self.counts[key] += n
        return text

    def _count(self, kind: str, placeholder: str) -> str:
        self.counts[kind] += 1
        return placeholder

    def _url(self, match: re.Match[str]) -> str:
        url = match.group(0)
        # a link with a query string or a token-like segment identifies the recipient
        if "?" in url or _TOKENISH.search(url.split("://", 1)[1].split("/", 1)[-1] if "/" in url[8:] else ""):
            return self._count("tracking_url", "{{link}}")
        return url

    def _phone(self, match: re.Match[str]) -> str:
        digits = sum(c.isdigit() for c in match.group(0))
        return self._count("phone", "{{phone}}") if digits >= 7 else match.group(0)


def user_prompt(row: dict[str, Any], redactor: Redactor, lead: dict[str, str | None]) -> str:
    """The request the model learns to answer: lead context and the brief, never the outcome."""
    parts = [
        ("Industry", row.get("lead_industry")), ("Role", row.get("lead_role")),
        ("Company size", row.get("lead_company_size")), ("Campaign", row.get("campaign_id")),
        ("Framework", row.get("framework")), ("Tone", row.get("tone")),
        ("Brief", redactor.redact(row.get("brief"), lead) or None),
    ]
    lines = [f"{name}: {value}" for name, value in parts if value]
    return "Write an outbound email to {{first_name}} at {{company}}.\n" + "\n".join(lines)


def assistant_text(row: dict[str, Any], redactor: Redactor, lead: dict[str, str | None]) -> str:
    subject = redactor.redact(row.get("subject"), lead)
    body = redactor.redact(row.get("body"), lead)
    return f"Subject: {subject}\n\n{body}" if subject else body


def lead_of(row: dict[str, Any]) -> dict[str, str | None]:
    return {"first_name": row.get("lead_first_name"), "last_name": row.get("lead_last_name"),
            "company": row.get("lead_company")}


def supervised_example(row: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    lead = lead_of(row)
    return {"messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_prompt(row, redactor, lead)},
        {"role": "assistant", "content": assistant_text(row, redactor, lead)},
    ]}


def preference_example(good: dict[str, Any], bad: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    lead = lead_of(good)
    return {
        "input": {"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                               {"role": "user", "content": user_prompt(good, redactor, lead)}]},
        "preferred_output": [{"role": "assistant", "content": assistant_text(good, redactor, lead)}],
        "non_preferred_output": [{"role": "assistant", "content": assistant_text(bad, redactor, lead_of(bad))}],
    }


def to_bedrock_conversation(example: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat lines -> Amazon Nova's `bedrock-conversation-2024` lines."""
    messages = example["messages"]
    return {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": m["content"]} for m in messages if m["role"] == "system"],
        "messages": [{"role": m["role"], "content": [{"text": m["content"]}]}
                     for m in messages if m["role"] != "system"],
    }


# --- de-duplication -------------------------------------------------------------------------

def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z{} ]+", " ", text.lower())).strip()


def simhash(text: str) -> int:
    """64-bit SimHash over the words: a one-word edit moves it 2-5 bits, an unrelated email ~20+."""
    words = _normalise(text).split() or [""]
    hashes = np.array([int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                       for w in words], dtype=np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    majority = bits.sum(axis=0) * 2 > len(words)
    return int(np.packbits(majority, bitorder="little").view(np.uint64)[0])


class NearDuplicateFilter:
    """Drops exact and near-duplicate texts: SimHash within `max_distance` bits of a kept text.

    Candidates come from 4 bands of 16 bits, so every pair within 3 bits is compared; pairs 4-5
    bits apart are caught when they share a band (most do)."""

    def __init__(self, max_distance: int = 5) -> None:
        self.max_distance = max_distance
        self.exact: set[str] = set()
        self.bands: list[dict[int, list[int]]] = [{} for _ in range(4)]
        self.dropped = Counter[str]()

    def admit(self, text: str) -> bool:
        exact = hashlib.sha256(_normalise(text).encode()).hexdigest()
        if exact in self.exact:
            self.dropped["exact"] += 1
            return False
        fingerprint = simhash(text)
        for band, table in enumerate(self.bands):
            for other in table.get(fingerprint >> (16 * band) & 0xFFFF, []):
                if bin(fingerprint ^ other).count("1") <= self.max_distance:
                    self.dropped["near"] += 1
                    return False
        self.exact.add(exact)
        for band, table in enumerate(self.bands):
            table.setdefault(fingerprint >> (16 * band) & 0xFFFF, []).append(fingerprint)
        return True


def is_validation(outcome_id: str, fraction: float) -> bool:
    """A deterministic split: the same outcome always lands on the same side."""
    bucket = int(hashlib.sha256(str(outcome_id).encode()).hexdigest()[:8], 16) % 10_000
    return bucket < fraction * 10_000


# --- preference pairs -------------------------------------------------------------------------

def preference_group(row: dict[str, Any]) -> tuple[Any, ...]:
    """Messages written for the same campaign, segment and framework are comparable."""
    return (row.get("campaign_id"), row.get("lead_industry"), row.get("lead_role"), row.get("framework"))


def is_preferred(row: dict[str, Any]) -> bool:
    return row.get("training_label") == "positive"


def is_rejected(row: dict[str, Any]) -> bool:
    """Negative outcomes, or delivered messages that never got a reply."""
    if row.get("training_label") == "negative":
        return True
    return row.get("replied_at") is None and row.get("delivered_at") is not None and not is_preferred(row)


def pair_group(rows: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Pair each preferred message with a rejected one of the same group, deterministically."""
    def order(row: dict[str, Any]) -> str:
        return hashlib.sha256(str(row["outcome_id"]).encode()).hexdigest()

    good = sorted((r for r in rows if is_preferred(r)), key=order)
    bad = sorted((r for r in rows if is_rejected(r)), key=order)
    yield from zip(good, bad, strict=False)


def grouped(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows with the same preference group (the query orders by it)."""
    current: list[dict[str, Any]] = []
    key: tuple[Any, ...] | None = None
    for row in rows:
        row_key = preference_group(row)
        if current and row_key != key:
            yield current
            current = []
        key = row_key
        current.append(row)
    if current:
        yield current

"""What the store can hold and what a plausible value is: checks every adapter and API model uses.

PostgreSQL text and jsonb cannot hold NUL or unpaired UTF-16 surrogates, numeric(14,2) stops
below 10^12, timestamps outside a sane range are garbage (and overflow Python's datetime), and
invisible format characters (bidi overrides) have no place in an email address.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

MAX_DEPTH = 32
MAX_AMOUNT = Decimal(10) ** 12  # numeric(14, 2): below this once rounded to cents
CENT = Decimal("0.01")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class BadValue(ValueError):
    """A value the store cannot hold or that cannot be true; the message names no personal data."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _bad_text(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains an unpaired surrogate"


# how NUL and unpaired surrogates can appear in a JSON text: as escapes (raw ones are invalid JSON)
UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def check_json(value: Any) -> str | None:
    """The first reason this JSON value cannot be stored as jsonb/text, or None."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    return _bad_text(key)
                if isinstance(child, dict | list | tuple):
                    stack.append((child, depth + 1))
                elif isinstance(child, str):
                    if _UNSTORABLE.search(child):
                        return _bad_text(child)
                elif isinstance(child, float) and not math.isfinite(child):
                    return "contains NaN or Infinity"
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if _UNSTORABLE.search(item):
                return _bad_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return "contains NaN or Infinity"
    return None


def nested_too_deep(value: Any) -> str | None:
    """`check_json` for a value whose strings and numbers are known to be storable: its depth only
    (a flat event is one loop over its values)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_DEPTH:
                    return f"nested deeper than {MAX_DEPTH} levels"
                stack.append((child, depth + 1))
    return None


def amount(value: Any) -> str | None:
    """An amount as an exact decimal string: finite and within numeric(14, 2)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue("amount is not a number")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise BadValue("amount is not a number") from exc
    if not number.is_finite():
        raise BadValue("amount is not finite")
    if not storable_amount(number):
        raise BadValue("amount is out of range")
    return str(number)


def storable_amount(number: Decimal) -> bool:
    """numeric(14, 2) holds it: below 10^12 once rounded to cents as PostgreSQL rounds (half away
    from zero), so 999999999999.995 is refused, not an error when the row is written."""
    return abs(number) < MAX_AMOUNT and abs(number.quantize(CENT, ROUND_HALF_UP)) < MAX_AMOUNT


def currency(value: Any) -> str | None:
    """An ISO 4217 code as three ASCII letters, upper-cased; anything else is no currency (a CRM's
    amount keeps its facts without one)."""
    if not isinstance(value, str):
        return None
    code = value.strip()
    return code.upper() if len(code) == 3 and code.isascii() and code.isalpha() else None


def plausible(moment: datetime, what: str = "timestamp") -> datetime:
    """Aware, in UTC, between 2000 and 2100."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        aware = aware.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise BadValue(f"{what} is out of range") from exc
    if not EARLIEST <= aware < LATEST:
        raise BadValue(f"{what} is out of range (2000-2099)")
    return aware


def from_epoch(seconds: float, what: str = "timestamp") -> datetime:
    """Epoch seconds (an int of any size, or a float) between 2000 and 2100."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise BadValue(f"{what} is not a number")
    if isinstance(seconds, float) and not math.isfinite(seconds):  # isfinite overflows on a huge int
        raise BadValue(f"{what} is not a number")
    if not EARLIEST.timestamp() <= seconds < LATEST.timestamp():
        raise BadValue(f"{what} is out of range (2000-2099)")
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_time(value: Any, what: str = "timestamp") -> datetime | None:
    """An ISO 8601 date or date-time (a date alone, or no zone, reads as UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return plausible(value, what)
    if isinstance(value, date):
        return plausible(datetime(value.year, value.month, value.day, tzinfo=UTC), what)
    text = str(value).strip().replace("Z", "+00:00")
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)  # "2026-11-24 15:11:55"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadValue(f"{what} is not an ISO 8601 date") from exc
    return plausible(parsed, what)


def email(value: Any) -> str | None:
    """A lower-cased address without spaces, control or format (bidi) characters, or None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    # printable ASCII has none of those categories: only other text is read character by character
    if (
        len(text) > 320
        or not _EMAIL.match(text)
        or (
            not (text.isascii() and text.isprintable())
            and any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in text)
        )
    ):
        raise BadValue("not a valid email address")
    return text


def identifier(value: Any, what: str = "id") -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if not IDENTIFIER.fullmatch(text):
        raise BadValue(f"{what} must be 1-128 letters, digits or _.:@/+-")
    return text


def digits(value: Any, what: str = "id") -> str:
    """A CRM object id: digits only (it goes into an API path)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not text.isascii() or len(text) > 20:
        raise BadValue(f"{what} must be a number")
    return text


class _SameKey(ValueError):
    pass


def _refuse_same_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, int] = {}
    for number, (key, _) in enumerate(pairs, start=1):
        if key in seen:
            raise _SameKey(f"keys {seen[key]} and {number} are the same key")
        seen[key] = number
    return dict(pairs)


def strict_json(text: str) -> Any:
    """A setting's JSON: json.loads keeps the last of two equal keys in an object, silently (a later
    copy of a line would replace what the first said), so they are refused, named by position; a
    syntax error says where, never quoting the text (a setting may hold secrets or customers' ids);
    nesting too deep for the parser (json.loads raises RecursionError) is a ValueError too."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_same_keys)
    except _SameKey as exc:
        raise ValueError(str(exc)) from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise _not_json(exc) from None


class RepeatedKeys(dict[str, Any]):
    """A JSON object in which some key is given more than once (`repeated`, in order); it holds the
    last copy of each, as json.loads would."""

    repeated: tuple[str, ...] = ()


def _note_same_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # one pass (a secret may hold thousands of keys): each key given again, once, in order
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        else:
            seen.add(key)
    if not repeated:
        return dict(pairs)
    noted = RepeatedKeys(pairs)
    noted.repeated = tuple(repeated)
    return noted


def json_noting_repeated_keys(text: str) -> Any:
    """`strict_json` for a JSON whose keys may be named in an error (a secret's field names, not its
    values): an object with a key given twice is a `RepeatedKeys`, which says which, so that the
    caller can refuse only what it concerns. A syntax error, or nesting too deep to parse, as in
    strict_json (ValueError)."""
    try:
        return json.loads(text, object_pairs_hook=_note_same_keys)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise _not_json(exc) from None


def _not_json(exc: ValueError | RecursionError) -> ValueError:
    if isinstance(exc, RecursionError):
        return ValueError("not valid JSON (nested too deeply)")
    return ValueError(f"not valid JSON ({getattr(exc, 'msg', 'unreadable')} at character {getattr(exc, 'pos', '?')})")

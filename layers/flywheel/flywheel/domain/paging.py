"""Keyset pagination cursors: the position after the last row of a page, as an opaque token.

A listing is ordered by (time, unique key) — suppressions by (created_at, email), quarantined events
by (received_at, quarantine_id) — so "after this row" is exact even when one batch wrote many rows
with the same time (a time alone, like `since`, would return the same first page again).

The token is base64url of the listing's name, the time and the key, with a checksum. The checksum
catches a truncated, edited or other listing's cursor; it is not a credential (the organisation is
checked by the route, and a position only says where to start reading the caller's own rows). It
is not encrypted either: a suppressions cursor carries the last email of the page, which the caller
has just been sent; query strings are not logged (the access log records the resource path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, overload

from flywheel.errors import InvalidInput

# a cursor is far shorter; the route also refuses longer ones before decoding
MAX_CURSOR_LENGTH = 1024
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
_CHECK_BYTES = 8
_MAX_TEXT_KEY = 512
_MAX_INT_KEY = 2**63 - 1


def encode_cursor(listing: str, at: datetime, key: str | int) -> str:
    body = json.dumps([listing, at.isoformat(), key], separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(body + _check(body)).decode().rstrip("=")


@overload
def decode_cursor(listing: str, token: str, key_type: type[str]) -> tuple[datetime, str]: ...
@overload
def decode_cursor(listing: str, token: str, key_type: type[int]) -> tuple[datetime, int]: ...
def decode_cursor(listing: str, token: str, key_type: type[str] | type[int]) -> tuple[datetime, str | int]:
    """(time, key) of a cursor this listing issued; InvalidInput (a 422) for anything else."""
    try:
        if len(token) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
        if len(raw) <= _CHECK_BYTES or not hmac.compare_digest(check, _check(body)):
            raise ValueError("checksum")
        name, at_text, key = json.loads(body)
        if name != listing or not isinstance(at_text, str):
            raise ValueError("another listing's cursor")
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not _valid_key(key, key_type):
            raise ValueError("position")
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise InvalidInput(
            "cursor: not a cursor this listing issued (pass `next` back unchanged)", field="cursor"
        ) from None
    return at, key


def page_of(
    rows: list[dict[str, Any]], limit: int, listing: str, at: str, key: str
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `limit` rows from `limit + 1` read (one more says whether another page follows),
    and the cursor of the next page (None when this one is the last)."""
    page = rows[:limit]
    return page, encode_cursor(listing, page[-1][at], page[-1][key]) if len(rows) > limit else None


def _valid_key(key: object, key_type: type[str] | type[int]) -> bool:
    if key_type is int:
        return type(key) is int and 0 <= key <= _MAX_INT_KEY
    if not isinstance(key, str) or not key or len(key) > _MAX_TEXT_KEY or "\x00" in key:
        return False
    key.encode("utf-8")  # a lone surrogate raises UnicodeError (PostgreSQL could not take it)
    return True


def _check(body: bytes) -> bytes:
    return hashlib.sha256(b"flywheel-cursor\x00" + body).digest()[:_CHECK_BYTES]

"""The lock order every writer of outcome data follows, so concurrent writers never deadlock and
derived rows always see every committed event:

1. link keys (advisory, transaction-scoped, hashed into buckets), all in ascending order, in one
   statement: an event that may become an orphan and the registration that would claim it, or two
   events about the same meeting or the same deal, take the same key and so run one after the other;
2. the outcome rows to be re-derived, `FOR UPDATE` in outcome-id order, before their events are
   read: a later writer waits for an earlier one's commit and then reads its events too;
3. new events inserted in (provider, event_key) order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from operator import attrgetter
from uuid import UUID

from psycopg.rows import tuple_row

from flywheel.dal.connection import Connection

# advisory keys are (namespace << 32) | bucket; the bucket count bounds the locks one transaction
# takes (PostgreSQL's shared lock table is sized by max_locks_per_transaction)
_NAMESPACE = 0x4657_4C4B << 32  # "FWLK"
BUCKETS = 512


def link_buckets(keys: Iterable[str]) -> list[int]:
    return sorted({_NAMESPACE | (zlib.crc32(k.encode()) % BUCKETS) for k in keys})


def lock_links(conn: Connection, keys: Iterable[str]) -> list[int]:
    """Wait for and take the link-key locks, in ascending order; returns the buckets held."""
    buckets = link_buckets(keys)
    if buckets:
        conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", (buckets,))
    return buckets


def try_lock_links(conn: Connection, keys: Iterable[str], held: set[int]) -> bool:
    """Take more link-key locks without waiting (taking them out of order could deadlock)."""
    missing = [b for b in link_buckets(keys) if b not in held]
    if not missing:
        return True
    row = conn.execute(
        "SELECT bool_and(pg_try_advisory_xact_lock(k)) AS ok FROM unnest(%s::bigint[]) AS k", (missing,)
    ).fetchone()
    if row and row["ok"]:
        held.update(missing)
        return True
    return False


def lock_outcomes(conn: Connection, outcome_ids: Iterable[UUID]) -> dict[UUID, float | None]:
    """Lock the rows in id order; returns each one's ICP score (the one registration column their
    re-derivation reads), saving a second read."""
    ids = sorted(set(outcome_ids), key=attrgetter("int"))  # UUID order (UUID's own __lt__ is slow)
    if not ids:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT outcome_id, lead_icp_score FROM outcome_labels WHERE outcome_id = ANY(%s) "
            "ORDER BY outcome_id FOR UPDATE",
            (ids,),
        ).fetchall()
    return dict(rows)

"""SQL for the dataset build's line cache (sql/0017_dataset_line_cache.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from flywheel.dal.connection import Connection

# what `store` takes of each entry, in the order of the incoming table's columns
ENTRY_FIELDS = ("item", "outcome_id", "partner_id", "digest", "line", "signatures", "prompt_key", "split_key", "redactions")


def lookup(conn: Connection, kind: str, keys: Sequence[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """The entries of these (item, digest) keys whose digest is current, by item; their redaction
    counts as JSON text. A probe of the primary key each (`item = ANY`: a join with the keys was
    planned as a scan of the whole kind while the table had no statistics)."""
    wanted = dict(keys)
    rows = conn.execute(
        """SELECT item, digest, line, signatures, prompt_key, split_key, redactions::text AS redactions
             FROM dataset_line_cache WHERE kind = %s AND item = ANY(%s) AND digest = ANY(%s)""",
        (kind, list(wanted), list(wanted.values())),
    ).fetchall()
    return {row["item"]: row for row in rows if wanted[row["item"]] == row["digest"]}


def store(conn: Connection, kind: str, entries: Sequence[dict[str, Any]]) -> int:
    """Insert or replace entries (keys: ENTRY_FIELDS; redactions as JSON text) in one transaction:
    COPY into a temporary table (a tenth of the client CPU of array parameters), then one upsert in
    item order (two builds storing the same items take their row locks in the same order). The send
    time is the outcome's; an entry whose outcome is gone is not stored. Returns how many were.
    The temporary table pins the connection to its session behind RDS Proxy: `conn` is the build's own."""
    if not entries:
        return 0
    upsert = """INSERT INTO dataset_line_cache
                       (kind, item, outcome_id, partner_id, sent_at, digest, line, signatures, prompt_key,
                        split_key, redactions)
                SELECT %s, u.item, u.outcome_id, u.partner_id, o.sent_at, u.digest, u.line, u.signatures,
                       u.prompt_key, u.split_key, u.redactions
                  FROM dataset_line_cache_incoming u JOIN outcome_labels o ON o.outcome_id = u.outcome_id
                 ORDER BY u.item
                ON CONFLICT (kind, item) DO UPDATE
                   SET outcome_id = EXCLUDED.outcome_id, partner_id = EXCLUDED.partner_id,
                       sent_at = EXCLUDED.sent_at, digest = EXCLUDED.digest, line = EXCLUDED.line,
                       signatures = EXCLUDED.signatures, prompt_key = EXCLUDED.prompt_key,
                       split_key = EXCLUDED.split_key, redactions = EXCLUDED.redactions, built_at = now()"""
    for attempt in (1, 2):
        try:
            with conn.transaction():
                # a lost entry is built again (the digest decides), so a commit need not wait for its
                # WAL to reach the disk; a crash loses the last ones whole, never half of one (PostgreSQL
                # documentation, "Asynchronous Commit")
                conn.execute("SET LOCAL synchronous_commit = off")
                conn.execute(
                    """CREATE TEMPORARY TABLE IF NOT EXISTS dataset_line_cache_incoming (
                           item text, outcome_id uuid, partner_id uuid, digest bytea, line text, signatures bytea,
                           prompt_key int8, split_key int8, redactions jsonb) ON COMMIT DELETE ROWS"""
                )
                with conn.cursor().copy("COPY dataset_line_cache_incoming FROM STDIN") as copy:
                    for entry in entries:
                        copy.write_row([entry[f] for f in ENTRY_FIELDS])
                return conn.execute(upsert, (kind,)).rowcount
        except psycopg.errors.ForeignKeyViolation:
            # an outcome deleted between the join and the insert: once more, and the join leaves it out
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def remove_before(conn: Connection, sent_before: datetime, limit: int) -> int:
    """Retention, one batch: up to `limit` entries whose outcome was sent before the cutoff, skipping
    rows a build is writing (it is never made to wait on us)."""
    return conn.execute(
        """WITH due AS (
               SELECT kind, item FROM dataset_line_cache WHERE sent_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)
           DELETE FROM dataset_line_cache c USING due WHERE c.kind = due.kind AND c.item = due.item""",
        (sent_before, limit),
    ).rowcount

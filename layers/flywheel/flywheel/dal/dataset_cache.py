"""SQL for the dataset build's line cache (sql/0017_dataset_line_cache.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from flywheel.dal.connection import Connection

# an entry as `store` takes it: a tuple of these, in this order (the COPY's columns after kind)
ENTRY = (
    "item",
    "outcome_id",
    "partner_id",
    "sent_at",
    "digest",
    "line",
    "signatures",
    "prompt_key",
    "split_key",
    "redactions",
)
_TYPES = ["text", "text", "uuid", "uuid", "timestamptz", "bytea", "text", "bytea", "int8", "int8", "jsonb"]
_COPY = f"COPY dataset_line_cache (kind, {', '.join(ENTRY)}) FROM STDIN (FORMAT BINARY)"


def lookup(conn: Connection, kind: str, keys: Sequence[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """The entries these items have, by item: `digest`, and for an entry whose digest is the one
    asked for, its line, signatures, keys and redaction counts (JSON text; None for a stale entry,
    whose line is not sent). A probe of the primary key each (`item = ANY`: a join with the keys
    was planned as a scan of the whole kind while the table had no statistics)."""
    wanted = dict(keys)
    rows = conn.execute(
        """SELECT item, digest, CASE WHEN digest = ANY(%(digests)s) THEN line END AS line, signatures, prompt_key,
                  split_key, redactions::text AS redactions
             FROM dataset_line_cache WHERE kind = %(kind)s AND item = ANY(%(items)s)""",
        {"kind": kind, "items": list(wanted), "digests": list(wanted.values())},
    ).fetchall()
    for row in rows:
        if row["line"] is not None and wanted[row["item"]] != row["digest"]:
            row["line"] = None  # another item's digest (never seen: a digest hashes its item's ids)
    return {row["item"]: row for row in rows}


def store(conn: Connection, kind: str, entries: Sequence[tuple[Any, ...]], replace: Sequence[str] = ()) -> None:
    """Write entries (tuples in ENTRY's order) in one transaction: the entries of `replace` (items
    whose entry is stale) deleted, then one binary COPY (half the database time of an upsert through
    a temporary table). Committed without waiting for the WAL flush: an entry a crash loses is
    built again (PostgreSQL documentation, "Asynchronous Commit"). Another build that stored some of
    these items meanwhile (a unique key taken, or a deadlock on them) is answered by replacing all
    of them; an outcome deleted meanwhile (a foreign key) by leaving its entries out."""
    items = sorted({entry[0] for entry in entries} | set(replace))
    for attempt in range(4):
        try:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                if replace:
                    conn.execute(
                        "DELETE FROM dataset_line_cache WHERE kind = %s AND item = ANY(%s)", (kind, sorted(replace))
                    )
                if entries:
                    with conn.cursor().copy(_COPY) as copy:
                        copy.set_types(_TYPES)
                        for entry in entries:
                            copy.write_row((kind, *entry))
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            if attempt == 3:
                raise
            replace = items
        except psycopg.errors.ForeignKeyViolation:
            if attempt == 3:
                raise
            ids = list({str(e[1]) for e in entries} | {str(e[2]) for e in entries if e[2] is not None})
            present = {
                str(row["outcome_id"])
                for row in conn.execute(
                    "SELECT outcome_id FROM outcome_labels WHERE outcome_id = ANY(%s::uuid[])", (ids,)
                ).fetchall()
            }
            entries = [e for e in entries if str(e[1]) in present and (e[2] is None or str(e[2]) in present)]


def remove_before(conn: Connection, sent_before: datetime, limit: int) -> int:
    """Retention, one batch: up to `limit` entries whose outcome was sent before the cutoff, skipping
    rows a build is writing (it is never made to wait on us)."""
    return conn.execute(
        """WITH due AS (
               SELECT kind, item FROM dataset_line_cache WHERE sent_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)
           DELETE FROM dataset_line_cache c USING due WHERE c.kind = due.kind AND c.item = due.item""",
        (sent_before, limit),
    ).rowcount

"""SQL for the dataset build's line cache (sql/0017_dataset_line_cache.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import psycopg

from flywheel.dal.connection import Connection


class Entry(NamedTuple):
    """What a build stores for an item: the fields after `org_id` are the table's columns."""

    org_id: str  # the organisation of the item's outcomes (a pair's two are of one organisation)
    item: str
    outcome_id: UUID
    partner_id: UUID | None
    sent_at: datetime  # the earliest of the item's messages: retention goes by it
    recipe: bytes
    digest: bytes
    line: str
    signatures: bytes
    prompt_key: int
    split_key: int
    redactions: dict[str, int]


_COLUMNS = Entry._fields[1:]
_TYPES = ["text", "text", "uuid", "uuid", "timestamptz", "bytea", "bytea", "text", "bytea", "int8", "int8", "jsonb"]
_COPY = f"COPY dataset_line_cache (kind, {', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


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


def store(conn: Connection, kind: str, entries: Sequence[Entry], replace: Sequence[str] = ()) -> int:
    """Write entries in one transaction; returns how many were written. First the locks, in the
    order every writer of outcome data follows (dal/locks.py): the organisations FOR SHARE (an
    opt-out, whose trigger deletes the organisation's entries, waits for this transaction or this
    one waits for it and sees it: an entry of an organisation that no longer opts in is not written),
    then the outcomes FOR KEY SHARE in id order (an outcome deleted meanwhile is left out; one that
    is there stays until the commit, so the foreign keys hold). Then the entries of `replace`
    (stale ones) are deleted, and those of earlier pairs of a message paired anew, and the rest
    written by one binary COPY, committed without waiting for the WAL flush: an entry a crash loses
    is built again (PostgreSQL documentation, "Asynchronous Commit"). Another build storing some of
    the same items (a unique key taken, or a deadlock over them) is answered by replacing all of
    them."""
    items = sorted({entry.item for entry in entries} | set(replace))
    for attempt in range(4):
        try:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                opted_in = {
                    row["org_id"]
                    for row in conn.execute(
                        """SELECT org_id FROM organizations WHERE org_id = ANY(%s) AND training_opt_in
                            ORDER BY org_id FOR SHARE""",
                        (sorted({entry.org_id for entry in entries}),),
                    )
                }
                ids = {entry.outcome_id for entry in entries} | {e.partner_id for e in entries if e.partner_id}
                present = {
                    row["outcome_id"]
                    for row in conn.execute(
                        """SELECT outcome_id FROM outcome_labels WHERE outcome_id = ANY(%s)
                            ORDER BY outcome_id FOR KEY SHARE""",
                        (sorted(ids),),
                    )
                }
                kept = [
                    entry
                    for entry in entries
                    if entry.org_id in opted_in
                    and entry.outcome_id in present
                    and (entry.partner_id is None or entry.partner_id in present)
                ]
                if replace:
                    conn.execute(
                        "DELETE FROM dataset_line_cache WHERE kind = %s AND item = ANY(%s)", (kind, sorted(replace))
                    )
                pairs = [entry for entry in kept if entry.partner_id is not None]
                if pairs:
                    # a message paired anew leaves its old pair's entry unreadable (the pair is gone):
                    # deleted, so the cache holds about one entry a message
                    # (only tidying: rows another build holds are skipped, never waited for, so two
                    # builds re-pairing the same messages cannot deadlock here)
                    conn.execute(
                        """WITH gone AS (
                               SELECT kind, item FROM dataset_line_cache
                                WHERE kind = %(kind)s AND item <> ALL(%(items)s)
                                  AND (outcome_id = ANY(%(ids)s) OR partner_id = ANY(%(ids)s))
                                ORDER BY kind, item FOR UPDATE SKIP LOCKED)
                           DELETE FROM dataset_line_cache c USING gone
                            WHERE c.kind = gone.kind AND c.item = gone.item""",
                        {
                            "kind": kind,
                            "items": [entry.item for entry in pairs],
                            "ids": sorted(
                                {e.outcome_id for e in pairs} | {e.partner_id for e in pairs if e.partner_id}
                            ),
                        },
                    )
                if kept:
                    with conn.cursor().copy(_COPY) as copy:
                        copy.set_types(_TYPES)
                        for entry in kept:
                            copy.write_row((kind, *entry[1:]))
            return len(kept)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            if attempt == 3:
                raise
            replace = items
    raise AssertionError("unreachable")


def remove_before(conn: Connection, sent_before: datetime, limit: int) -> int:
    """Retention, one batch: up to `limit` entries whose earliest message was sent before the cutoff,
    skipping rows a build is writing (it is never made to wait on us)."""
    return conn.execute(
        """WITH due AS (
               SELECT kind, item FROM dataset_line_cache WHERE sent_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)
           DELETE FROM dataset_line_cache c USING due WHERE c.kind = due.kind AND c.item = due.item""",
        (sent_before, limit),
    ).rowcount

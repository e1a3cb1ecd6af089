"""SQL for the dataset build's line cache (sql/0017_dataset_line_cache.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from flywheel.dal.connection import Connection

ENTRY_COLUMNS = "item, digest, line, signatures, prompt_key, split_key, redactions"


def lookup(conn: Connection, kind: str, items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The entries of these items (whatever their digest), by item: one primary-key probe each."""
    rows = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM dataset_line_cache WHERE kind = %s AND item = ANY(%s)", (kind, list(items))
    ).fetchall()
    return {row["item"]: row for row in rows}


def store(conn: Connection, kind: str, entries: Sequence[dict[str, Any]]) -> int:
    """Insert or replace entries (keys: item, outcome_id, partner_id, digest, line, signatures,
    prompt_key, split_key, redactions as JSON text), in item order (two builds storing the same items
    take their row locks in the same order). The organisation and send time are the outcome's; an
    entry whose outcome is gone is not stored. Returns how many were."""
    entries = sorted(entries, key=lambda e: e["item"])
    if not entries:
        return 0
    columns = ("item", "outcome_id", "partner_id", "digest", "line", "signatures", "prompt_key", "split_key")
    arrays = [[e[c] for e in entries] for c in columns] + [[e["redactions"] for e in entries]]
    statement = """INSERT INTO dataset_line_cache
                  (kind, item, org_id, outcome_id, partner_id, sent_at, digest, line, signatures, prompt_key,
                   split_key, redactions)
           SELECT %s, u.item, o.org_id, u.outcome_id, u.partner_id, o.sent_at, u.digest, u.line, u.signatures,
                  u.prompt_key, u.split_key, u.redactions::jsonb
             FROM unnest(%s::text[], %s::uuid[], %s::uuid[], %s::bytea[], %s::text[], %s::bytea[], %s::int8[],
                         %s::int8[], %s::text[])
                  AS u(item, outcome_id, partner_id, digest, line, signatures, prompt_key, split_key, redactions)
             JOIN outcome_labels o ON o.outcome_id = u.outcome_id
            ORDER BY u.item
           ON CONFLICT (kind, item) DO UPDATE
              SET org_id = EXCLUDED.org_id, outcome_id = EXCLUDED.outcome_id, partner_id = EXCLUDED.partner_id,
                  sent_at = EXCLUDED.sent_at, digest = EXCLUDED.digest, line = EXCLUDED.line,
                  signatures = EXCLUDED.signatures, prompt_key = EXCLUDED.prompt_key,
                  split_key = EXCLUDED.split_key, redactions = EXCLUDED.redactions, built_at = now()"""
    try:
        return conn.execute(statement, (kind, *arrays)).rowcount
    except psycopg.errors.ForeignKeyViolation:
        # an outcome deleted between the join and the insert: once more, and the join leaves it out
        return conn.execute(statement, (kind, *arrays)).rowcount


def remove_before(conn: Connection, sent_before: datetime, limit: int) -> int:
    """Retention, one batch: up to `limit` entries whose outcome was sent before the cutoff, skipping
    rows a build is writing (it is never made to wait on us)."""
    return conn.execute(
        """WITH due AS (
               SELECT kind, item FROM dataset_line_cache WHERE sent_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)
           DELETE FROM dataset_line_cache c USING due WHERE c.kind = due.kind AND c.item = due.item""",
        (sent_before, limit),
    ).rowcount

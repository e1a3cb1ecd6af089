"""SQL for the outbox: messages to other services, written with the change that causes them."""

from __future__ import annotations

from typing import Any

from flywheel.dal.connection import Connection, jsonb


def add(conn: Connection, messages: list[tuple[str, str, dict[str, Any]]]) -> int:
    """(topic, dedupe key, payload) rows; a key already in the outbox is not added again."""
    if not messages:
        return 0
    rows = [{"topic": t, "dedupe_key": k, "payload": p} for t, k, p in sorted(messages, key=lambda m: m[:2])]
    return len(
        conn.execute(
            """INSERT INTO outbox (topic, dedupe_key, payload)
           SELECT topic, dedupe_key, payload
             FROM jsonb_to_recordset(%s) AS x(topic text, dedupe_key text, payload jsonb)
           ON CONFLICT (topic, dedupe_key) DO NOTHING RETURNING outbox_id""",
            (jsonb(rows),),
        ).fetchall()
    )


def claim_pending(conn: Connection, topic: str, limit: int) -> list[dict[str, Any]]:
    """Unsent messages of a topic, oldest first, locked so concurrent senders take different ones."""
    return conn.execute(
        """SELECT outbox_id, dedupe_key, payload FROM outbox
            WHERE topic = %s AND sent_at IS NULL ORDER BY created_at, outbox_id
            LIMIT %s FOR UPDATE SKIP LOCKED""",
        (topic, limit),
    ).fetchall()


def mark(conn: Connection, outbox_ids: list[int], error: str | None) -> None:
    if error is None:
        conn.execute(
            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE outbox_id = ANY(%s)", (outbox_ids,)
        )
    else:
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE outbox_id = ANY(%s)",
            (error[:500], outbox_ids),
        )


def pending_count(conn: Connection, topic: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM outbox WHERE topic = %s AND sent_at IS NULL", (topic,)).fetchone()
    return int(row["n"]) if row else 0

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


def claim_pending(conn: Connection, topic: str, limit: int, skip: list[int] | None = None) -> list[dict[str, Any]]:
    """Unsent messages of a topic, oldest first, locked so concurrent senders take different ones.
    Parked messages are left out, and so are `skip` (those this sender already tried)."""
    return conn.execute(
        """SELECT outbox_id, dedupe_key, payload FROM outbox
            WHERE topic = %s AND sent_at IS NULL AND parked_at IS NULL AND outbox_id <> ALL(%s)
            ORDER BY created_at, outbox_id
            LIMIT %s FOR UPDATE SKIP LOCKED""",
        (topic, skip or [], limit),
    ).fetchall()


def mark(conn: Connection, outbox_ids: list[int], error: str | None) -> None:
    if not outbox_ids:
        return
    if error is None:
        conn.execute(
            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE outbox_id = ANY(%s)", (outbox_ids,)
        )
    else:
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE outbox_id = ANY(%s)",
            (error[:500], outbox_ids),
        )


def refuse(conn: Connection, reasons: dict[int, str], park_after: int) -> list[dict[str, Any]]:
    """Messages the receiver refused for what they are (`outbox_id` → reason): each refusal is
    counted, and a message refused `park_after` times is parked (`parked_at` set). Returns the
    refused rows."""
    if not reasons:
        return []
    rows = [{"outbox_id": i, "reason": r[:500]} for i, r in sorted(reasons.items())]
    return conn.execute(
        """UPDATE outbox o
              SET attempts = o.attempts + 1, refusals = o.refusals + 1, last_error = x.reason,
                  parked_at = CASE WHEN o.refusals + 1 >= %s THEN now() END
             FROM jsonb_to_recordset(%s) AS x(outbox_id bigint, reason text)
            WHERE o.outbox_id = x.outbox_id
        RETURNING o.outbox_id, o.topic, o.dedupe_key, o.refusals, o.last_error, o.parked_at""",
        (park_after, jsonb(rows)),
    ).fetchall()


def pending_count(conn: Connection, topic: str) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM outbox WHERE topic = %s AND sent_at IS NULL AND parked_at IS NULL", (topic,)
    ).fetchone()
    return int(row["n"]) if row else 0


def parked_count(conn: Connection) -> int:
    """Messages parked and still unsent: each waits for a person (fix the cause, clear parked_at)."""
    row = conn.execute("SELECT count(*) AS n FROM outbox WHERE parked_at IS NOT NULL AND sent_at IS NULL").fetchone()
    return int(row["n"]) if row else 0


def stale_count(conn: Connection, older_than_s: float) -> int:
    """Messages neither sent nor parked that have waited longer than `older_than_s` (the request
    path and the hourly sweep have both failed to send them)."""
    row = conn.execute(
        """SELECT count(*) AS n FROM outbox
            WHERE sent_at IS NULL AND parked_at IS NULL AND created_at < now() - %s * interval '1 second'""",
        (older_than_s,),
    ).fetchone()
    return int(row["n"]) if row else 0

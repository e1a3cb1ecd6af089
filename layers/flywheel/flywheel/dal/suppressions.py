"""SQL for suppressions: leads who must not be contacted again."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.dal import keyset
from flywheel.dal.connection import Connection
from flywheel.domain.effects import EMAIL_ONLY_OPT_OUT

# One row per (org, lead). The first reason recorded stands, except that a full opt-out (an
# unsubscribe, a spam report, an opt-out or erasure request by reply) replaces a change of channel
# (reply_email_opt_out: "don't email me, call me"), which datasets keep: the lead who later opts out
# fully leaves them. The row keeps its created_at (the listing's keyset: GET /suppressions pages by
# it, so a row that moved would vanish from, or show up again in, a listing being read).
_UPSERT = f"""ON CONFLICT (org_id, email) DO UPDATE SET reason = EXCLUDED.reason, outcome_id = EXCLUDED.outcome_id
           WHERE suppressions.reason = '{EMAIL_ONLY_OPT_OUT}' AND EXCLUDED.reason <> '{EMAIL_ONLY_OPT_OUT}'
           RETURNING email"""


def suppress(conn: Connection, org_id: str, email: str, reason: str, outcome_id: UUID | None) -> bool:
    """Whether the lead was suppressed now, or their suppression became a full opt-out."""
    row = conn.execute(
        f"INSERT INTO suppressions (org_id, email, reason, outcome_id) VALUES (%s, %s, %s, %s) {_UPSERT}",
        (org_id, email.lower(), reason, outcome_id),
    ).fetchone()
    return row is not None


def suppress_many(conn: Connection, rows: list[tuple[str, str, str, UUID | None]]) -> int:
    """(org, email, reason, outcome) rows; how many leads were suppressed now or had their
    suppression become a full opt-out. The first reason recorded for a lead stands unless a full
    opt-out follows a change of channel (in the rows given too)."""
    if not rows:
        return 0
    leads: dict[tuple[str, str], tuple[str, str, str, UUID | None]] = {}
    for org, email, reason, oid in rows:
        kept = leads.get((org, email.lower()))
        if kept is None or (kept[2] == EMAIL_ONLY_OPT_OUT and reason != EMAIL_ONLY_OPT_OUT):
            leads[(org, email.lower())] = (org, email.lower(), reason, oid)
    ordered = sorted(leads.values(), key=lambda r: (r[0], r[1]))
    return len(
        conn.execute(
            f"""INSERT INTO suppressions (org_id, email, reason, outcome_id)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::uuid[]) {_UPSERT}""",
            tuple(list(col) for col in zip(*ordered, strict=True)),
        ).fetchall()
    )


def list_suppressions(
    conn: Connection,
    org_id: str,
    since: datetime | None,
    limit: int,
    *,
    after: tuple[datetime, str] | None = None,
    settle_s: float = 0,
) -> list[dict[str, Any]]:
    """Up to `limit` rows in (created_at, email) order: see `keyset.page`."""
    return keyset.page(
        conn,
        "SELECT email, reason, outcome_id, created_at FROM suppressions",
        "created_at",
        ("email", "text"),
        org_id,
        since,
        limit,
        after,
        settle_s,
    )

"""SQL for suppressions: leads who must not be contacted again."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.dal import keyset
from flywheel.dal.connection import Connection


def suppress(conn: Connection, org_id: str, email: str, reason: str, outcome_id: UUID | None) -> bool:
    row = conn.execute(
        """INSERT INTO suppressions (org_id, email, reason, outcome_id) VALUES (%s, %s, %s, %s)
           ON CONFLICT (org_id, email) DO NOTHING RETURNING email""",
        (org_id, email.lower(), reason, outcome_id),
    ).fetchone()
    return row is not None


def suppress_many(conn: Connection, rows: list[tuple[str, str, str, UUID | None]]) -> int:
    """(org, email, reason, outcome) rows; the first reason recorded for a lead stands."""
    if not rows:
        return 0
    ordered = sorted(
        {(org, email.lower()): (org, email.lower(), reason, oid) for org, email, reason, oid in rows}.values(),
        key=lambda r: (r[0], r[1]),
    )
    return len(
        conn.execute(
            """INSERT INTO suppressions (org_id, email, reason, outcome_id)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::uuid[])
           ON CONFLICT (org_id, email) DO NOTHING RETURNING email""",
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

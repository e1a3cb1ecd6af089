"""SQL for suppressions: leads who must not be contacted again."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.dal.connection import Connection


def suppress(conn: Connection, org_id: str, email: str, reason: str, outcome_id: UUID | None) -> bool:
    row = conn.execute(
        """INSERT INTO suppressions (org_id, email, reason, outcome_id) VALUES (%s, %s, %s, %s)
           ON CONFLICT (org_id, email) DO NOTHING RETURNING email""",
        (org_id, email.lower(), reason, outcome_id),
    ).fetchone()
    return row is not None


def list_suppressions(conn: Connection, org_id: str, since: datetime | None, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT email, reason, outcome_id, created_at FROM suppressions
            WHERE org_id = %s AND (%s::timestamptz IS NULL OR created_at >= %s::timestamptz)
            ORDER BY created_at, email LIMIT %s""",
        (org_id, since, since, limit),
    ).fetchall()

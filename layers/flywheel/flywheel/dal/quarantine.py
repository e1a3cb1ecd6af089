"""SQL for quarantined provider events: malformed events of a verified batch, kept with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal import keyset
from flywheel.dal.connection import Connection, jsonb


def add(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Rows with provider, org_id, reason, field, raw, digest; a provider retry adds nothing twice."""
    if not rows:
        return 0
    return len(
        conn.execute(
            """INSERT INTO quarantined_events (provider, org_id, reason, field, raw, digest)
           SELECT provider, org_id, reason, field, raw, digest
             FROM jsonb_to_recordset(%s) AS x(provider text, org_id text, reason text, field text, raw text,
                                              digest text)
           ON CONFLICT (provider, digest) DO NOTHING RETURNING quarantine_id""",
            (jsonb(sorted(rows, key=lambda r: r["digest"])),),
        ).fetchall()
    )


def list_for_org(
    conn: Connection,
    org_id: str,
    since: datetime | None,
    limit: int,
    *,
    after: tuple[datetime, int] | None = None,
    settle_s: float = 0,
) -> list[dict[str, Any]]:
    """Up to `limit` rows in (received_at, quarantine_id) order: see `keyset.page`."""
    return keyset.page(
        conn,
        "SELECT quarantine_id, provider, reason, field, raw, received_at FROM quarantined_events",
        "received_at",
        ("quarantine_id", "bigint"),
        org_id,
        since,
        limit,
        after,
        settle_s,
    )

"""One organisation's rows of a listing, a page at a time, in (time, unique key) order: the order of
the listing's index (a range, no sort)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.dal.connection import Connection


def page(
    conn: Connection,
    query: str,
    time_column: str,
    key: tuple[str, str],
    org_id: str,
    since: datetime | None,
    limit: int,
    after: tuple[datetime, Any] | None,
    settle_s: float,
) -> list[dict[str, Any]]:
    """Up to `limit` rows of `query` (a SELECT ... FROM naming no condition) for `org_id`, from
    `since` and strictly after the `after` position (the last row of the previous page), and only
    rows older than `settle_s`: no transaction still open can commit one dated before them. The
    column names and `key`'s cast are fixed fragments; every value is a parameter."""
    key_column, key_cast = key
    where = ["org_id = %s", f"{time_column} < now() - %s * interval '1 second'"]
    params: list[Any] = [org_id, settle_s]
    if since is not None:
        where.append(f"{time_column} >= %s::timestamptz")
        params.append(since)
    if after is not None:
        where.append(f"({time_column}, {key_column}) > (%s::timestamptz, %s::{key_cast})")
        params.extend(after)
    return conn.execute(
        f"{query} WHERE {' AND '.join(where)} ORDER BY {time_column}, {key_column} LIMIT %s", (*params, limit)
    ).fetchall()

"""Retention: raw provider payloads once an outcome is final, and the dataset line cache of old
outcomes, removed in short batches."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.dal import dataset_cache as cache_dal
from flywheel.dal import events as events_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.settings import get_settings


def raw_payload_cutoff(now: datetime) -> datetime:
    """Events received before this carry no raw payload any more. An event arrives after its message
    was sent, so this is never earlier than the retention period after the outcome became final."""
    settings = get_settings()
    return now - timedelta(days=settings.outcome_final_days + settings.raw_event_retention_days)


def remove_raw_payloads(
    now: datetime | None = None, *, time_budget_s: float, batch_size: int | None = None
) -> dict[str, Any]:
    """Batches of one short transaction each, until nothing is due or the time budget is spent (the
    next scheduled run continues). Returns how many payloads went and whether the backlog is done.
    Each batch starts after the last row the previous one purged (`events_dal.remove_raw_payloads`),
    so it never reads the index entries of the rows this run already purged."""
    cutoff = raw_payload_cutoff(now or datetime.now(UTC))
    position: events_dal.RawPosition | None = None

    def remove(conn: Connection, limit: int) -> int:
        nonlocal position
        removed, position = events_dal.remove_raw_payloads(conn, cutoff, limit, after=position)
        return removed

    return {**_in_batches(remove, time_budget_s, batch_size), "cutoff": cutoff.isoformat()}


def remove_cached_lines(
    now: datetime | None = None, *, time_budget_s: float, batch_size: int | None = None
) -> dict[str, Any]:
    """The dataset line cache of outcomes sent more than DATASET_CACHE_DAYS ago, as `remove_raw_payloads`."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=get_settings().dataset_cache_days)
    return {
        **_in_batches(lambda conn, limit: cache_dal.remove_before(conn, cutoff, limit), time_budget_s, batch_size),
        "cutoff": cutoff.isoformat(),
    }


def _in_batches(
    remove: Callable[[Connection, int], int], time_budget_s: float, batch_size: int | None
) -> dict[str, Any]:
    limit = batch_size or get_settings().retention_batch_size
    deadline = time.monotonic() + time_budget_s
    removed = batches = 0
    while True:
        with transaction() as conn:
            conn.execute("SET LOCAL lock_timeout = '2s'")
            count = remove(conn, limit)
        removed += count
        batches += 1
        done = count < limit
        if done or time.monotonic() >= deadline:
            return {"removed": removed, "batches": batches, "done": done}

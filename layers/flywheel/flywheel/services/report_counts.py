"""The reports' daily counts, refreshed on a schedule (ReportRollupFunction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.dal import report_counts as counts_dal
from flywheel.dal.connection import transaction
from flywheel.settings import get_settings


def refresh_daily_counts(now: datetime | None = None) -> dict[str, Any]:
    """Count every message sent before today (UTC) into the rollup; today's messages stay live.
    Each run re-counts the last REPORT_RECOUNT_DAYS (replies and bookings come within days), and
    once a day every day whose outcomes can still change (OUTCOME_FINAL_DAYS: a deal can close
    weeks later); older days are final. One transaction."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with transaction() as conn:
        conn.execute("SET LOCAL statement_timeout = '10min'")
        last_full = counts_dal.full_recount_at(conn)
        full = last_full is None or now - last_full >= timedelta(hours=23)
        days = settings.outcome_final_days if full else settings.report_recount_days
        return {**counts_dal.refresh(conn, today, today - timedelta(days=days), full), "full": full}

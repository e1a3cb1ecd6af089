"""The reports' daily counts, refreshed on a schedule (ReportRollupFunction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.dal import reports as reports_dal
from flywheel.dal.connection import transaction
from flywheel.settings import get_settings


def refresh_daily_counts(now: datetime | None = None) -> dict[str, Any]:
    """Count every message sent before today (UTC) into the rollup, re-counting the days whose
    outcomes can still change; today's messages stay live. One transaction."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with transaction() as conn:
        conn.execute("SET LOCAL statement_timeout = '10min'")
        return reports_dal.refresh(conn, today, today - timedelta(days=get_settings().outcome_final_days))

"""Reading quarantined provider events (malformed events of verified batches), page by page."""

from __future__ import annotations

from datetime import datetime

from flywheel.dal import quarantine as quarantine_dal
from flywheel.dal.connection import transaction
from flywheel.domain.paging import decode_cursor, page_of
from flywheel.models.api import QuarantinePage
from flywheel.settings import get_settings

LISTING = "quarantine"


def list_quarantine(org_id: str, since: datetime | None, cursor: str | None, limit: int) -> QuarantinePage:
    """Malformed provider events attributed to this organisation (by its provider account or the
    event's own org_id), oldest first: up to `limit` from `since` (inclusive) and after `cursor`;
    `next` is the cursor of the following page, None when this page is the last."""
    after = decode_cursor(LISTING, cursor, int) if cursor is not None else None
    with transaction() as conn:  # one row more than a page: whether another follows
        rows = quarantine_dal.list_for_org(
            conn, org_id, since, limit + 1, after=after, settle_s=get_settings().listing_settle_s
        )
    page, after_page = page_of(rows, limit, LISTING, "received_at", "quarantine_id")
    return QuarantinePage.model_validate({"org_id": org_id, "events": page, "count": len(page), "next": after_page})

"""Reading the suppression list: leads who must not be contacted again, page by page."""

from __future__ import annotations

from datetime import datetime

from flywheel.dal import suppressions as suppressions_dal
from flywheel.dal.connection import transaction
from flywheel.domain.paging import decode_cursor, page_of
from flywheel.models.api import SuppressionPage
from flywheel.settings import get_settings

LISTING = "suppressions"


def list_suppressions(org_id: str, since: datetime | None, cursor: str | None, limit: int) -> SuppressionPage:
    """Up to `limit` suppressions from `since` (inclusive) and after `cursor`; `next` is the cursor of
    the following page, None when this page is the last."""
    after = decode_cursor(LISTING, cursor, str) if cursor is not None else None
    with transaction() as conn:  # one row more than a page: whether another follows
        rows = suppressions_dal.list_suppressions(
            conn, org_id, since, limit + 1, after=after, settle_s=get_settings().listing_settle_s
        )
    page, after_page = page_of(rows, limit, LISTING, "created_at", "email")
    return SuppressionPage.model_validate(
        {"org_id": org_id, "suppressions": page, "count": len(page), "next": after_page}
    )

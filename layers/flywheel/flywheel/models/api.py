"""Response models shared by the API routes, for the OpenAPI document and the clients reading it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refusal: 4xx for what the caller sent, 503 (with Retry-After) for a dependency."""

    error: str = Field(description="machine-readable code: validation_error, malformed_json, unauthorized, ...")
    message: str
    field: str | None = None
    fields: list[dict[str, Any]] | None = None


class IngestSummary(BaseModel):
    """What a webhook delivery did: every event is counted once in exactly one of stored (applied,
    orphans, ignored), duplicates or quarantined."""

    received: int
    stored: int
    duplicates: int
    applied: int
    orphans: int
    ignored: int
    quarantined: int
    outcome_id: str | None = Field(default=None, description="inbound replies: the outcome the reply was linked to")


NEXT_DESCRIPTION = (
    "the cursor of the next page: pass it back as `cursor` (with the same org_id) until it is null. "
    "Page with it, not with `since`: one batch writes many rows with the same time, and `since` set to "
    "the last row's time returns the same page again"
)

CURSOR_DESCRIPTION = "the `next` of the previous page, unchanged: the page continues right after its last row"
SINCE_DESCRIPTION = (
    "start at this time (inclusive). A starting point only: to read further, follow `next` (a page "
    "that ends inside one batch's rows, which share a time, cannot be continued with `since`)"
)


class Suppression(BaseModel):
    email: str
    reason: str
    outcome_id: UUID | None
    created_at: datetime


class SuppressionPage(BaseModel):
    """A page of an organisation's suppression list, in (created_at, email) order."""

    org_id: str
    suppressions: list[Suppression]
    count: int
    next: str | None = Field(description=NEXT_DESCRIPTION)


class QuarantinedEvent(BaseModel):
    quarantine_id: int
    provider: str
    reason: str
    field: str | None
    raw: str = Field(description="the event as received, JSON text with non-ASCII characters escaped")
    received_at: datetime


class QuarantinePage(BaseModel):
    """A page of an organisation's quarantined provider events, in (received_at, quarantine_id) order."""

    org_id: str
    events: list[QuarantinedEvent]
    count: int
    next: str | None = Field(description=NEXT_DESCRIPTION)

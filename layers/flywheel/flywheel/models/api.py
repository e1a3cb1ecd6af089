"""Response models shared by the API routes, for the OpenAPI document and the clients reading it."""

from __future__ import annotations

from typing import Any

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

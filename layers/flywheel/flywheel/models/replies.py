"""Replies submitted through the API, and the job the classifier reads from the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from flywheel.domain.inputs import plausible
from flywheel.models.messages import Clean


class ReplyIn(Clean):
    """POST /replies: a reply that came through another channel (LinkedIn, a phone call's notes)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    outcome_id: UUID
    text: str = Field(min_length=1, max_length=50_000)
    channel: Literal["email", "linkedin", "phone", "sms", "other"] = "other"
    subject: str | None = Field(default=None, max_length=998)
    occurred_at: AwareDatetime | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=200, description="idempotency key")

    @field_validator("occurred_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        return None if value is None else plausible(value)


class ReplyJob(BaseModel):
    """The replies queue's message body."""

    model_config = ConfigDict(populate_by_name=True)

    outcome_id: UUID
    reply_key: str = Field(min_length=3, pattern=r"^[a-z_]+:.+$", description="<provider>:<reply event key>")
    text: str = Field(min_length=1, max_length=50_000)
    subject: str | None = None
    sender: str | None = Field(default=None, alias="from")
    received_at: datetime | None = None

"""Replies submitted through the API, and the job the classifier reads from the queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from flywheel.domain.inputs import plausible
from flywheel.domain.labels import Category
from flywheel.models.base import Clean


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

    # compiled when first validated: only the classifier reads jobs (RepliesApiFunction imports this
    # module for ReplyIn and would otherwise build it at every cold start)
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    outcome_id: UUID
    reply_key: str = Field(min_length=3, pattern=r"^[a-z_]+:.+$", description="<provider>:<reply event key>")
    text: str = Field(min_length=1, max_length=50_000)
    subject: str | None = None
    sender: str | None = Field(default=None, alias="from")
    received_at: datetime | None = None


CORRECTABLE_FIELDS = ("reply_category", "training_label", "training_weight")


class CorrectionIn(Clean):
    """POST /outcomes/{outcome_id}/corrections: a person's word on a reply's category and/or the
    outcome's training label. Stored as an event; a field sent as null reverts an earlier correction."""

    # compiled at the first correction: RepliesApiFunction imports this module for ReplyIn only
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    reply_category: Category | None = None
    training_label: Literal["positive", "negative", "neutral"] | None = None
    training_weight: float | None = Field(default=None, ge=0, le=10)
    reason: str = Field(min_length=1, max_length=1000)
    actor: str = Field(min_length=1, max_length=200, description="who corrects: an email or a user id")
    correction_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="idempotency key (per outcome)"
    )
    occurred_at: AwareDatetime | None = Field(default=None, description="when it was decided (not in the future)")

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        # the latest correction is the one in force: one dated ahead could never be reverted
        if value is not None and plausible(value) > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("occurred_at is in the future")
        return value

    @model_validator(mode="after")
    def _names_a_field(self) -> CorrectionIn:
        if not self.fields:
            raise ValueError("name at least one of reply_category, training_label, training_weight")
        return self

    @property
    def fields(self) -> list[str]:
        return [name for name in CORRECTABLE_FIELDS if name in self.model_fields_set]

"""In-house systems: deals and meetings as JSON, signed the Standard Webhooks way."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from flywheel.domain.ingest import IncomingEvent, org_keys
from flywheel.domain.inputs import IDENTIFIER, MAX_AMOUNT, email, parse_time, plausible, storable_amount
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput
from flywheel.webhooks.common import load_json, validate

PROVIDER = "crm"
DEAL_EVENTS = ("deal_won", "deal_lost", "deal_reopened")
MEETING_EVENTS = (
    "meeting_booked",
    "meeting_completed",
    "meeting_canceled",
    "meeting_no_show",
    "meeting_no_show_cleared",
)


class CrmEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Literal[
        "deal_won",
        "deal_lost",
        "deal_reopened",
        "meeting_booked",
        "meeting_completed",
        "meeting_canceled",
        "meeting_no_show",
        "meeting_no_show_cleared",
    ]
    outcome_id: str | None = Field(default=None, max_length=64)
    lead_email: str | None = Field(default=None, max_length=320)
    org_id: str | None = Field(default=None, pattern=IDENTIFIER.pattern)
    occurred_at: AwareDatetime | None = None
    deal_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="the CRM's deal id; required for deal_reopened"
    )
    value: Decimal | None = Field(default=None, ge=0, lt=MAX_AMOUNT, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    close_date: str | None = Field(default=None, max_length=40)
    meeting_id: str | None = Field(default=None, min_length=1, max_length=128)
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None

    @field_validator("occurred_at", "start_time", "end_time")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        return None if value is None else plausible(value)

    @field_validator("close_date")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        """Kept as read (" 2026-11-26" is stored as 2026-11-26T00:00:00+00:00)."""
        parsed = parse_time(value, "close_date")
        return parsed.isoformat() if parsed else None

    @field_validator("value")
    @classmethod
    def _storable(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not storable_amount(value):
            raise ValueError("value is out of range once rounded to cents")
        return value

    @field_validator("lead_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return email(value)

    @model_validator(mode="after")
    def _linkable(self) -> CrmEvent:
        if not self.outcome_id and not self.lead_email:
            raise ValueError("outcome_id or lead_email is required")
        if self.event == "deal_reopened" and not self.deal_id:
            # without it the reopening names no deal: it would land on the lead's latest message
            # and change nothing there
            raise ValueError("deal_id is required for deal_reopened (the deal it reopens)")
        return self


def parse(body: bytes, allowed: tuple[str, ...]) -> tuple[dict[str, Any], CrmEvent]:
    raw = load_json(body)
    event = validate(CrmEvent, raw)
    if event.event not in allowed:
        raise InvalidInput(f"event must be one of {', '.join(allowed)} on this route", field="event")
    return raw, event


def to_event(
    raw: dict[str, Any], event: CrmEvent, webhook_id: str, received_at: datetime, org_id: str | None
) -> IncomingEvent:
    """The event of a delivery of organisation `org_id` (the request's: its secret's, or the body's
    under one secret). The key is the sender's `webhook-id` within that organisation: two
    organisations' own systems numbering their events alike never de-duplicate each other. The
    Standard Webhooks spec bounds no `webhook-id`: one over the key limit is stored under its hash
    (domain.ingest.org_keys), the id itself in `data.webhook_id` (it is in no payload)."""
    data: dict[str, Any] = {
        "deal_id": f"crm:{event.deal_id}" if event.deal_id else None,
        "value": str(event.value) if event.value is not None else None,
        "currency": event.currency.upper() if event.currency else None,
        "close_date": event.close_date,
        "meeting_id": f"crm:{event.meeting_id}" if event.meeting_id else None,
        "start_time": event.start_time.astimezone(UTC).isoformat() if event.start_time else None,
        "end_time": event.end_time.astimezone(UTC).isoformat() if event.end_time else None,
    }
    keys = org_keys(org_id, webhook_id)
    if keys["legacy_key"] is None:  # hashed: keep the sender's own id
        data["webhook_id"] = webhook_id
    return IncomingEvent(
        provider=PROVIDER,
        **keys,
        event_type=EventType(event.event).value,
        occurred_at=event.occurred_at or received_at,
        payload=raw,
        data={k: v for k, v in data.items() if v is not None},
        org_id=org_id,
        outcome_id=event.outcome_id,
        email=event.lead_email,
    )

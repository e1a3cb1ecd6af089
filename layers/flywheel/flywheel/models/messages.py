"""Request and response models of the message registration API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator

from flywheel.domain.inputs import IDENTIFIER, email, plausible
from flywheel.models.base import Strict

MAX_BATCH = 500
# a sender's clock may run ahead, or a time zone be mislabelled: beyond this a send time is a bug
SENT_AT_SKEW = timedelta(days=1)
# `lead.extra` goes into every training prompt's context and its names into redaction's known
# terms: a CRM record's custom fields fit, a pasted org chart does not
MAX_LEAD_EXTRA_BYTES = 16_000
_ID = IDENTIFIER.pattern


def _email(value: str | None) -> str | None:
    return email(value)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (e.g. 2026-11-23T09:00:00Z)")
    return plausible(value)


Email = Annotated[str, AfterValidator(_email)]
Identifier = Annotated[str, Field(pattern=_ID)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class LeadContext(Strict):
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: ShortText | None = None
    industry: ShortText | None = None
    role: ShortText | None = None
    company_size: ShortText | None = None
    # ISO 3166 alpha-2; phone numbers written the local way are read for this region
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    icp_score: float | None = Field(default=None, ge=0, le=1)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _small_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, ensure_ascii=False, default=str).encode()) > MAX_LEAD_EXTRA_BYTES:
            raise ValueError(f"lead.extra is larger than {MAX_LEAD_EXTRA_BYTES // 1000} kB of JSON")
        return value


class SenderInfo(Strict):
    """Who sent the message: removed from training data wherever it appears."""

    name: ShortText | None = None
    title: ShortText | None = None
    company: ShortText | None = None
    signature: str | None = Field(default=None, max_length=2000)
    # ISO 3166 alpha-2 region of the sender's own phone numbers
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None


class RouteInfo(Strict):
    """What `GET /route` answered when the message was generated."""

    model_registry_id: Identifier | None = None
    provider_model_id: str | None = Field(default=None, max_length=256)
    experiment_id: Identifier | None = None
    arm: Literal["champion", "challenger"] | None = None


class MessageIn(Strict):
    org_id: Identifier
    campaign_id: Identifier
    lead_id: Identifier
    lead_email: Email | None = None
    channel: Literal["email", "linkedin", "sms", "phone", "other"] = "email"
    subject: str | None = Field(default=None, max_length=998)
    body: str = Field(min_length=1, max_length=100_000)
    framework: ShortText | None = None
    tone: ShortText | None = None
    brief: str | None = Field(default=None, max_length=10_000)
    agent_decisions: dict[str, Any] = Field(default_factory=dict)
    model_id: str | None = Field(default=None, max_length=256)
    route: RouteInfo | None = None
    lead: LeadContext = Field(default_factory=LeadContext)
    sender: SenderInfo | None = None
    sent_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    provider_message_id: str | None = Field(default=None, min_length=1, max_length=256)
    # the RFC 5322 Message-ID header it was sent with, so replies can be linked by In-Reply-To
    email_message_id: str | None = Field(default=None, min_length=3, max_length=998)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("email_message_id")
    @classmethod
    def _fits_a_header_line(cls, value: str | None) -> str | None:
        # RFC 5322 counts octets (998 a line); past that, the indexed column would refuse it (a 500)
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > 998:
            raise ValueError("a Message-ID is at most 998 octets (RFC 5322)")
        return value

    @field_validator("sent_at")
    @classmethod
    def _not_ahead(cls, value: datetime) -> datetime:
        if value > datetime.now(UTC) + SENT_AT_SKEW:
            raise ValueError("sent_at is more than a day in the future: register a message once it is sent")
        return value

    @field_validator("agent_decisions")
    @classmethod
    def _small_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(repr(value)) > 200_000:
            raise ValueError("agent_decisions is larger than 200 kB")
        return value


class MessageBatch(Strict):
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class RegisteredMessage(BaseModel):
    outcome_id: UUID
    created: bool


class RegistrationResult(BaseModel):
    outcomes: list[RegisteredMessage]
    created: int
    existing: int

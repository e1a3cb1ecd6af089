"""Pipedrive webhooks (v1 and v2 payloads): deals that become won or lost, and won or lost deals
that are reopened or deleted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from flywheel.domain.ingest import IncomingEvent, content_key, org_keys
from flywheel.domain.inputs import currency, digits, from_epoch, parse_time
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput
from flywheel.webhooks.common import email_or_none, load_json, money, validate

PROVIDER = "pipedrive"


def _time(value: Any, what: str = "timestamp") -> datetime | None:
    """v2 ISO times, v1 "2026-11-24 15:11:55" (UTC), or epoch seconds; BadValue when garbage."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch(value, what)
    return parse_time(value, what)


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    version: str | int | None = None
    entity: str | None = None
    object: str | None = None
    action: str | None = None
    company_id: str | int | None = None
    timestamp: str | int | float | None = None


class Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    meta: Meta
    event: str | None = None  # v1
    data: dict[str, Any] | None = None  # v2
    current: dict[str, Any] | None = None  # v1
    previous: dict[str, Any] | None = None


class PipedriveDelivery:
    """One webhook body, either version, reduced to what a deal outcome needs."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        validate(Body, raw)
        meta = raw["meta"]
        self.meta = meta
        self.v2 = str(meta.get("version", "")).startswith("2") or "data" in raw
        deal = raw.get("data") if self.v2 else raw.get("current")
        previous = raw.get("previous")
        # v2 sends the fields a change changed; v1 the whole deal before it
        self.previous: dict[str, Any] = previous if isinstance(previous, dict) else {}
        self.deal: dict[str, Any] = deal if isinstance(deal, dict) else {}
        if self.v2:
            self.entity = str(meta.get("entity", ""))
            self.action = str(meta.get("action", ""))
        else:
            event = str(raw.get("event", ""))
            self.entity = str(meta.get("object") or event.partition(".")[2])
            self.action = str(meta.get("action") or event.partition(".")[0])
        self.deleted = self.action in ("delete", "deleted")
        if self.deleted and not self.deal:
            self.deal = self.previous  # a deletion's deal is what it was before

    @property
    def key(self) -> str:
        if self.v2 and self.meta.get("id"):
            return str(self.meta["id"])
        # v1 retries resend the same meta: its hash is stable across retries
        return "v1:" + content_key({"meta": self.meta, "event": self.raw.get("event")})

    @property
    def occurred_at(self) -> datetime:
        return (
            _time(self.meta.get("timestamp"), "meta.timestamp")
            or _time(self.deal.get("update_time"), "update_time")
            or datetime.now(UTC)
        )

    @property
    def status(self) -> str | None:
        return self.deal.get("status") if self.entity == "deal" else None

    @property
    def kind(self) -> EventType | None:
        """What this delivery says about the deal: won, lost, or open again (reopened, or deleted)
        after it was won or lost; None for anything else (an open deal edited, another entity)."""
        if self.entity != "deal":
            return None
        closed = ("won", "lost")
        if self.deleted:
            return EventType.DEAL_REOPENED if self.status in closed or self.previous.get("status") in closed else None
        if self.status in closed:
            return EventType.DEAL_WON if self.status == "won" else EventType.DEAL_LOST
        return EventType.DEAL_REOPENED if self.previous.get("status") in closed else None

    @property
    def person_id(self) -> str | None:
        """Digits only: it goes into the API path."""
        person = self.deal.get("person_id")
        value = person.get("value") if isinstance(person, dict) else person
        return None if value in (None, "") else digits(value, "person_id")

    @property
    def embedded_emails(self) -> list[str]:
        """v1 sometimes embeds the person; use its emails and skip the API call."""
        person = self.deal.get("person_id")
        emails = person.get("email") if isinstance(person, dict) else None
        if not isinstance(emails, list):
            return []
        return [e for e in (email_or_none(x.get("value")) for x in emails if isinstance(x, dict)) if e]

    def custom_field(self, key: str | None) -> str | None:
        if not key:
            return None
        fields = self.deal.get("custom_fields")
        value = (fields if isinstance(fields, dict) else {}).get(key, self.deal.get(key))
        value = value.get("value") if isinstance(value, dict) else value
        return str(value) if value else None


def parse(body: bytes) -> PipedriveDelivery:
    raw = load_json(body)
    if not isinstance(raw, dict):
        raise InvalidInput("body must be a JSON object")
    return PipedriveDelivery(raw)


def to_events(
    delivery: PipedriveDelivery, emails: list[str], outcome_field: str | None, org_id: str | None
) -> list[IncomingEvent]:
    base: dict[str, Any] = {
        "provider": PROVIDER,
        "occurred_at": delivery.occurred_at,
        "payload": delivery.raw,
        "org_id": org_id,
    }
    kind = delivery.kind
    if kind is None:
        return [
            IncomingEvent(
                **org_keys(org_id, delivery.key),
                event_type=f"{delivery.entity}.{delivery.action}",
                **base,
            )
        ]
    deal = delivery.deal
    data: dict[str, Any] = {"deal_id": f"pipedrive:{deal.get('id') or delivery.meta.get('entity_id')}"}
    # Pipedrive numbers deals per company: the company tells two deals of one number apart
    if (company := delivery.meta.get("company_id")) not in (None, ""):
        data["deal_account"] = str(company)
    if kind != EventType.DEAL_REOPENED:
        closed = deal.get("won_time") if kind == EventType.DEAL_WON else deal.get("lost_time")
        data |= {
            "value": money(deal.get("value")),
            "currency": currency(deal.get("currency")),
            "close_date": (_time(closed or deal.get("close_time"), "close time") or delivery.occurred_at).isoformat(),
        }
    outcome_id = delivery.custom_field(outcome_field)
    targets: list[str | None] = list(emails) or [None]
    return [
        IncomingEvent(
            # within the organisation; an over-long meta id is hashed, the payload keeps it (domain.ingest.org_keys)
            **org_keys(org_id, delivery.key if email is None else f"{delivery.key}:{email}"),
            event_type=kind.value,
            data={k: v for k, v in data.items() if v is not None},
            email=email,
            outcome_id=outcome_id,
            **base,
        )
        for email in targets
    ]

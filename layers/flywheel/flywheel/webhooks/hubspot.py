"""HubSpot webhooks: deal stage changes to won or lost, enriched with the deal and its contacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.clients.crm import hubspot_contact_ids
from flywheel.domain.ingest import IncomingEvent
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput
from flywheel.webhooks.common import load_json, money, validate

PROVIDER = "hubspot"
MAX_EVENTS = 100


class HubSpotEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventId: int | str  # noqa: N815 - HubSpot's field names
    portalId: int | str | None = None  # noqa: N815
    occurredAt: int = Field(ge=0)  # noqa: N815
    subscriptionType: str | None = None  # noqa: N815
    eventType: str | None = None  # noqa: N815 - older docs' name for subscriptionType
    objectId: int | str | None = None  # noqa: N815
    propertyName: str | None = None  # noqa: N815
    propertyValue: str | None = None  # noqa: N815

    @property
    def kind(self) -> str:
        return self.subscriptionType or self.eventType or "unknown"

    @property
    def is_deal_stage_change(self) -> bool:
        return self.kind == "deal.propertyChange" and self.propertyName == "dealstage" and self.objectId is not None

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurredAt / 1000, tz=UTC)


def parse(body: bytes) -> list[tuple[dict[str, Any], HubSpotEvent]]:
    raw = load_json(body)
    if not isinstance(raw, list):
        raise InvalidInput("body must be a JSON array of events")
    if len(raw) > MAX_EVENTS:
        raise InvalidInput(f"at most {MAX_EVENTS} events per request")
    return [(item, validate(HubSpotEvent, item, prefix=f"{i}.")) for i, item in enumerate(raw)]


def deal_outcome(deal: dict[str, Any], event: HubSpotEvent, won_stages: list[str],
                 lost_stages: list[str]) -> EventType | None:
    """Won or lost from the deal's own closed flags; configured stage ids when the flags are absent."""
    props = deal.get("properties") or {}
    won, closed = props.get("hs_is_closed_won"), props.get("hs_is_closed")
    if won is not None or closed is not None:
        if str(won).lower() == "true":
            return EventType.DEAL_WON
        return EventType.DEAL_LOST if str(closed).lower() == "true" else None
    stage = props.get("dealstage") or event.propertyValue
    if stage in won_stages:
        return EventType.DEAL_WON
    return EventType.DEAL_LOST if stage in lost_stages else None


def to_events(raw: dict[str, Any], event: HubSpotEvent, deal: dict[str, Any] | None, emails: list[str],
              outcome_field: str | None, won_stages: list[str], lost_stages: list[str],
              org_id: str | None) -> list[IncomingEvent]:
    """One event per contact of the deal (each lead's outcome gets the deal); one ignored otherwise."""
    base: dict[str, Any] = {"provider": PROVIDER, "occurred_at": event.occurred, "payload": raw, "org_id": org_id}
    kind = deal_outcome(deal, event, won_stages, lost_stages) if deal and event.is_deal_stage_change else None
    if kind is None or deal is None:
        return [IncomingEvent(event_key=str(event.eventId), event_type=event.kind, **base)]
    props = deal.get("properties") or {}
    data = {"deal_id": f"hubspot:{event.objectId}", "value": money(props.get("amount")),
            "currency": props.get("deal_currency_code"), "close_date": props.get("closedate"),
            "contact_ids": hubspot_contact_ids(deal)}
    data = {k: v for k, v in data.items() if v not in (None, [])}
    outcome_id = props.get(outcome_field) if outcome_field else None
    if not emails:
        return [IncomingEvent(event_key=str(event.eventId), event_type=kind.value, data=data,
                              outcome_id=outcome_id, **base)]
    return [IncomingEvent(event_key=f"{event.eventId}:{email}", event_type=kind.value, data=data, email=email,
                          outcome_id=outcome_id, **base) for email in emails]

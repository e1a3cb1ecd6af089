"""HubSpot webhooks: deal stage changes to won, lost or an open stage (a deal reopened), enriched with
the deal and its contacts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.clients.crm import hubspot_contact_ids
from flywheel.domain.ingest import IncomingEvent, Quarantined
from flywheel.domain.inputs import BadValue, currency, digits, from_epoch, parse_time
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput
from flywheel.webhooks.common import load_json, money, validate

PROVIDER = "hubspot"
MAX_EVENTS = 100


class HubSpotEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventId: int | str  # noqa: N815 - HubSpot's field names
    portalId: int | str | None = None  # noqa: N815
    occurredAt: int = Field(ge=0, lt=10**15)  # noqa: N815 - milliseconds (10^15: the year 33658)
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
    def key(self) -> str:
        """What a redelivery repeats: the event id within its account (HubSpot documents eventId as
        not guaranteed unique; two accounts' events must not de-duplicate each other)."""
        return str(self.eventId) if self.portalId in (None, "") else f"{self.portalId}:{self.eventId}"

    def legacy_key(self, event_key: str) -> str:
        """The key an event of this delivery was stored under before keys named the portal: a
        delivery HubSpot retries across that release is then still known."""
        return event_key.removeprefix(f"{self.portalId}:") if self.portalId not in (None, "") else event_key

    @property
    def occurred(self) -> datetime:
        return from_epoch(self.occurredAt / 1000, "occurredAt")


def parse(
    body: bytes, org_of: Callable[[Any], str | None]
) -> tuple[list[tuple[dict[str, Any], HubSpotEvent]], list[Quarantined]]:
    """The batch's well-formed events, and the malformed ones quarantined (HubSpot retries a whole
    batch for a day on any error, so one bad event must not hold up the rest)."""
    raw = load_json(body)
    if not isinstance(raw, list):
        raise InvalidInput("body must be a JSON array of events")
    if len(raw) > MAX_EVENTS:
        raise InvalidInput(f"at most {MAX_EVENTS} events per request")
    good, bad = [], []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise InvalidInput("event is not a JSON object", field=str(i))
            event = validate(HubSpotEvent, item, prefix=f"{i}.")
            event.occurred  # noqa: B018 - range check
            if len(str(event.eventId)) > 128:
                raise InvalidInput("eventId is longer than 128 characters", field=f"{i}.eventId")
            if len(str(event.portalId)) > 32:
                raise InvalidInput("portalId is longer than 32 characters", field=f"{i}.portalId")
            if event.is_deal_stage_change:
                digits(event.objectId, "objectId")  # it goes into the API path
            good.append((item, event))
        except (InvalidInput, BadValue) as exc:
            reason = exc.message if isinstance(exc, InvalidInput) else str(exc)
            field = exc.details.get("field") if isinstance(exc, InvalidInput) else None
            portal = item.get("portalId") if isinstance(item, dict) else None
            bad.append(Quarantined(PROVIDER, reason, item, field, org_of(portal) if portal is not None else None))
    return good, bad


def deal_outcome(deal: dict[str, Any], event: HubSpotEvent, won_stages: list[str], lost_stages: list[str]) -> EventType:
    """Won or lost from the deal's own closed flags; configured stage ids when the flags are absent.
    A deal in any other stage is open: reopened, should it have been won or lost before (a deal
    that never closed ignores it)."""
    props = deal.get("properties") or {}
    won, closed = props.get("hs_is_closed_won"), props.get("hs_is_closed")
    if won is not None or closed is not None:
        if str(won).lower() == "true":
            return EventType.DEAL_WON
        return EventType.DEAL_LOST if str(closed).lower() == "true" else EventType.DEAL_REOPENED
    stage = props.get("dealstage") or event.propertyValue
    if stage in won_stages:
        return EventType.DEAL_WON
    return EventType.DEAL_LOST if stage in lost_stages else EventType.DEAL_REOPENED


def to_events(
    raw: dict[str, Any],
    event: HubSpotEvent,
    deal: dict[str, Any] | None,
    emails: list[str],
    outcome_field: str | None,
    won_stages: list[str],
    lost_stages: list[str],
    org_id: str | None,
) -> list[IncomingEvent]:
    """One event per contact of the deal (each lead's outcome gets the deal); one ignored otherwise."""
    base: dict[str, Any] = {"provider": PROVIDER, "occurred_at": event.occurred, "payload": raw, "org_id": org_id}
    kind = deal_outcome(deal, event, won_stages, lost_stages) if deal and event.is_deal_stage_change else None
    if kind is None or deal is None:
        return [IncomingEvent(event_key=event.key, event_type=event.kind, **base)]
    props = deal.get("properties") or {}
    data: dict[str, Any] = {"deal_id": f"hubspot:{event.objectId}", "contact_ids": hubspot_contact_ids(deal)}
    if event.portalId not in (None, ""):  # deal ids are per portal (account)
        data["deal_account"] = str(event.portalId)
    if kind != EventType.DEAL_REOPENED:  # an open deal's amount and expected close say nothing yet
        close = parse_time(props.get("closedate"), "closedate")  # BadValue: quarantined by the caller
        data |= {
            "value": money(props.get("amount")),
            "currency": currency(props.get("deal_currency_code")),
            "close_date": close.isoformat() if close else None,
        }
    data = {k: v for k, v in data.items() if v not in (None, [])}
    outcome_id = props.get(outcome_field) if outcome_field else None
    if not emails:
        return [IncomingEvent(event_key=event.key, event_type=kind.value, data=data, outcome_id=outcome_id, **base)]
    return [
        IncomingEvent(
            event_key=f"{event.key}:{email}",
            event_type=kind.value,
            data=data,
            email=email,
            outcome_id=outcome_id,
            **base,
        )
        for email in emails
    ]

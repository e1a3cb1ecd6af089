"""SendGrid Event Webhook: a JSON array of events, normalised into IncomingEvents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.domain.ingest import IncomingEvent, Quarantined, content_key
from flywheel.domain.inputs import IDENTIFIER, BadValue, email, from_epoch, identifier
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput
from flywheel.webhooks.common import load_json, validate

PROVIDER = "sendgrid"

_TYPES = {
    "processed": EventType.PROCESSED,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "dropped": EventType.DROPPED,
    "bounce": EventType.BOUNCE,
    "open": EventType.OPEN,
    "click": EventType.CLICK,
    "spamreport": EventType.SPAM_REPORT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.GROUP_UNSUBSCRIBE,
    "group_resubscribe": EventType.GROUP_RESUBSCRIBE,
}


class SendGridEvent(BaseModel):
    """The fields we read; everything else stays in the raw payload."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event: str = Field(min_length=1)
    email: str | None = None
    timestamp: int = Field(ge=0)
    sg_event_id: str | None = Field(default=None, min_length=1, max_length=256)
    sg_message_id: str | None = Field(default=None, max_length=1024)
    smtp_id: str | None = Field(default=None, alias="smtp-id")
    outcome_id: str | None = None
    org_id: str | None = None
    type: str | None = None
    reason: str | None = None
    status: str | None = None
    url: str | None = None
    sg_machine_open: bool | None = None
    asm_group_id: int | None = None
    category: str | list[str] | None = None


def message_id_prefix(sg_message_id: str | None) -> str | None:
    """`<X-Message-Id>.filter...` or `.recvd-...`: the part SendGrid returned at send time."""
    if not sg_message_id:
        return None
    for marker in (".filter", ".recvd"):
        if marker in sg_message_id:
            return sg_message_id.split(marker, 1)[0]
    return sg_message_id


def parse_body(raw: bytes) -> list[Any]:
    body = load_json(raw)
    if not isinstance(body, list):
        raise InvalidInput("body must be a JSON array of event objects")
    return body


def normalise(
    raw_events: list[Any], default_org: str | None = None, *, credential_org: str | None = None
) -> tuple[list[IncomingEvent], list[Quarantined]]:
    """Every well-formed event, and the malformed ones kept aside with the reason (a verified batch
    is never refused for one bad event: SendGrid would retry all of it for 24 hours).

    `credential_org`: the organisation whose own verification key verified the batch (one key per
    organisation). Every event is then that organisation's, quarantined ones included: the `org_id`
    custom arg is set by whoever sends through that SendGrid account, so an event whose `org_id`
    names another organisation is quarantined as the credential's (the batch's other events are
    stored), never stored as the other's. With one key, `org_id` names the event's organisation."""
    events, quarantined = [], []
    for index, raw in enumerate(raw_events):
        try:
            if not isinstance(raw, dict):
                raise InvalidInput("event is not a JSON object", field=str(index))
            event = validate(SendGridEvent, raw, prefix=f"{index}.")
            if credential_org is not None and event.org_id and event.org_id != credential_org:
                raise InvalidInput(
                    "org_id names another organisation than the one whose key verified the batch",
                    field=f"{index}.org_id",
                )
            events.append(_to_incoming(raw, event, default_org, credential_org))
        except InvalidInput as exc:
            org = raw.get("org_id") if isinstance(raw, dict) and credential_org is None else None
            quarantined.append(
                Quarantined(
                    PROVIDER,
                    exc.message,
                    raw,
                    exc.details.get("field"),
                    credential_org or (org if isinstance(org, str) and IDENTIFIER.fullmatch(org) else default_org),
                )
            )
    return events, quarantined


def _to_incoming(
    raw: dict[str, Any], event: SendGridEvent, default_org: str | None, credential_org: str | None
) -> IncomingEvent:
    kind = _TYPES.get(event.event)
    data: dict[str, Any] = {}
    if kind == EventType.BOUNCE:
        data = {
            "bounce_type": "blocked" if event.type == "blocked" else "bounce",
            "reason": event.reason,
            "status": event.status,
        }
    elif kind == EventType.DROPPED:
        data = {"reason": event.reason}
    elif kind == EventType.OPEN:
        data = {"machine_open": bool(event.sg_machine_open)}
    elif kind == EventType.CLICK:
        data = {"url": event.url}
    elif kind in (EventType.GROUP_UNSUBSCRIBE, EventType.GROUP_RESUBSCRIBE):
        data = {"asm_group_id": event.asm_group_id}
    try:
        occurred = from_epoch(event.timestamp)
        lead = email(event.email)
        org_id = credential_org or identifier(event.org_id, "org_id")
    except BadValue as exc:
        raise InvalidInput(str(exc)) from exc
    return IncomingEvent(
        provider=PROVIDER,
        event_key=event.sg_event_id or content_key(raw),
        event_type=kind.value if kind else event.event,
        occurred_at=occurred,
        payload=raw,
        data={k: v for k, v in data.items() if v is not None},
        org_id=org_id or default_org,
        outcome_id=event.outcome_id,
        provider_message_id=message_id_prefix(event.sg_message_id),
        email=lead,
    )

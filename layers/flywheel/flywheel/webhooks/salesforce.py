"""Salesforce Outbound Messages (SOAP) about Opportunities, and the Ack Salesforce waits for."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError, tostring  # noqa: S405 - parsing uses defusedxml

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from flywheel.domain.ingest import IncomingEvent, org_keys
from flywheel.domain.inputs import BadValue, currency, parse_time
from flywheel.domain.lifecycle import EventType
from flywheel.errors import InvalidInput, MalformedPayload
from flywheel.webhooks.common import email_or_none, money

PROVIDER = "salesforce"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip() or None
    return None


@dataclass
class Notification:
    notification_id: str
    sobject_type: str
    fields: dict[str, str]


@dataclass
class OutboundMessage:
    organization_id: str
    notifications: list[Notification]
    # Notification elements without an Id or an sObject, as XML text: quarantined, not refused with
    # the whole batch (Salesforce would retry all of it for a day)
    malformed: list[str] = field(default_factory=list)


def parse(body: bytes) -> OutboundMessage:
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise MalformedPayload("body is not acceptable XML") from exc
    notifications_el = next((el for el in root.iter() if _local(el.tag) == "notifications"), None)
    if notifications_el is None:
        raise InvalidInput("no <notifications> element: not an Outbound Message", field="notifications")
    organization_id = _child_text(notifications_el, "OrganizationId")
    if not organization_id:
        raise InvalidInput("OrganizationId is required", field="OrganizationId")
    message = OutboundMessage(organization_id, [])
    for el in notifications_el:
        if _local(el.tag) != "Notification":
            continue
        notification_id = _child_text(el, "Id")
        sobject = next((c for c in el if _local(c.tag) == "sObject"), None)
        if not notification_id or sobject is None:
            message.malformed.append(tostring(el, encoding="unicode")[:20_000])
            continue
        xsi_type = next((v for k, v in sobject.attrib.items() if _local(k) == "type"), "")
        fields = {_local(c.tag): (c.text or "").strip() for c in sobject if (c.text or "").strip()}
        message.notifications.append(Notification(notification_id, xsi_type.rpartition(":")[2], fields))
    return message


def allowed(organization_id: str, allow_list: list[str]) -> bool:
    """Salesforce ids come as 15 or 18 characters; the first 15 identify the org."""
    return organization_id[:15] in {a[:15] for a in allow_list}


def to_event(
    message: OutboundMessage,
    note: Notification,
    outcome_field: str,
    email_field: str,
    org_id: str | None,
    received_at: datetime,
) -> IncomingEvent:
    f = note.fields
    payload: dict[str, Any] = {
        "OrganizationId": message.organization_id,
        "NotificationId": note.notification_id,
        "sObjectType": note.sobject_type,
        "fields": f,
    }
    base: dict[str, Any] = {
        "provider": PROVIDER,
        # within the organisation: its own token posts whatever it sends (domain.ingest.org_keys)
        **org_keys(org_id, note.notification_id),
        "payload": payload,
        "org_id": org_id,
        "outcome_id": f.get(outcome_field),
        "email": email_or_none(f.get(email_field)),
    }
    if len(note.notification_id) > 64:
        raise BadValue("Notification Id is longer than 64 characters")
    closed, won = f.get("IsClosed", "").lower() == "true", f.get("IsWon", "").lower() == "true"
    close_date = parse_time(f.get("CloseDate"), "CloseDate")
    occurred = close_date or received_at
    if note.sobject_type != "Opportunity" or not (closed or won):
        return IncomingEvent(event_type=f"{note.sobject_type or 'sObject'}.updated", occurred_at=occurred, **base)
    data = {
        "deal_id": f"salesforce:{f.get('Id')}",
        "deal_account": message.organization_id or None,
        "value": money(f.get("Amount")),
        "currency": currency(f.get("CurrencyIsoCode")),
        "close_date": close_date.isoformat() if close_date else None,
    }
    return IncomingEvent(
        event_type=(EventType.DEAL_WON if won else EventType.DEAL_LOST).value,
        occurred_at=occurred,
        data={k: v for k, v in data.items() if v is not None},
        **base,
    )

"""Calendly webhooks v2: invitee created / canceled and no-show marks, as meeting events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from flywheel.domain.ingest import IncomingEvent, org_keys
from flywheel.domain.inputs import BadValue, email, plausible
from flywheel.domain.lifecycle import EventType
from flywheel.webhooks.common import load_json, validate

PROVIDER = "calendly"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class ScheduledEvent(_Loose):
    uri: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


class Tracking(_Loose):
    utm_content: str | None = None
    utm_campaign: str | None = None
    utm_source: str | None = None


class Payload(_Loose):
    uri: str
    email: str | None = None
    invitee: str | None = None  # on no-show events: the invitee the mark is about
    rescheduled: bool | None = None
    # a reschedule: the new invitee's invitee.created names the invitee it replaces, and the old
    # invitee's invitee.canceled (rescheduled: true) the one that replaces it
    old_invitee: str | None = None
    new_invitee: str | None = None
    scheduled_event: ScheduledEvent | None = None
    tracking: Tracking | None = None


class Envelope(_Loose):
    event: str
    created_at: datetime
    created_by: str | None = None
    payload: Payload


def parse(body: bytes) -> tuple[dict[str, Any], Envelope]:
    raw = load_json(body)
    return raw, validate(Envelope, raw)


def to_event(raw: dict[str, Any], envelope: Envelope, org_id: str | None) -> IncomingEvent:
    """BadValue for times outside 2000-2099, an invalid email or an over-long URI."""
    payload = envelope.payload
    plausible(envelope.created_at, "created_at")
    if payload.scheduled_event:
        for moment in (payload.scheduled_event.start_time, payload.scheduled_event.end_time):
            if moment is not None:
                plausible(moment, "scheduled_event time")
    if any(len(uri or "") > 400 for uri in (payload.uri, payload.invitee, payload.old_invitee, payload.new_invitee)):
        raise BadValue("invitee URI is longer than 400 characters")
    kind: EventType | None
    data: dict[str, Any]
    if envelope.event == "invitee.created":
        scheduled = payload.scheduled_event or ScheduledEvent()
        kind, meeting_id = EventType.MEETING_BOOKED, payload.uri
        data = {
            "start_time": scheduled.start_time,
            "end_time": scheduled.end_time,
            "event_uri": scheduled.uri,
            # the booking this one replaces: its outcome is this booking's (domain.ingest)
            "rescheduled_from": payload.old_invitee,
        }
    elif envelope.event == "invitee.canceled":
        kind, meeting_id = EventType.MEETING_CANCELED, payload.uri
        data = {"rescheduled": bool(payload.rescheduled), "rescheduled_to": payload.new_invitee}
    elif envelope.event in ("invitee_no_show.created", "invitee_no_show.deleted"):
        kind = EventType.MEETING_NO_SHOW if envelope.event.endswith("created") else EventType.MEETING_NO_SHOW_CLEARED
        meeting_id, data = payload.invitee or payload.uri, {}
    else:
        kind, meeting_id, data = None, payload.uri, {}
    tracking = payload.tracking or Tracking()
    key = f"{envelope.event}:{payload.uri}:{envelope.created_at.isoformat()}"
    return IncomingEvent(
        provider=PROVIDER,
        # within the organisation: its own signing key signs whatever it sends; an over-long uri is
        # hashed, the payload keeps it (domain.ingest.org_keys)
        **org_keys(org_id, key),
        event_type=kind.value if kind else envelope.event,
        occurred_at=envelope.created_at,
        payload=raw,
        data={
            "meeting_id": meeting_id,
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items() if v is not None},
        },
        org_id=org_id,
        outcome_id=tracking.utm_content,
        email=email(payload.email),
    )

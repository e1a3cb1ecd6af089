"""A Calendly reschedule's two webhooks name each other, and the new booking is linked through the
booking it replaces before any e-mail attribution."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from flywheel.domain.ingest import Lookups, Match, choose_match
from flywheel.domain.inputs import BadValue
from flywheel.webhooks import calendly

OLD = "https://api.calendly.com/scheduled_events/EV-1/invitees/OLD"
NEW = "https://api.calendly.com/scheduled_events/EV-2/invitees/NEW"


def event(kind: str, uri: str, **payload: object):
    body = {
        "created_at": "2026-11-25T08:00:00.000000Z",
        "created_by": "https://api.calendly.com/users/host",
        "event": kind,
        "payload": {
            "uri": uri,
            "email": "Jo@Example.com",
            "rescheduled": False,
            "old_invitee": None,
            "new_invitee": None,
            "scheduled_event": {"uri": "https://api.calendly.com/scheduled_events/EV-2"},
            **payload,
        },
    }
    raw, envelope = calendly.parse(json.dumps(body).encode())
    return calendly.to_event(raw, envelope, "acme")


def test_the_new_booking_names_the_old_one_and_the_cancellation_the_new_one() -> None:
    created = event("invitee.created", NEW, old_invitee=OLD)
    canceled = event("invitee.canceled", OLD, rescheduled=True, new_invitee=NEW)
    assert created.data["rescheduled_from"] == OLD and created.meeting_links == [NEW, OLD]
    assert canceled.data == {"meeting_id": OLD, "rescheduled": True, "rescheduled_to": NEW}
    assert canceled.meeting_links == [OLD, NEW]
    # both lock both meetings: the two deliveries (and the old booking's) run one after the other
    assert {f"meeting:{OLD}", f"meeting:{NEW}"} <= set(created.link_keys()) & set(canceled.link_keys())
    plain = event("invitee.created", OLD)
    assert "rescheduled_from" not in plain.data and plain.meeting_links == [OLD]


def test_a_new_booking_goes_to_the_old_bookings_message_not_the_latest_by_email() -> None:
    created = event("invitee.created", NEW, old_invitee=OLD)
    first, follow_up = Match(uuid4(), "acme"), Match(uuid4(), "acme")
    found = Lookups(meetings={(OLD, "acme"): first}, emails={0: follow_up})
    assert choose_match(0, created, found) == first
    # the old booking unknown here (booked before the integration): e-mail, like any booking
    assert choose_match(0, created, Lookups(emails={0: follow_up})) == follow_up


def test_an_overlong_old_or_new_invitee_is_refused() -> None:
    with pytest.raises(BadValue):
        event("invitee.created", NEW, old_invitee=OLD + "x" * 400)
    with pytest.raises(BadValue):
        event("invitee.canceled", OLD, new_invitee=NEW + "x" * 400)

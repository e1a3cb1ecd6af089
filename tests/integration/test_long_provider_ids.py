"""Provider-chosen ids that land in an indexed column (outside review). RFC 5545 bounds no UID: an
Outlook or Google Calendar answer whose UID was a few thousand characters made the meeting id
overflow the btree entry limit of outcome_events_meeting ("index row size exceeds maximum"): a 503
(taken for an unreachable database) and the meeting lost after SendGrid's retries. Such ids (meeting ids, rescheduled-from/to links, deal ids)
are now stored under their SHA-256, like event keys over 512 characters: a redelivery is still a
duplicate, and the answer that cancels the meeting still finds its booking. A Message-ID longer than
RFC 5322's 998 octets is refused at registration (a 422, not a 503 retried for ever), and one named
by a reply is no link hint (the reply is kept: it was refused with a 422)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from flywheel.dal.connection import close_connection
from flywheel.domain.ingest import IncomingEvent
from flywheel.services.ingest import ingest_events
from tests import mail_helpers as mh
from tests.conftest import count
from tests.integration.test_inbound_mail import MODES, post
from tests.integration.test_webhook_replies import register, replies_queue, reply_row  # noqa: F401


def huge(n: int = 4000) -> str:
    """Random text (incompressible: PostgreSQL compresses a long index entry before it measures it)."""
    return secrets.token_urlsafe(n)[:n]


def meeting_ids(db) -> list[str]:
    return [r["m"] for r in db.execute("SELECT data->>'meeting_id' AS m FROM outcome_events WHERE data ? 'meeting_id'")]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_invitation_answer_with_a_huge_uid_books_and_the_decline_cancels(db, replies_queue, mode: str) -> None:  # noqa: F811
    [outcome_id] = register()
    uid = huge()
    status, body = post(mh.calendar_answer("ACCEPTED", uid=uid), mode, outcome_id)
    assert status == 200 and body["kind"] == "calendar" and body["applied"] == 1, body
    assert reply_row(db, outcome_id)["stage"] == "meeting_booked"
    stored = meeting_ids(db)
    assert len(stored) == 1 and len(stored[0]) < 200 and uid not in stored[0]
    # a redelivery is a duplicate
    status, again = post(mh.calendar_answer("ACCEPTED", uid=uid), mode, outcome_id)
    assert status == 200 and again["stored"] == 0 and again["duplicates"] == again["received"], again
    declined = mh.calendar_answer("DECLINED", uid=uid)
    declined.replace_header("Date", format_datetime(datetime(2026, 11, 25, 9, 0, tzinfo=UTC)))
    status, _ = post(declined, mode, outcome_id)
    row = reply_row(db, outcome_id)
    assert status == 200 and row["meeting_canceled_at"] is not None and row["meeting_booked_at"] is None


def invitation(method: str, uid: str) -> Any:
    """Google Calendar's invitation (REQUEST) or cancellation (CANCEL) mail, from the lead."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    ics = (
        f"BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\nVERSION:2.0\r\nMETHOD:{method}\r\n"
        "BEGIN:VEVENT\r\nDTSTART:20261203T150000Z\r\nDTEND:20261203T153000Z\r\n"
        "ORGANIZER;CN=Dana Reyes:mailto:dana.reyes@northwind.example\r\n"
        "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:sam@acme.example\r\n"
        f"UID:{uid}\r\nSUMMARY:Northwind / Acme follow-up\r\n"
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    msg = MIMEMultipart("alternative")
    msg.attach(MIMEText("Let's talk on Thursday.\n", "plain", "utf-8"))
    calendar = MIMEText(ics, "calendar", "utf-8")
    calendar.set_param("method", method)
    msg.attach(calendar)
    return mh._headers(msg, "Invitation: Northwind / Acme follow-up", f"<inv.{method.lower()}@google.example>")


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_an_invitation_or_cancellation_with_a_huge_uid_is_kept_as_the_leads_reply(
    db,
    replies_queue,  # noqa: F811
    method: str,
) -> None:
    [outcome_id] = register()
    status, body = post(invitation(method, huge()), "raw", outcome_id)
    assert status == 200 and body["applied"] == 1 and body["outcome_id"] == outcome_id, body
    assert reply_row(db, outcome_id)["replied_at"] is not None


def crm_event(key: str, event_type: str, data: dict[str, Any], **link: Any) -> IncomingEvent:
    at = datetime.now(UTC) - timedelta(days=1)
    return IncomingEvent("crm", f"acme|{key}", event_type, at, {"event": event_type}, data, org_id="acme", **link)


def test_meeting_and_deal_ids_of_any_length_are_stored_and_linked(db, api) -> None:
    """A CRM or calendar may choose any id (Salesforce and Pipedrive ids, Calendly URIs, a reschedule's
    links): each is bounded where it is indexed, and the events that name the same id still meet."""
    status, body = api.post(
        "/messages",
        {
            "org_id": "acme",
            "campaign_id": "c",
            "lead_id": "lee",
            "lead_email": "lee@contoso.example",
            "body": "Hi",
            "sent_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
        },
    )
    assert status == 201, body
    oid = body["outcomes"][0]["outcome_id"]
    meeting, replaced, deal = f"crm:{huge()}", f"crm:{huge()}", f"salesforce:{huge()}"
    ingest_events(
        [
            crm_event("b", "meeting_booked", {"meeting_id": meeting, "rescheduled_from": replaced}, outcome_id=oid),
            crm_event("d", "deal_won", {"deal_id": deal, "value": "10.00"}, outcome_id=oid),
        ],
        window_days=90,
    )
    # a cancellation naming the booking by its (long) id alone finds it
    ingest_events([crm_event("c", "meeting_canceled", {"meeting_id": meeting})], window_days=90)
    ingest_events(
        [crm_event("l", "deal_lost", {"deal_id": deal, "value": "10.00"}, email="lee@contoso.example")], window_days=90
    )
    close_connection()
    row = db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (oid,)).fetchone()
    assert row["meeting_canceled_at"] is not None and row["meeting_booked_at"] is None
    assert row["deal_status"] == "lost"
    lengths = db.execute(
        "SELECT max(length(data->>'meeting_id')) AS m, max(length(data->>'deal_id')) AS d FROM outcome_events"
    ).fetchone()
    assert lengths["m"] < 200 and lengths["d"] < 200
    assert count(db, "outcome_events") == 4


def test_a_message_id_longer_than_998_octets_is_refused_at_registration_not_a_503(db, api) -> None:
    # random CJK ideographs: three octets each, and incompressible (a repetitive id would fit the index)
    long_id = "<" + "".join(chr(0x4E00 + secrets.randbelow(20000)) for _ in range(980)) + "@x.example>"
    assert len(long_id) <= 998 < len(long_id.encode())
    status, body = api.post(
        "/messages",
        {
            "org_id": "acme",
            "campaign_id": "c",
            "lead_id": "lee",
            "lead_email": "lee@contoso.example",
            "body": "Hi",
            "email_message_id": long_id,
            "sent_at": datetime.now(UTC).isoformat(),
        },
    )
    assert status == 422, body
    assert "email_message_id" in json.dumps(body) and count(db, "outcome_labels") == 0


def test_a_reply_naming_an_over_long_message_id_is_kept(db, replies_queue) -> None:  # noqa: F811
    """Its References name a Message-ID of more than 998 octets (no message can have it): the reply
    is stored (an orphan of its sender), not refused."""
    long_id = "".join(secrets.choice("éüçàøß漢字😀") for _ in range(990)) + "@x.example"
    msg = mh.gmail()
    for header in ("In-Reply-To", "References"):
        if header in msg:
            del msg[header]
    msg["In-Reply-To"] = f"<{long_id}>"
    status, body = post(msg, "raw", "not-an-outcome")
    assert status == 200 and body["stored"] == 1, body

"""A meeting is one meeting, however often it is rescheduled, and a canceled booking is none: for the
outcome, its training label, the reports' rollup and the live counts alike.

Calendly reschedules by canceling the old invitee (`invitee.canceled`, `rescheduled: true`,
`new_invitee`) and creating a new one (`invitee.created` with `old_invitee`), in either order. The
new booking belongs to the old booking's message, even when a follow-up went to the lead in between
(e-mail attribution alone would give it to the follow-up, and the reports would count two)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from flywheel.services import report_counts
from tests.conftest import ROOT, load_event
from tests.webhook_helpers import calendly_headers, configure, route_event

SENT = (datetime.now(UTC) - timedelta(days=20)).replace(hour=9, minute=0, second=0, microsecond=0)
LEAD = "jo@reschedule.example"
EVENTS = "https://api.calendly.com/scheduled_events"


def register(key: str, sent: datetime) -> None:
    event = load_event("messages_register_batch.json")
    message = {
        "org_id": "acme",
        "campaign_id": "seq",
        "lead_id": "jo",
        "lead_email": LEAD,
        "body": f"step {key}",
        "framework": "AIDA",
        "tone": "casual",
        "lead": {"industry": "saas", "role": "cfo"},
        "sent_at": sent.isoformat(),
        "idempotency_key": key,
    }
    event["body"] = json.dumps({"messages": [message]})
    result = invoke("MessagesFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] in (200, 201), result


def invitee(name: str) -> str:
    return f"{EVENTS}/EV-{name}/invitees/{name}"


def calendly(kind: str, name: str, at: datetime, **payload: Any) -> dict[str, Any]:
    """A Calendly v2 delivery in the real payload's shape (`old_invitee`, `new_invitee` are null
    unless a reschedule sets them)."""
    start = at + timedelta(days=2)
    body = json.dumps(
        {
            "created_at": at.isoformat().replace("+00:00", "Z"),
            "created_by": "https://api.calendly.com/users/host",
            "event": kind,
            "payload": {
                "uri": invitee(name),
                "email": LEAD,
                "rescheduled": False,
                "old_invitee": None,
                "new_invitee": None,
                "scheduled_event": {
                    "uri": f"{EVENTS}/EV-{name}",
                    "start_time": start.isoformat().replace("+00:00", "Z"),
                    "end_time": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                },
                "tracking": {"utm_content": None},
                **payload,
            },
        }
    )
    template = load_event("webhooks_calendly_invitee_created.json")
    return route_event(template, body, **calendly_headers(body.encode()))


def deliver(event: dict[str, Any]) -> dict[str, Any]:
    result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])


def outcomes(db) -> list[dict[str, Any]]:
    return db.execute(
        """SELECT body, meeting_booked_at, meeting_canceled_at, meeting_scheduled_start, stage, training_label
             FROM outcome_labels ORDER BY sent_at"""
    ).fetchall()


def rolled_meetings(db) -> int:
    report_counts.refresh_daily_counts()
    row = db.execute("SELECT sum(meetings) AS n FROM report_daily_counts WHERE dimension = 'industry'").fetchone()
    return int(row["n"] or 0)


def live_meetings(db) -> int:
    """What a report counting every outcome says (the rollup must equal it)."""
    return db.execute("SELECT count(*) AS n FROM outcome_labels WHERE meeting_booked_at IS NOT NULL").fetchone()["n"]


@pytest.fixture
def acme(db_url, monkeypatch) -> None:
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"calendly:*": "acme"}))


@pytest.mark.parametrize("new_first", [False, True], ids=["cancel_first", "new_booking_first"])
def test_a_meeting_rescheduled_after_a_follow_up_stays_on_its_message_and_counts_once(
    db, acme, new_first: bool
) -> None:
    register("step1", SENT)
    booked_at = SENT + timedelta(days=1)
    deliver(calendly("invitee.created", "INV-A", booked_at))
    register("step2", SENT + timedelta(days=3))  # the sequence's follow-up to the same lead
    assert rolled_meetings(db) == 1
    moved = SENT + timedelta(days=4)
    canceled = calendly("invitee.canceled", "INV-A", moved, rescheduled=True, new_invitee=invitee("INV-B"))
    rebooked = calendly("invitee.created", "INV-B", moved, old_invitee=invitee("INV-A"))
    for event in [rebooked, canceled] if new_first else [canceled, rebooked]:
        assert deliver(event)["applied"] == 1
    for event in (canceled, rebooked):  # Calendly redelivers
        assert deliver(event)["duplicates"] == 1

    first, follow_up = outcomes(db)
    assert first["body"] == "step step1" and first["meeting_booked_at"] == booked_at
    assert first["meeting_canceled_at"] is None and first["stage"] == "meeting_completed"  # its end passed
    assert first["meeting_scheduled_start"] == moved + timedelta(days=2)  # the new booking's time
    assert first["training_label"] == "positive"
    assert follow_up["meeting_booked_at"] is None and not follow_up["stage"].startswith("meeting")
    owners = db.execute(
        "SELECT DISTINCT o.body FROM outcome_events e JOIN outcome_labels o USING (outcome_id)"
        " WHERE e.provider = 'calendly'"
    ).fetchall()
    assert [r["body"] for r in owners] == ["step step1"]
    assert rolled_meetings(db) == live_meetings(db) == 1


def test_a_rescheduled_meeting_canceled_later_is_no_meeting(db, acme) -> None:
    register("step1", SENT)
    deliver(calendly("invitee.created", "INV-A", SENT + timedelta(days=1)))
    register("step2", SENT + timedelta(days=3))
    moved = SENT + timedelta(days=4)
    deliver(calendly("invitee.created", "INV-B", moved, old_invitee=invitee("INV-A")))
    deliver(calendly("invitee.canceled", "INV-A", moved, rescheduled=True, new_invitee=invitee("INV-B")))
    assert rolled_meetings(db) == 1
    deliver(calendly("invitee.canceled", "INV-B", moved + timedelta(days=1)))  # the lead cancels for good
    first, follow_up = outcomes(db)
    assert first["meeting_booked_at"] is None and first["meeting_canceled_at"] == moved + timedelta(days=1)
    assert first["training_label"] == "neutral" and follow_up["meeting_booked_at"] is None
    assert rolled_meetings(db) == live_meetings(db) == 0


def test_a_canceled_booking_is_no_meeting_in_the_label_the_reports_and_after_the_migration(db, acme) -> None:
    register("step1", SENT)
    booked_at = SENT + timedelta(days=1)
    deliver(calendly("invitee.created", "INV-A", booked_at))
    assert rolled_meetings(db) == 1
    deliver(calendly("invitee.canceled", "INV-A", SENT + timedelta(days=2)))
    (row,) = outcomes(db)
    assert row["meeting_booked_at"] is None and row["meeting_canceled_at"] is not None
    assert row["training_label"] == "neutral" and not row["stage"].startswith("meeting")
    assert rolled_meetings(db) == live_meetings(db) == 0

    # a row the previous release derived (the canceled booking kept its meeting_booked_at) is brought
    # to the one definition by sql/0023, and the rollup follows
    db.execute("UPDATE outcome_labels SET meeting_booked_at = %s", (booked_at,))
    assert rolled_meetings(db) == 1
    db.execute((ROOT / "sql" / "0023_canceled_meeting_is_no_meeting.sql").read_text())
    assert outcomes(db)[0]["meeting_booked_at"] is None
    assert rolled_meetings(db) == live_meetings(db) == 0

"""POST /webhooks/calendly: signed meeting bookings, cancellations and no-shows."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.local.invoke import invoke
from flywheel.local.seed import DANA
from tests.conftest import ROOT, SHARED_FIXTURES, count, load_event
from tests.webhook_helpers import calendly_headers, configure, route_event


@pytest.fixture
def outcome_id(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    configure(monkeypatch)
    result = invoke("MessagesFunction", load_event("messages_register_single.json"), ROOT / "template.yaml")
    return json.loads(result["body"])["outcomes"][0]["outcome_id"]


def send(envelope: dict, timestamp: int | None = None, signature: str | None = None) -> tuple[int, dict]:
    body = json.dumps(envelope).encode()
    headers = calendly_headers(body, timestamp)
    if signature is not None:
        headers["Calendly-Webhook-Signature"] = signature
    result = invoke(
        "WebhooksFunction",
        route_event(load_event("webhooks_calendly_invitee_created.json"), body, **headers),
        ROOT / "template.yaml",
    )
    return result["statusCode"], json.loads(result["body"])


def booking(
    outcome_id: str, invitee: str = "INV-1", start: datetime | None = None, created: str = "2026-11-24T10:30:00.000000Z"
) -> dict:
    event = json.loads(load_event("webhooks_calendly_invitee_created.json")["body"].replace(str(DANA), outcome_id))
    start = start or datetime.now(UTC) + timedelta(days=3)
    uri = f"https://api.calendly.com/scheduled_events/EV-1/invitees/{invitee}"
    event["created_at"] = event["payload"]["created_at"] = created
    event["payload"]["uri"] = uri
    event["payload"]["scheduled_event"]["start_time"] = start.isoformat()
    event["payload"]["scheduled_event"]["end_time"] = (start + timedelta(minutes=30)).isoformat()
    return event


def mark(kind: str, invitee: str, created: str) -> dict:
    uri = f"https://api.calendly.com/scheduled_events/EV-1/invitees/{invitee}"
    return {
        "created_at": created,
        "created_by": "https://api.calendly.com/users/AAAA-host",
        "event": kind,
        "payload": {
            "uri": f"https://api.calendly.com/invitee_no_shows/{created}",
            "invitee": uri,
            "created_at": created,
        },
    }


def outcome(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def test_invitee_created_is_a_booking_not_a_completed_meeting(db, outcome_id: str) -> None:
    status, body = send(booking(outcome_id))
    assert status == 200 and body["applied"] == 1
    row = outcome(db, outcome_id)
    assert row["stage"] == "meeting_booked" and row["meeting_completed_at"] is None
    assert (row["training_label"], row["training_weight"]) == ("positive", 5.0)


def test_reschedule_is_cancel_plus_new_booking(db, outcome_id: str) -> None:
    send(booking(outcome_id, "INV-1"))
    canceled = booking(outcome_id, "INV-1", created="2026-11-25T08:00:00.000000Z")
    canceled["event"] = "invitee.canceled"
    canceled["payload"]["rescheduled"] = True
    send(canceled)
    assert outcome(db, outcome_id)["meeting_canceled_at"] is not None
    new_start = datetime.now(UTC) + timedelta(days=5)
    send(booking(outcome_id, "INV-2", start=new_start, created="2026-11-25T08:00:01.000000Z"))
    row = outcome(db, outcome_id)
    assert row["meeting_canceled_at"] is None and row["meeting_scheduled_start"] == new_start


def test_no_show_links_by_meeting_and_can_be_cleared(db, outcome_id: str) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    send(booking(outcome_id, "INV-9", start=past))
    assert outcome(db, outcome_id)["stage"] == "meeting_completed"
    status, body = send(mark("invitee_no_show.created", "INV-9", "2026-11-26T10:00:00.000000Z"))
    assert status == 200 and body["applied"] == 1  # no email in a no-show: linked through its booking
    row = outcome(db, outcome_id)
    assert row["meeting_no_show"] and row["meeting_completed_at"] is None and row["training_weight"] == 5.0
    send(mark("invitee_no_show.deleted", "INV-9", "2026-11-26T11:00:00.000000Z"))
    assert outcome(db, outcome_id)["meeting_completed_at"] is not None


def test_no_show_before_its_booking_is_applied_once_the_booking_arrives(db, outcome_id: str) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    _, body = send(mark("invitee_no_show.created", "INV-5", "2026-11-26T10:00:00.000000Z"))
    assert body["orphans"] == 1
    send(booking(outcome_id, "INV-5", start=past))
    row = outcome(db, outcome_id)
    assert row["meeting_no_show"] and row["meeting_completed_at"] is None


def test_meeting_completes_when_its_end_passes(db, outcome_id: str) -> None:
    soon = datetime.now(UTC) - timedelta(minutes=29, seconds=58)  # ends in two seconds
    send(booking(outcome_id, "INV-3", start=soon))
    assert outcome(db, outcome_id)["meeting_completed_at"] is None
    time.sleep(2.1)
    result = invoke("MeetingsRefreshFunction", load_event("meetings_refresh_schedule.json"), ROOT / "template.yaml")
    assert result == {"refreshed": 1, "outbox_sent": {"replies": 0, "events": 0}, "outbox_stale": 0, "outbox_parked": 0}
    row = outcome(db, outcome_id)
    assert row["meeting_completed_at"] is not None and row["training_weight"] == 7.0


def test_email_links_when_no_utm(db, outcome_id: str) -> None:
    event = booking(outcome_id)
    event["payload"]["tracking"]["utm_content"] = None
    event["created_at"] = datetime.now(UTC).isoformat()
    _, body = send(event)
    assert body["applied"] == 1 and outcome(db, outcome_id)["meeting_booked_at"] is not None


@pytest.mark.parametrize("kind", ["bad", "stale", "missing"])
def test_bad_signature_is_401_and_writes_nothing(db, outcome_id: str, kind: str) -> None:
    if kind == "bad":
        status, _ = send(booking(outcome_id), signature="t=1,v1=00")
    elif kind == "stale":
        status, _ = send(booking(outcome_id), timestamp=int(time.time()) - 181)
    else:
        status, _ = send(booking(outcome_id), signature="")
    assert status == 401 and count(db, "outcome_events") == 0


@pytest.mark.skipif(not SHARED_FIXTURES.exists(), reason="shared provider fixtures absent")
def test_real_calendly_payload_with_its_signature(db, outcome_id: str, monkeypatch) -> None:
    vector = json.loads((SHARED_FIXTURES / "calendly_synthetic_vector.json").read_text())
    body = (SHARED_FIXTURES / "calendly_invitee_created_realworld_pii_redacted.json").read_bytes()
    configure(
        monkeypatch,
        WEBHOOK_SECRETS_JSON=json.dumps({"calendly_signing_key": vector["signing_key"]}),
        CALENDLY_TOLERANCE_S=str(int(time.time()) - int(vector["t"]) + 60),
    )
    event = route_event(
        load_event("webhooks_calendly_invitee_created.json"),
        body,
        **{"Calendly-Webhook-Signature": vector["header_Calendly-Webhook-Signature"]},
    )
    result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 200 and json.loads(result["body"])["orphans"] == 1

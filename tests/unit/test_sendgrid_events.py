"""SendGrid's documented and real event shapes normalise into the lifecycle's event types."""

from __future__ import annotations

import json

import pytest

from flywheel.domain.lifecycle import EventType
from flywheel.webhooks.sendgrid import message_id_prefix, normalise
from tests.conftest import SHARED_FIXTURES

needs_fixtures = pytest.mark.skipif(not SHARED_FIXTURES.exists(), reason="shared provider fixtures absent")


@needs_fixtures
def test_every_documented_event_type_normalises() -> None:
    events = json.loads((SHARED_FIXTURES / "sendgrid_docs_all_event_types_example.json").read_text())
    normalised, quarantined = normalise(events)
    assert quarantined == []
    assert {e.event_type for e in normalised} >= {
        t.value
        for t in (
            EventType.PROCESSED,
            EventType.DEFERRED,
            EventType.DELIVERED,
            EventType.OPEN,
            EventType.CLICK,
            EventType.BOUNCE,
            EventType.DROPPED,
            EventType.SPAM_REPORT,
            EventType.UNSUBSCRIBE,
            EventType.GROUP_UNSUBSCRIBE,
            EventType.GROUP_RESUBSCRIBE,
        )
    }
    assert all(e.known for e in normalised)


@needs_fixtures
def test_per_event_examples_keep_unknown_fields_in_the_payload() -> None:
    examples = json.loads((SHARED_FIXTURES / "sendgrid_docs_per_event_examples.json").read_text())["examples"]
    for name, events in examples.items():
        for raw, event in zip(events, normalise(events)[0], strict=True):
            assert event.payload == raw, name
            assert event.provider_message_id is None or "filter" not in event.provider_message_id


@needs_fixtures
def test_real_blocked_bounce_without_status_is_a_block() -> None:
    raw = json.loads((SHARED_FIXTURES / "sendgrid_realworld_blocked_no_status.json").read_text())
    [event], _ = normalise(raw)
    assert event.event_type == "bounce" and event.data["bounce_type"] == "blocked" and "status" not in event.data
    assert event.provider_message_id == "euo2iKxdSayPF4YE4--I7A"


def test_machine_opens_categories_and_ids() -> None:
    [event], _ = normalise(
        [
            {
                "event": "open",
                "timestamp": 1795424400,
                "email": "A@B.example",
                "sg_machine_open": True,
                "category": ["a", "b"],
                "sg_message_id": "abc.dfd.1.filter0001.2.3.0",
                "new_field": 1,
            }
        ]
    )
    assert event.data == {"machine_open": True} and event.email == "a@b.example"
    assert event.event_key.startswith("sha256:")  # no sg_event_id: a stable hash of the event
    assert message_id_prefix("abc.dfd.1.filter0001.2.3.0") == "abc.dfd.1"
    assert (
        message_id_prefix("LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0")
        == "LRzXl_NHStOGhQ4kofSm_A"
    )


def test_a_per_org_key_decides_every_events_organisation() -> None:
    """With the key of one organisation (`credential_org`), an `org_id` custom arg naming another is
    quarantined as the key's organisation; one naming it, or none, is its. With one key (no
    `credential_org`) the custom arg names the organisation."""
    raw = [
        {"event": "open", "timestamp": 1795600000, "email": "a@example.com", "sg_event_id": "e1", "org_id": "globex"},
        {"event": "open", "timestamp": 1795600000, "email": "a@example.com", "sg_event_id": "e2", "org_id": "acme"},
        {"event": "open", "timestamp": 1795600000, "email": "a@example.com", "sg_event_id": "e3"},
        {"event": "open", "timestamp": "soon", "org_id": "globex"},
        "not an event",
    ]
    events, quarantined = normalise(raw, "default", credential_org="acme")
    assert [(e.event_key, e.org_id) for e in events] == [("e2", "acme"), ("e3", "acme")]
    assert [(q.field, q.org_id) for q in quarantined] == [("0.org_id", "acme"), ("3.timestamp", "acme"), ("4", "acme")]
    events, quarantined = normalise(raw, "default")
    assert [(e.event_key, e.org_id) for e in events] == [("e1", "globex"), ("e2", "acme"), ("e3", "default")]
    assert [q.org_id for q in quarantined] == ["globex", "default"]

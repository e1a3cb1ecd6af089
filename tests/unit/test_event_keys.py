"""Event keys that an organisation chooses, or that one mail carries to several organisations, name
the request's organisation ("<org>|<key>", empty when it is unknown); the provider's own key stays
beside it as `legacy_key`, for events the release before stored under it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flywheel.domain.ingest import (
    IDENTIFIER,
    MAX_KEY,
    SCOPE,
    IncomingEvent,
    bounded,
    org_keys,
    scoped_key,
    storable_problem,
)
from flywheel.webhooks import calendly, generic, inbound, pipedrive, salesforce
from tests.conftest import load_event
from tests.webhook_helpers import event_body

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_a_scoped_key_names_its_organisation_unambiguously() -> None:
    assert SCOPE not in "abcdefghijklmnopqrstuvwxyz0123456789_.:@/+-" and not IDENTIFIER.match(f"a{SCOPE}b")
    assert scoped_key("acme", "evt-1") == "acme|evt-1" and scoped_key(None, "evt-1") == "|evt-1"
    # an organisation id with ':' (allowed) and a key with ':' never spell another pair
    assert scoped_key("a:b", "c") != scoped_key("a", "b:c")


def _events(org: str | None) -> dict[str, list[IncomingEvent]]:
    crm = load_event("webhooks_crm_deal_won.json")
    raw, event = generic.parse(event_body(crm), generic.DEAL_EVENTS)
    cal_raw, envelope = calendly.parse(event_body(load_event("webhooks_calendly_invitee_created.json")))
    sf = salesforce.parse(event_body(load_event("webhooks_salesforce_opportunity_won.json")))
    inbound_event = load_event("webhooks_sendgrid_inbound_raw.json")
    mail = inbound.parse_mail(inbound_event["headers"].get("Content-Type", ""), event_body(inbound_event))
    return {
        "crm": [generic.to_event(raw, event, "evt-1", NOW, org)],
        "calendly": [calendly.to_event(cal_raw, envelope, org)],
        "pipedrive": pipedrive.to_events(
            pipedrive.parse(event_body(load_event("webhooks_pipedrive_deal_won.json"))), ["a@x.example"], None, org
        ),
        "salesforce": [
            salesforce.to_event(sf, note, "Outcome_Id__c", "Contact_Email__c", org, NOW) for note in sf.notifications
        ],
        "sendgrid_inbound": inbound.to_events(mail, ["reply.flywheel.example"], NOW, org),
    }


@pytest.mark.parametrize("org", ["acme", None])
def test_each_adapter_keys_its_events_within_the_requests_organisation(org: str | None) -> None:
    for provider, made in _events(org).items():
        assert made, provider
        for event in made:
            assert event.legacy_key, provider
            assert event.event_key == scoped_key(org, event.legacy_key), (provider, event.event_key)
            assert event.org_id == org, provider
    # the same delivery for another organisation is another event
    acme, globex = _events("acme"), _events("globex")
    for provider in acme:
        assert {e.event_key for e in acme[provider]}.isdisjoint(e.event_key for e in globex[provider]), provider
        assert [e.legacy_key for e in acme[provider]] == [e.legacy_key for e in globex[provider]], provider


def test_the_providers_own_key_is_what_is_bounded() -> None:
    """A 512-character key was storable before its organisation was added; it still is."""

    def event(**kw: Any) -> IncomingEvent:
        return IncomingEvent("crm", event_type="deal_won", occurred_at=NOW, payload={}, **kw)

    assert storable_problem(event(event_key=scoped_key("o" * 128, "k" * 512), legacy_key="k" * 512)) is None
    assert storable_problem(event(event_key=scoped_key("acme", "k" * 513), legacy_key="k" * 513)) is not None
    assert storable_problem(event(event_key="k" * 513)) is not None


def test_a_key_over_the_limit_is_stored_under_its_hash_within_the_btree_limit() -> None:
    """A Message-ID may fill RFC 5322's 998-character line, and nothing bounds a webhook-id: such a
    key was refused (the event lost). It is now hashed, deterministically, and has no legacy key
    (the release before refused it, so nothing is stored under it)."""
    at_limit = org_keys("acme", "k" * MAX_KEY)
    assert at_limit == {"event_key": "acme|" + "k" * MAX_KEY, "legacy_key": "k" * MAX_KEY, "key_scoped": True}
    for key in ("k" * (MAX_KEY + 1), "é" * 5000, "\U0001f600" * 998):
        made = org_keys("o" * 128, key)
        assert made["legacy_key"] is None and made == org_keys("o" * 128, key)
        assert made["event_key"].startswith("o" * 128 + SCOPE + "long-key:sha256:")
        assert len(made["event_key"].encode()) <= 128 + 1 + 80
        event = IncomingEvent("crm", event_type="deal_won", occurred_at=NOW, payload={}, **made)
        assert storable_problem(event) is None
    assert org_keys("acme", "k" * 600) != org_keys("acme", "k" * 601) != org_keys("globex", "k" * 601)
    assert bounded("k" * 600) == org_keys(None, "k" * 600)["event_key"][1:]


def test_each_adapter_hashes_a_long_key_and_keeps_the_full_one() -> None:
    crm = load_event("webhooks_crm_deal_won.json")
    raw, event = generic.parse(event_body(crm), generic.DEAL_EVENTS)
    made = generic.to_event(raw, event, "w" * 900, NOW, "acme")
    assert made.event_key == scoped_key("acme", bounded("w" * 900)) and made.data["webhook_id"] == "w" * 900
    assert "webhook_id" not in generic.to_event(raw, event, "evt-1", NOW, "acme").data

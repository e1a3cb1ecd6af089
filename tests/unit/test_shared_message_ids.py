"""One provider message id (SendGrid's X-Message-Id is one per send request) or Message-ID can name
several messages: every recipient of one send, and another organisation's reuse of it. The event's
organisation and email choose among them; nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from flywheel.domain.ingest import IncomingEvent, Lookups, Match, Sent, choose_match, named_by

P = "shared14c5d75ce93.dfd.64b469"
ANN, BOB, ZED = (
    Sent(uuid4(), org, f"{lead}@example.com") for org, lead in (("acme", "ann"), ("acme", "bob"), ("globex", "zed"))
)
ANN_GLOBEX = Sent(uuid4(), "globex", "ann@example.com")
NO_EMAIL = Sent(uuid4(), "acme", None, "ann")
NO_EMAIL_BOB = Sent(uuid4(), "acme", None, "bob")


def event(org: str | None, email: str | None, **links: object) -> IncomingEvent:
    return IncomingEvent(
        provider="sendgrid",
        event_key="e1",
        event_type="unsubscribe",
        occurred_at=datetime(2026, 11, 20, tzinfo=UTC),
        payload={},
        org_id=org,
        email=email,
        **links,  # type: ignore[arg-type]
    )


def match(sent: Sent) -> Match:
    return Match(sent.outcome_id, sent.org_id)


@pytest.mark.parametrize(
    ("sent", "org", "email", "expected"),
    [
        # one send to two leads of one organisation: the event's email picks its lead, either case
        ([ANN, BOB], "acme", "ann@example.com", ANN),
        ([BOB, ANN], "acme", "Ann@Example.COM", ANN),
        ([ANN, BOB], None, "bob@example.com", BOB),
        # never another lead's message: Ann's own is not registered (yet), or no email to choose by
        ([BOB], "acme", "ann@example.com", None),
        ([ANN, BOB], "acme", None, None),
        # another organisation's message with the same id neither takes nor hides the event
        ([ANN, ZED], "acme", "ann@example.com", ANN),
        ([ZED, ANN], None, "ann@example.com", ANN),
        ([ZED], "acme", "ann@example.com", None),
        ([ANN, ZED], "globex", "ann@example.com", None),
        # no organisation on the event: only a message to its own email, and only one organisation's
        ([ZED], None, "ann@example.com", None),
        ([ZED], None, None, None),
        ([ANN, ANN_GLOBEX], None, "ann@example.com", None),
        ([ANN, ANN_GLOBEX], "globex", "ann@example.com", ANN_GLOBEX),
        # within its organisation, an id with a single recipient and no email to compare is that message
        ([ANN], "acme", None, ANN),
        ([NO_EMAIL], "acme", "ann@example.com", NO_EMAIL),
        ([NO_EMAIL, BOB], "acme", "ann@example.com", None),
        ([NO_EMAIL], None, "ann@example.com", None),
        # two leads registered without emails are two recipients: nothing tells the event's apart
        ([NO_EMAIL, NO_EMAIL_BOB], "acme", "ann@example.com", None),
        ([NO_EMAIL, NO_EMAIL_BOB], "acme", None, None),
    ],
)
def test_a_provider_message_id_goes_to_the_events_own_recipient(sent, org, email, expected) -> None:
    found = Lookups(provider_message_ids={P: sent})
    assert named_by(sent, event(org, email), same_lead=True) == (match(expected) if expected else None)
    assert choose_match(0, event(org, email, provider_message_id=P), found) == (match(expected) if expected else None)


@pytest.mark.parametrize(
    ("sent", "org", "email", "expected"),
    [
        ([ANN, BOB], "acme", "bob@example.com", BOB),
        # a reply answers the message it references, from whichever address: within its organisation
        ([BOB], "acme", "assistant@example.com", BOB),
        ([ANN, BOB], "acme", "assistant@example.com", None),
        # a Message-ID reused by another organisation never crosses over
        ([ANN, ZED], None, "ann@example.com", ANN),
        ([ANN, ZED], "globex", "assistant@example.com", ZED),
        ([ZED], None, "assistant@example.com", None),
        ([ZED], "acme", "zed@example.com", None),
    ],
)
def test_a_message_id_goes_to_its_message_in_the_events_organisation(sent, org, email, expected) -> None:
    found = Lookups(email_message_ids={"m1@mail.example": sent})
    got = choose_match(0, event(org, email, references=["other@x", "m1@mail.example"]), found)
    assert got == (match(expected) if expected else None)


def test_an_outcome_id_still_comes_first() -> None:
    named = uuid4()
    found = Lookups(outcomes={named: "acme"}, provider_message_ids={P: [ANN, BOB]})
    got = choose_match(0, event("acme", "ann@example.com", outcome_id=str(named), provider_message_id=P), found)
    assert got == Match(named, "acme")

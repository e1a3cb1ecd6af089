"""Where one lead's deal lives: the message its first close was attributed to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from flywheel.domain.ingest import DealEvent, IncomingEvent, Match, deal_home

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FIRST, FOLLOW_UP = Match(uuid4(), "acme"), Match(uuid4(), "acme")


def close(day: int, home: Match | None, key: str = "", kind: str = "deal_won") -> DealEvent:
    return DealEvent(key or f"crm:{kind}-{day}", kind, T0 + timedelta(days=day), home)


def test_the_first_close_decides_whatever_the_later_events_were_attributed_to() -> None:
    events = [close(6, FOLLOW_UP), close(3, FIRST), close(8, FOLLOW_UP, kind="deal_lost")]
    assert deal_home(events) == (FIRST, "applied")
    assert deal_home(events[::-1]) == (FIRST, "applied")


def test_ties_on_time_go_by_key_and_reopenings_never_decide() -> None:
    same = [close(3, FOLLOW_UP, key="crm:b"), close(3, FIRST, key="crm:a")]
    assert deal_home(same) == (FIRST, "applied")
    assert deal_home([close(1, None, kind="deal_reopened"), *same]) == (FIRST, "applied")


def test_a_deal_first_closed_with_no_message_waits_and_one_never_closed_is_ignored() -> None:
    assert deal_home([close(-1, None), close(3, FIRST)]) == (None, "orphan")
    assert deal_home([close(3, FIRST, kind="deal_reopened")]) == (None, "ignored")
    assert deal_home([]) == (None, "ignored")


def named(day: int, home: Match, kind: str = "deal_won") -> DealEvent:
    """A close that named its message (the CRM's outcome id): `home` is the message it named."""
    return DealEvent(f"crm:named-{kind}-{day}", kind, T0 + timedelta(days=day), home, fixed=True)


def test_a_first_close_that_named_its_message_is_the_deals_home() -> None:
    # a lost the CRM sends later by e-mail alone (attributed to the follow-up) goes where the deal is
    assert deal_home([named(3, FIRST), close(6, FOLLOW_UP, kind="deal_lost")]) == (FIRST, "applied")
    assert deal_home([close(4, FOLLOW_UP, kind="deal_reopened"), named(3, FIRST)]) == (FIRST, "applied")
    # an e-mail-attributed close before it still decides, as any first close does
    assert deal_home([named(6, FOLLOW_UP), close(3, FIRST)]) == (FIRST, "applied")


def test_a_deal_first_closed_with_no_message_goes_to_the_first_close_that_named_one() -> None:
    assert deal_home([close(-1, None), named(3, FIRST), close(6, FOLLOW_UP)]) == (FIRST, "applied")
    assert deal_home([close(-1, None), named(3, FIRST, kind="deal_reopened")]) == (None, "orphan")


def event(**kwargs: object) -> IncomingEvent:
    base: dict[str, object] = {
        "provider": "crm",
        "event_key": "k",
        "event_type": "deal_won",
        "occurred_at": T0,
        "payload": {},
        "data": {"deal_id": "crm:D-1"},
        "org_id": "acme",
        "email": "dana@example.com",
    }
    return IncomingEvent(**{**base, **kwargs})  # type: ignore[arg-type]


def test_only_deal_events_linked_by_email_alone_belong_to_a_deal_group() -> None:
    assert event().deal_group == ("crm", "acme", "crm:D-1", "dana@example.com")
    assert event(event_type="deal_reopened").deal_group == ("crm", "acme", "crm:D-1", "dana@example.com")
    assert event(outcome_id=str(uuid4())).deal_group is None  # names its message
    assert event(org_id=None).deal_group is None  # no organisation, no email attribution
    assert event(data={}).deal_group is None  # no deal id
    assert event(event_type="meeting_booked").deal_group is None


def test_a_deal_event_that_names_its_message_is_a_named_deal_event() -> None:
    assert event(outcome_id=str(uuid4())).named_deal == "crm:D-1"
    assert event(outcome_id=str(uuid4()), event_type="deal_reopened").named_deal == "crm:D-1"
    assert event().named_deal is None  # e-mail alone: its deal group
    assert event(outcome_id=str(uuid4()), data={}).named_deal is None
    assert event(outcome_id=str(uuid4()), event_type="meeting_booked").named_deal is None

"""The outcome lifecycle fold: order- and duplicate-independence, labels, weights, quality."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.lifecycle import EventType, OutcomeEvent, derive_outcome

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=40)


def ev(kind: EventType, minutes: int, key: str | None = None, **data: object) -> OutcomeEvent:
    return OutcomeEvent(
        key=key or f"{kind}-{minutes}", type=kind, occurred_at=T0 + timedelta(minutes=minutes), data=data
    )


def derive(*events: OutcomeEvent, icp: float | None = None, now: datetime = NOW):
    return derive_outcome(events, now=now, icp_score=icp)


def test_no_events_is_a_sent_neutral_outcome() -> None:
    state = derive()
    assert (state.stage, state.training_label, state.training_weight, state.quality_score) == (
        "sent",
        "neutral",
        1.0,
        0.0,
    )


def test_open_before_delivered_still_means_delivered_and_counts_once() -> None:
    opened = ev(EventType.OPEN, 5, key="o1")
    state = derive(opened, opened, ev(EventType.DELIVERED, 10))
    assert state.delivered_at == T0 + timedelta(minutes=10)
    assert state.open_count == 1
    assert state.stage == "opened"
    # engagement alone implies delivery
    assert derive(opened).delivered_at == T0 + timedelta(minutes=5)


def test_machine_opens_are_recorded_apart_from_human_opens() -> None:
    state = derive(ev(EventType.OPEN, 1, key="m", machine_open=True), ev(EventType.DELIVERED, 0))
    assert (state.open_count, state.machine_open_count, state.first_opened_at) == (0, 1, None)
    assert state.stage == "delivered"


def test_block_is_not_a_hard_bounce_but_a_hard_bounce_wins() -> None:
    blocked = ev(EventType.BOUNCE, 1, key="b1", bounce_type="blocked", reason="550 blocked")
    assert derive(blocked).bounce_type == "blocked"
    assert derive(blocked, ev(EventType.BOUNCE, 2, key="b2", bounce_type="bounce")).bounce_type == "bounce"
    state = derive(blocked)
    assert (state.training_label, state.training_weight, state.stage) == ("negative", 0.5, "bounced")


@pytest.mark.parametrize(
    ("events", "label", "weight"),
    [
        ([ev(EventType.DEAL_WON, 50, deal_id="d", value=1000)], "positive", 10.0),
        (
            [
                ev(
                    EventType.MEETING_BOOKED,
                    20,
                    meeting_id="m",
                    start_time=(T0 + timedelta(days=2)).isoformat(),
                    end_time=(T0 + timedelta(days=2, minutes=30)).isoformat(),
                )
            ],
            "positive",
            7.0,
        ),
        (
            [
                ev(
                    EventType.MEETING_BOOKED,
                    20,
                    meeting_id="m",
                    start_time=(NOW + timedelta(days=2)).isoformat(),
                    end_time=(NOW + timedelta(days=2, minutes=30)).isoformat(),
                )
            ],
            "positive",
            5.0,
        ),
        ([ev(EventType.REPLY, 10), ev(EventType.REPLY_CLASSIFIED, 11, category="interested")], "positive", 3.0),
        ([ev(EventType.DEAL_LOST, 50, deal_id="d")], "negative", 3.0),
        ([ev(EventType.REPLY, 10), ev(EventType.REPLY_CLASSIFIED, 11, category="objection")], "negative", 2.0),
        ([ev(EventType.REPLY, 10), ev(EventType.REPLY_CLASSIFIED, 11, category="question")], "neutral", 1.0),
        ([ev(EventType.REPLY, 10)], "neutral", 1.0),
        ([ev(EventType.DROPPED, 1)], "negative", 0.5),
        ([ev(EventType.SPAM_REPORT, 1)], "negative", 0.5),
        ([ev(EventType.UNSUBSCRIBE, 1)], "negative", 0.5),
        ([ev(EventType.DELIVERED, 1)], "neutral", 1.0),
    ],
)
def test_label_table(events: list[OutcomeEvent], label: str, weight: float) -> None:
    state = derive(*events)
    assert (state.training_label, state.training_weight) == (label, weight)


def test_strongest_evidence_wins_over_later_weaker_events() -> None:
    won = ev(EventType.DEAL_WON, 100, deal_id="d", value=5000)
    state = derive(won, ev(EventType.UNSUBSCRIBE, 200), ev(EventType.SPAM_REPORT, 300))
    assert (state.training_label, state.training_weight) == ("positive", 10.0)
    # a lost deal outranks an interested reply of equal weight: it is deeper in the funnel
    lost = derive(
        ev(EventType.REPLY, 1),
        ev(EventType.REPLY_CLASSIFIED, 2, category="interested"),
        ev(EventType.DEAL_LOST, 3, deal_id="d"),
    )
    assert (lost.training_label, lost.training_weight) == ("negative", 3.0)


def test_meeting_canceled_no_show_and_completion_follow_time_and_latest_mark() -> None:
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=1, minutes=30)
    booked = ev(EventType.MEETING_BOOKED, 10, meeting_id="m1", start_time=start.isoformat(), end_time=end.isoformat())
    before_end = derive(booked, now=end - timedelta(minutes=1))
    assert before_end.meeting_completed_at is None and before_end.stage == "meeting_booked"
    assert derive(booked).meeting_completed_at == end

    no_show = ev(EventType.MEETING_NO_SHOW, 2000, meeting_id="m1")
    state = derive(booked, no_show)
    assert state.meeting_no_show and state.meeting_completed_at is None and state.training_weight == 5.0
    cleared = derive(booked, no_show, ev(EventType.MEETING_NO_SHOW_CLEARED, 2100, meeting_id="m1"))
    assert not cleared.meeting_no_show and cleared.meeting_completed_at == end

    canceled = derive(booked, ev(EventType.MEETING_CANCELED, 30, meeting_id="m1"))
    assert canceled.meeting_canceled_at is not None and canceled.meeting_completed_at is None
    assert canceled.training_weight == 1.0 and canceled.stage == "delivered"

    rebooked = derive(
        booked,
        ev(EventType.MEETING_CANCELED, 30, meeting_id="m1"),
        ev(
            EventType.MEETING_BOOKED,
            31,
            meeting_id="m2",
            start_time=start.isoformat(),
            end_time=(end + timedelta(hours=1)).isoformat(),
        ),
    )
    assert rebooked.meeting_canceled_at is None and rebooked.meeting_completed_at == end + timedelta(hours=1)


def test_a_meeting_counts_while_a_booking_stands_and_a_reschedule_keeps_it() -> None:
    """One definition for the label, the stage and every count (`meeting_booked_at IS NOT NULL`):
    a booking that is not canceled. A reschedule's new booking keeps the meeting and its date."""
    booked = ev(EventType.MEETING_BOOKED, 10, meeting_id="a")
    moved = ev(EventType.MEETING_CANCELED, 30, meeting_id="a", rescheduled=True, rescheduled_to="b")
    rebooked = ev(EventType.MEETING_BOOKED, 30, meeting_id="b", rescheduled_from="a")
    for state in (derive(booked), derive(booked, moved, rebooked), derive(rebooked, booked, moved)):
        assert state.meeting_booked_at == T0 + timedelta(minutes=10) and state.meeting_canceled_at is None
        assert state.has_live_meeting and (state.training_label, state.training_weight) == ("positive", 5.0)
    for gone in (
        derive(booked, ev(EventType.MEETING_CANCELED, 20, meeting_id="a")),
        derive(booked, moved, rebooked, ev(EventType.MEETING_CANCELED, 40, meeting_id="b")),
        derive(booked, moved),  # the new booking not (yet) here: nothing stands on this message
    ):
        assert gone.meeting_booked_at is None and gone.meeting_canceled_at is not None
        assert not gone.has_live_meeting and gone.stage == "delivered" and gone.training_weight == 1.0


def test_group_unsubscribe_then_resubscribe_is_subscribed() -> None:
    unsub, resub = ev(EventType.GROUP_UNSUBSCRIBE, 1), ev(EventType.GROUP_RESUBSCRIBE, 2)
    assert derive(unsub, resub).unsubscribed_at is None
    assert derive(unsub).unsubscribed_at == T0 + timedelta(minutes=1)


def test_deal_uses_latest_word_per_deal_and_won_beats_lost() -> None:
    state = derive(
        ev(EventType.DEAL_LOST, 1, deal_id="d1"),
        ev(EventType.DEAL_WON, 2, deal_id="d1", value="25000.50", currency="EUR", close_date="2026-12-01"),
    )
    assert (state.deal_status, str(state.deal_value), state.deal_currency) == ("won", "25000.50", "EUR")
    assert state.deal_closed_at == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_deal_reopened_after_it_closed_is_neither_won_nor_lost_until_it_closes_again() -> None:
    won = ev(EventType.DEAL_WON, 1, deal_id="d1", value=900)
    reopened = ev(EventType.DEAL_REOPENED, 2, deal_id="d1")
    state = derive(won, reopened)
    assert (state.deal_status, state.deal_value, state.stage, state.training_label) == (None, None, "sent", "neutral")
    again = derive(won, reopened, ev(EventType.DEAL_LOST, 3, deal_id="d1"))
    assert (again.deal_status, again.stage) == ("lost", "deal_lost")
    # a reopening older than the close says nothing; another deal of the lead still counts
    assert derive(ev(EventType.DEAL_REOPENED, 0, deal_id="d1"), won).deal_status == "won"
    assert derive(won, reopened, ev(EventType.DEAL_WON, 0, deal_id="d2", value=5)).deal_value == 5


def test_quality_score_follows_the_seed_formula_and_caps_at_one() -> None:
    delivered_opened = derive(ev(EventType.DELIVERED, 0), ev(EventType.OPEN, 1))
    assert delivered_opened.quality_score == pytest.approx(0.2)
    reply = [
        ev(EventType.DELIVERED, 0),
        ev(EventType.REPLY, 2),
        ev(EventType.REPLY_CLASSIFIED, 3, category="interested", sentiment_score=0.8),
    ]
    assert derive(*reply).quality_score == pytest.approx(0.5)
    sour = [
        ev(EventType.DELIVERED, 0),
        ev(EventType.REPLY, 2),
        ev(EventType.REPLY_CLASSIFIED, 3, category="objection", sentiment_score=-0.6),
    ]
    assert derive(*sour).quality_score == pytest.approx(0.2)
    assert derive(ev(EventType.DELIVERED, 0), icp=0.5).quality_score == pytest.approx(0.15)
    big = derive(
        ev(EventType.DELIVERED, 0), ev(EventType.CLICK, 1), ev(EventType.DEAL_WON, 9, deal_id="x", value=60000)
    )
    assert big.quality_score == 1.0
    mid = derive(ev(EventType.DEAL_WON, 9, deal_id="x", value=20000))
    assert mid.quality_score == pytest.approx(0.6)  # won 0.5 + 0.1 at >= $20k
    assert derive(ev(EventType.DEAL_WON, 9, deal_id="x", value=None), icp=None).quality_score == pytest.approx(0.5)


# --- order and repetition never change the result (property test) ---------------------------


def _event_strategy() -> st.SearchStrategy[OutcomeEvent]:
    kinds = st.sampled_from(list(EventType))
    return st.builds(
        lambda kind, minute, n, flag, cat: OutcomeEvent(
            key=f"{kind}-{n}",
            type=kind,
            occurred_at=T0 + timedelta(minutes=minute),
            data={
                "machine_open": flag,
                "bounce_type": "blocked" if flag else "bounce",
                "category": cat,
                "sentiment_score": 0.7 if flag else -0.5,
                "meeting_id": f"m{n % 2}",
                "deal_id": f"d{n % 2}",
                "value": 1000 * n,
                "start_time": (T0 + timedelta(days=n)).isoformat(),
                "end_time": (T0 + timedelta(days=n, minutes=30)).isoformat(),
                "text": f"reply {n}",
            },
        ),
        kinds,
        st.integers(0, 60 * 24 * 60),
        st.integers(0, 5),
        st.booleans(),
        st.sampled_from(["interested", "objection", "question", "unsubscribe", "meeting_request"]),
    )


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_event_strategy(), max_size=25), seed=st.integers(0, 2**32 - 1), icp=st.none() | st.floats(0, 1))
def test_result_is_independent_of_order_and_duplicates(
    events: list[OutcomeEvent], seed: int, icp: float | None
) -> None:
    rng = random.Random(seed)
    # events with the same key are the same provider event: keep one payload per key
    by_key = {e.key: e for e in events}
    unique = list(by_key.values())
    replayed = unique + [rng.choice(unique) for _ in range(len(unique))] if unique else []
    rng.shuffle(replayed)
    assert derive_outcome(replayed, now=NOW, icp_score=icp) == derive_outcome(unique, now=NOW, icp_score=icp)
    state = derive_outcome(unique, now=NOW, icp_score=icp)
    assert 0.0 <= state.quality_score <= 1.0


def test_a_reply_without_text_of_its_own_is_other_not_unclassified_for_ever() -> None:
    """An attachment or a bare "Sent from my iPhone" above the quote: the reply text is empty and is
    never queued for the classifier, so the reply is "other" (a neutral reply), unless what the
    lead wrote next was classified."""
    empty = ev(EventType.REPLY, 10, key="r1", text="", full_text="On Tue, Sam wrote:\n> Hi Dana")
    state = derive(empty)
    assert (state.replied_at, state.reply_text, state.reply_category) == (T0 + timedelta(minutes=10), "", "other")
    assert (state.reply_classification_source, state.training_label, state.training_weight) == ("empty", "neutral", 1.0)
    later = ev(EventType.REPLY, 20, key="r2", text="Forgot to say: Tuesday at 2pm works.")
    classified = ev(EventType.REPLY_CLASSIFIED, 21, key="c2", reply_key="r2", category="meeting_request", source="llm")
    state = derive(classified, later, empty)
    assert (state.replied_at, state.reply_category, state.training_label) == (
        T0 + timedelta(minutes=10),
        "meeting_request",
        "positive",
    )
    # a reply with text waits for its classification
    assert derive(later).reply_category is None

"""Return dates of out-of-office replies: every day a reply can name, read against receipt dates
around leap days, month ends and the turn of the year, never raises and lands on a calendar day
near the reply."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.reply_rules import STALE_DAYS, classify_offline, return_date
from flywheel.webhooks.inbound import parse_mail, to_events
from tests import mail_helpers as mh

# leap and common years, either side of 29 February, month ends, the turn of the year, the
# reviewer's 5 March 2024, the calendar's first and last days
RECEIVED = [
    date(2024, 1, 1),
    date(2024, 2, 28),
    date(2024, 2, 29),
    date(2024, 3, 1),
    date(2024, 3, 5),
    date(2024, 12, 31),
    date(2025, 1, 31),
    date(2025, 3, 5),
    date(2026, 11, 27),
    date(2027, 3, 5),
    date(2027, 12, 20),
    date(2028, 3, 5),
    date(2100, 3, 5),  # not a leap year
    date.min,
    date.min + timedelta(days=10),
    date.max,
    date.max - timedelta(days=40),
]
WEEKDAYS = ["Monday", "lundi", "Montag", "martes", "sábado", "понедельник"]
DE_MONTHS = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August"]
DE_MONTHS += ["September", "Oktober", "November", "Dezember"]


def year_less(month: int, day: int, weekday: str) -> list[str]:
    """The ways a reply names a day without its year, one per date pattern and a few languages."""
    name = calendar.month_name[month]
    return [
        f"I am out of the office until {day} {name} with limited access to email.",
        f"Out of office until {weekday}, {name} {day}th, back the day after.",
        f"{weekday} {day} {calendar.month_abbr[month]}. back in the office",
        f"Ich bin bis {weekday}, {day}. {DE_MONTHS[month - 1]} nicht im Büro.",
        f"ab dem {day:02d}.{month:02d}. wieder im Büro",
        f"OOO until {month}/{day}",
        f"{month}月{day}日まで不在です",
    ]


def window_start(received: date) -> date:
    return received - timedelta(days=STALE_DAYS) if received > date.min + timedelta(days=STALE_DAYS) else date.min


def named_day(month: int, day: int, received: date) -> date | None:
    """What a year-less day must read as: the calendar day with that month and day in the year that
    starts STALE_DAYS before the reply, or none when that year has no such day (31 April, 29 February
    of a common year), never one further away."""
    start = window_start(received)
    found = []
    for year in range(max(1, start.year - 1), min(9999, start.year + 2) + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if start <= candidate and (year, month, day) < (start.year + 1, start.month, start.day):
            found.append(candidate)
    assert len(found) <= 1
    return found[0] if found else None


def every_day() -> list[tuple[int, int]]:
    return [(month, day) for month in range(1, 13) for day in range(1, 32)]  # 30 February, 31 April too


@pytest.mark.parametrize("received", RECEIVED, ids=str)
def test_no_day_a_reply_can_name_raises_whatever_the_receipt_date(received: date) -> None:
    for month, day in every_day():
        for text in year_less(month, day, WEEKDAYS[(month + day) % len(WEEKDAYS)]):
            found = return_date(text, received)
            assert found is None or (found.month, found.day) == (month, day), (text, received, found)


@pytest.mark.parametrize("received", RECEIVED, ids=str)
def test_every_day_a_reply_can_name_reads_as_that_day_in_the_year_from_the_reply(received: date) -> None:
    earliest = window_start(received)
    for month, day in every_day():
        expected = named_day(month, day, received)
        for text in year_less(month, day, WEEKDAYS[(month + day) % len(WEEKDAYS)]):
            found = return_date(text, received)
            assert found == expected, (text, received, found)
            if found is not None:
                assert 0 <= (found - earliest).days < 366, (text, received, found)
        # with the year written, the date is exactly that day, or none when there is no such day
        for year in (received.year - 1, received.year, received.year + 1):
            try:
                exact: date | None = date(year, month, day)
            except ValueError:
                exact = None
            for text in (f"out until {year:04d}-{month:02d}-{day:02d}", f"bis {day:02d}.{month:02d}.{year:04d}"):
                assert return_date(text, received) == exact, (text, received)


LEAP_HEAVY = st.one_of(st.just((2, 29)), st.tuples(st.integers(1, 12), st.integers(0, 99)))


@given(received=st.dates(), named=LEAP_HEAVY, year=st.integers(0, 9999))
@settings(max_examples=500, deadline=None)
def test_any_day_against_any_receipt_date_never_raises(received: date, named: tuple[int, int], year: int) -> None:
    month, day = named
    name = calendar.month_name[month]
    text = f"Away from {day} {name} until {name} {day}, {year:04d}; back {day}.{month}. or {month}/{day}/{year:04d}"
    found = return_date(text, received)
    assert found is None or isinstance(found, date)


@pytest.mark.parametrize(
    ("text", "received", "expected"),
    [
        # the review's reply: sent five days after a leap day, it names the leap day just past
        ("I am out of the office until 29 February", date(2024, 3, 5), date(2024, 2, 29)),
        # no 29 February in the February it can mean: no date, not four years on, not a guess
        ("I am out of the office until 29 February", date(2025, 3, 5), None),
        ("I am out of the office until 29 February", date(2025, 1, 10), None),
        ("I am out of the office until 29 February", date(2028, 3, 5), date(2028, 2, 29)),
        ("I am out of the office until 29 February", date(2027, 4, 5), date(2028, 2, 29)),
        ("I am out of the office until 29 February", date(2027, 1, 10), None),  # Feb 2027 is meant
        ("Back on 31 April", date(2026, 3, 1), None),
        ("Back on 31 April or 2 May", date(2026, 3, 1), date(2026, 5, 2)),  # the real day still counts
        # the turn of the year, both sides
        ("Out from 23 December until 4 January", date(2026, 12, 20), date(2027, 1, 4)),
        ("Out from 23 December until 4 January", date(2027, 1, 5), date(2027, 1, 4)),  # left on: back already
        ("back on 3 January", date(2026, 11, 27), date(2027, 1, 3)),
        ("back on 2 January", date(2027, 1, 3), date(2027, 1, 2)),
        ("on parental leave until 15 October", date(2026, 11, 27), date(2027, 10, 15)),
        # STALE_DAYS is the edge: 30 days past is an auto-reply left on, 31 days past is next year's
        ("Out until Monday, 1 December", date(2025, 12, 31), date(2025, 12, 1)),
        ("Out until Wednesday, 31 December", date(2026, 1, 31), date(2026, 12, 31)),
        ("back on Monday", date(2026, 11, 27), None),  # a weekday alone is not read as a date
    ],
)
def test_year_rollovers(text: str, received: date, expected: date | None) -> None:
    assert return_date(text, received) == expected


def test_the_offline_classifier_reads_the_leap_day_reply() -> None:
    result = classify_offline(
        "I am out of the office until 29 February with limited access to email.", date(2024, 3, 5)
    )
    assert result.category == "out_of_office" and result.return_date == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(datetime(2024, 3, 5, 10, tzinfo=UTC), "2024-02-29"), (datetime(2025, 3, 5, 10, tzinfo=UTC), None)],
)
def test_an_auto_reply_naming_the_leap_day_becomes_its_event(sent: datetime, expected: str | None) -> None:
    from email.utils import format_datetime

    message = mh.out_of_office()
    message.set_payload("I am out of the office until 29 February with limited access to email.\n")
    message.replace_header("Date", format_datetime(sent))
    mail = parse_mail(*mh.raw_post(message))
    [event] = to_events(mail, ["reply.flywheel.example"], sent)
    assert event.data["category"] == "out_of_office" and event.data["return_date"] == expected

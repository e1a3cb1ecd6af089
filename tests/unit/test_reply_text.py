"""Cutting the quoted original off a reply, in the forms mail clients really use."""

import pytest

from flywheel.webhooks.inbound import reply_text


@pytest.mark.parametrize(("text", "expected"), [
    ("Sounds good.\n\nOn Mon, Nov 23, 2026 at 9:00 AM Sam <sam@acme.example> wrote:\n> Hi", "Sounds good."),
    ("Sounds good.\n\nOn Mon, Nov 23, 2026 at 9:00 AM Sam <sam@acme.example>\nwrote:\n> Hi", "Sounds good."),
    ("Merci, pas pour le moment.\n\nLe lun. 23 nov. 2026 à 09:00, Sam <sam@acme.example> a écrit :\n> Bonjour",
     "Merci, pas pour le moment."),
    ("Bitte melden Sie sich im Januar.\n\nAm Mo., 23. Nov. 2026 um 09:00 schrieb Sam <sam@acme.example>:\n> Hallo",
     "Bitte melden Sie sich im Januar."),
    ("Call me.\r\n\r\n-----Original Message-----\r\nFrom: Sam\r\nSent: Monday", "Call me."),
    ("Not now.\n\n________________________________\nFrom: Sam <sam@acme.example>\nSent: Monday", "Not now."),
    ("Yes please\n> quoted line\nthanks", "Yes please\nthanks"),
    ("Just a plain reply with no quote", "Just a plain reply with no quote"),
])
def test_reply_text(text: str, expected: str) -> None:
    assert reply_text(text) == expected

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
    # French Outlook puts a space before the colon; Outlook in other languages names the header fields
    ("Merci.\n\nDe : Sam Lee <sam@acme.example>\nEnvoyé : lundi 23 novembre 2026 09:00\nObjet : devis\n\nBonjour",
     "Merci."),
    ("はい。\n\n差出人: Sam Lee <sam@acme.example>\n送信日時: 2026年11月23日\n\nこんにちは", "はい。"),
    ("Да.\n\nОт: Sam Lee <sam@acme.example>\nОтправлено: 23 ноября\n\nЗдравствуйте", "Да."),
    # Gmail in Japanese and other clients write the date and sender, no "wrote"
    ("了解です。\n\n2026年11月23日(月) 9:00 Sam Lee <sam@acme.example>:\n> こんにちは", "了解です。"),
    ("Sure.\n\nSam Lee wrote:\nHi there", "Sure."),
    ("Here is what one CFO wrote:\nIt paid back in a month.", "Here is what one CFO wrote:\nIt paid back in a month."),
    ("Il giorno lun 23 nov 2026 alle ore 09:00 Sam <sam@acme.example> ha scritto:\n> Ciao", ""),
    ("See below.\n\n---------- Forwarded message ---------\nFrom: Tom <tom@acme.example>\n\nbudget", "See below."),
    ("See below.\n\nBegin forwarded message:\n\nFrom: Tom <tom@acme.example>", "See below."),
])
def test_reply_text(text: str, expected: str) -> None:
    assert reply_text(text) == expected

"""An outside re-review of the redaction: prefixed keys behind markdown or a symbol, keys, JSON Web
Tokens and PGP private keys wrapped across lines, camelCase and annotated secret labels, e-mail
addresses whose at sign or dot is encoded in forms the decoder did not read (no semicolon, double
encoded, a backslash escape, a percent-encoded dot, an ideographic full stop), Slavic case forms
the tables lacked, hyphen and apostrophe look-alikes in names, phone separators outside the dash
list, and a declined name that is a common word at a sentence's start. Each case failed before its fix;
the over-redaction cases guard against what the fixes could take too."""

from __future__ import annotations

import pytest

from flywheel.domain import redaction as rd
from tests.unit.test_redaction_attacks import redact  # the lead Dana Reyes, sender Sam Lee (GB)

KEY = "sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"the key: _{KEY}_ thanks", "the key: _{{secret}}_ thanks"),
        (f"here **{GITHUB}** ok", "here **{{secret}}** ok"),
        (f"use ~{KEY} now", "use ~{{secret}} now"),
        (f"ticket #{GITHUB} done", "ticket #{{secret}} done"),
        (f"*{KEY}*", "*{{secret}}*"),
    ],
)
def test_a_prefixed_key_behind_markdown_or_a_symbol_is_removed(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_prefixed_key_wrapped_onto_two_lines_is_removed_whole() -> None:
    text = f"OPENAI_API_KEY={KEY[:24]}\n{KEY[24:]}\nthanks"
    assert redact(text) == "OPENAI_API_KEY={{secret}}\nthanks"


def test_a_pgp_private_key_block_is_removed() -> None:
    text = (
        "see below\n-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF9abcdefghijklmnopqrstuvwxyz0123\n"
        "=ab12\n-----END PGP PRIVATE KEY BLOCK-----\nthanks"
    )
    assert redact(text) == "see below\n{{secret}}\nthanks"


def test_a_json_web_token_wrapped_across_lines_is_removed_whole() -> None:
    token_head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    token_body = "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    signature = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    text = f"token {token_head}.\n{token_body}.\n{signature} end"
    assert redact(text) == "token {{secret}} end"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accessToken=9fK2xQ7mZ4pL8wR3tY6v", "accessToken={{secret}}"),
        ('"clientSecret": "Zx8Qw2Er5Ty7Ui9Op1As"', '"clientSecret": "{{secret}}"'),
        ("apiKey: 7Hq2Lm9Xw4Rt8Yp3Zk6B", "apiKey: {{secret}}"),  # (found before: "apikey" is a label word)
        ("API key (prod): 7Hq2Lm9Xw4Rt8Yp3Zk6B", "API key (prod): {{secret}}"),
        ("password [staging] = Qw8Er2Ty5Ui7Op9As1Df", "password [staging] = {{secret}}"),
    ],
)
def test_camel_case_and_annotated_secret_labels_name_a_secret(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Monkey: 9fK2xQ7mZ4pL8wR3tY6v",  # a word ending in "key" is not a label
        "the turnkey (v2) 2024-q3-budget-review",
        "see the hotkey (ctrl) a1b2c3d4e5f6g7h8i9j0",  # lower case before lower case: one word
        "sk-learn 1.4.2 release notes for 2024",
        "issue #4512-abc-def-ghi-2024 closed",
    ],
)
def test_widened_secret_patterns_leave_ordinary_text(text: str) -> None:
    assert redact(text) == text


# --- encoded e-mail addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "write to jane&#64acme.com today",
        "write to jane%2540acme.com today",
        "write to jane&amp;#64;acme.com today",
        "write to jane\\u0040acme.com today",
        "write to jane\\x40acme.com today",
        "write to jane%40acme%2Ecom today",
        "write to jane=40acme=2Ecom today",
        "write to jane@acme。com today",
        "write to jane@acme｡com today",
        "write to jane@acme﹒com today",  # (found before: NFKC makes the small full stop a dot)
    ],
)
def test_encoded_e_mail_forms_are_removed_whole(text: str) -> None:
    assert redact(text) == "write to {{email}} today"


def test_a_percent_encoded_dot_elsewhere_is_left_alone() -> None:
    text = "the path a%2Eb and 50%2E3 growth"
    assert redact(text) == text


# --- Slavic case forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "text", "expected"),
    [
        (
            ("Jan", "Nowak", "Nowak Sp. z o.o.", "PL"),
            "Rozmawiałem z Nowakiem wczoraj.",
            "Rozmawiałem z {{last_name}} wczoraj.",
        ),
        (
            ("Paweł", "Zieliński", "Zet Sp. z o.o.", "PL"),
            "Spotkanie z Pawłem i o Pawle.",
            "Spotkanie z {{first_name}} i o {{first_name}}.",
        ),
        (
            ("Pavel", "Dvořák", "Dvořák s.r.o.", "CZ"),
            "s Pavlem, bez Pavla, Pavlovi",
            "s {{first_name}}, bez {{first_name}}, {{first_name}}",
        ),
        (("Piotr", "Wójcik", "Wójcik SA", "PL"), "Cześć Piotrze,", "Cześć {{first_name}},"),
        (
            ("Agnieszka", "Wójcik", "Wójcik SA", "PL"),
            "Dziękuję Agnieszce i Marcie.",
            "Dziękuję {{first_name}} i Marcie.",
        ),
        (("Marta", "Wójcik", "Wójcik SA", "PL"), "Dziękuję Marcie.", "Dziękuję {{first_name}}."),
        (("Андрій", "Коваленко", "ТОВ Світло", "UA"), "з Андрієм та Андрієві", "з {{first_name}} та {{first_name}}"),
        (("Пётр", "Смирнов", "ООО Вектор", "RU"), "с Петром, для Петра", "с {{first_name}}, для {{first_name}}"),
    ],
)
def test_more_slavic_case_forms_are_found(lead: tuple[str, str, str, str], text: str, expected: str) -> None:
    first, last, company, country = lead
    assert redact(text, first, last, company, country) == expected


def test_each_slavic_name_has_a_bounded_number_of_forms() -> None:
    for name in ["Paweł", "Pavel", "Piotr", "Agnieszka", "Marta", "Андрій", "Пётр", "Nowak", "Marek"]:
        assert 1 <= len(rd.declined_variants(name)) <= 20, name


# --- hyphen and apostrophe look-alikes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "text", "expected"),
    [
        ("Jean-Luc", "Picard", "Hi Jean Luc, hello", "Hi {{first_name}}, hello"),
        ("Jean-Luc", "Picard", "Hi Jean\u2011Luc Picard,", "Hi {{first_name}} {{last_name}},"),
        ("Jean-Luc", "Picard", "Hi Jean\u2013Luc,", "Hi {{first_name}},"),
        ("Jean-Luc", "Picard", "Hi JeanLuc,", "Hi {{first_name}},"),
        ("Sean", "O'Brien", "Dear Mr O\u02bcBrien,", "Dear Mr {{last_name}},"),
        ("Sean", "O'Brien", "Dear Mr O\u2019Brien,", "Dear Mr {{last_name}},"),
        ("Sean", "O\u2019Brien", "Dear Mr O'Brien,", "Dear Mr {{last_name}},"),
    ],
)
def test_hyphen_and_apostrophe_variants_of_a_name_are_found(first: str, last: str, text: str, expected: str) -> None:
    assert redact(text, first, last, "Starfleet Ltd") == expected


# --- phone separators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator", ["\u00b7", " \u2022 ", "\u2043", "\u05be", "\u058a", "\u2027", " \u00b7 ", "\u30fb"]
)
def test_phone_numbers_with_other_separators_are_removed(separator: str) -> None:
    text = f"call 415{separator}555{separator}0132 today"
    assert redact(text) == "call {{phone}} today"


def test_bullets_between_words_and_short_numbers_stay() -> None:
    text = "Plans · 2024 · 12 seats • 3 teams"
    assert redact(text) == text


# --- a declined name that is a common word ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Marka jest ważna. Marka to obietnica.",
        "Nowa kampania.\nMarka firmy rośnie!",
    ],
)
def test_a_declined_form_that_is_a_common_word_stays_at_a_sentence_start(text: str) -> None:
    assert redact(text, "Marek", "Nowak", "Nowak Sp. z o.o.", "PL") == text


def test_the_declined_name_inside_a_sentence_is_still_found() -> None:
    assert (
        redact("Marku, dzięki. Rozmawiałem z Markiem i u Marka.", "Marek", "Nowak", "Nowak Sp. z o.o.", "PL")
        == "{{first_name}}, dzięki. Rozmawiałem z {{first_name}} i u {{first_name}}."
    )

"""What a second outside review of the redaction found: names with letters NFKD leaves whole
(ł, ø, đ, æ) written in plain ASCII, redacted text that its own residual scan flags (and one such
message failed the whole build), card numbers and IBANs in common layouts, and a decomposed
accent left after a placeholder. Each case failed before its fix; the over-redaction cases pass
before and after."""

from __future__ import annotations

import random

import pytest

from flywheel.domain import redaction as rd

SENDER: dict[str, str | None] = {"name": "Sam Lee", "company": "Acme Robotics GmbH", "country": "GB"}


def context(first: str = "Dana", last: str = "Reyes", regions: tuple[str, ...] = ("GB",)) -> rd.RedactionContext:
    return rd.build_context(
        lead={"first_name": first, "last_name": last, "company": "Northwind Traders Inc."},
        sender=SENDER,
        regions=regions,
    )


def flagged(text: str, ctx: rd.RedactionContext | None = None) -> list[str]:
    """What the residual scan flags in a text, by detector."""
    return [span.detector for span in rd.Redactor().find(text, ctx or context())]


# --- 1. names with letters NFKD does not decompose ------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "text", "expected"),
    [
        ("Paweł", "Wróbel", "Hi Pawel Wrobel,", "Hi {{first_name}} {{last_name}},"),
        ("Michał", "Łęcki", "Hi Michal Lecki, thanks", "Hi {{first_name}} {{last_name}}, thanks"),
        ("Søren", "Kierkegaard", "Hi Soren,", "Hi {{first_name}},"),
        ("Søren", "Kierkegaard", "Hi Soeren,", "Hi {{first_name}},"),
        ("Bjørn", "Ødegård", "Hi Bjorn Odegard,", "Hi {{first_name}} {{last_name}},"),
        ("Đorđe", "Đoković", "Dear Djordje Djokovic,", "Dear {{first_name}} {{last_name}},"),
        ("Đorđe", "Đoković", "Dear Dorde Dokovic,", "Dear {{first_name}} {{last_name}},"),
        ("Ægir", "Þórsson", "Hi Aegir Thorsson,", "Hi {{first_name}} {{last_name}},"),
        ("Zoë", "Cœur", "Hi Zoe Coeur,", "Hi {{first_name}} {{last_name}},"),
        ("Işıl", "Aydın", "Hi Isil Aydin,", "Hi {{first_name}} {{last_name}},"),
        ("Jörg", "Weiß", "Hallo Herr Weiss,", "Hallo Herr {{last_name}},"),
        ("Paweł", "Wróbel", "Hi Paweł Wróbel,", "Hi {{first_name}} {{last_name}},"),  # as stored
    ],
)
def test_names_with_letters_nfkd_keeps_are_found_in_plain_ascii(
    first: str, last: str, text: str, expected: str
) -> None:
    assert rd.Redactor().redact(text, context(first, last)) == expected


def test_the_folded_spellings_of_a_name_are_few() -> None:
    assert rd.person_variants("Đorđe Đoković") >= {"Dorde", "Djordje", "Dokovic", "Djokovic", "Djordje Djokovic"}
    assert len(rd.person_variants("Đorđe Đoković")) <= 12
    assert rd.person_variants("Dana Reyes") == {"Dana", "Reyes", "Dana Reyes"}  # ASCII: nothing to fold


# --- 2. redacted text passes its own residual scan ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tel/Fax: +44/4111 1111 1111 1111", "Tel/Fax: {{phone}} {{phone}}"),
        ("4111-1111-1111-1111.4111 1111 1111 1111 ", "{{card_number}}.{{card_number}} "),
        ("020 7946 0958-4111 1111 1111 1111-ref", "{{phone}}-{{card_number}}-ref"),
    ],
)
def test_what_a_replacement_leaves_standing_alone_is_redacted_too(text: str, expected: str) -> None:
    ctx = context(regions=("GB", "DE", "US"))
    assert rd.Redactor().redact(text, ctx) == expected
    assert rd.Redactor().redact_many([text], ctx) == [expected]  # the dataset build's path
    assert flagged(expected, ctx) == []


def test_an_address_before_a_digit_run_leaves_nothing_the_scan_flags() -> None:
    ctx = context(regions=("DE",))
    redacted = rd.Redactor().redact("Büro: Berliner Straße 12/4111 1111 1111 1111", ctx)
    assert "{{address}}" in redacted
    assert "1111 1111 1111" not in redacted
    assert flagged(redacted, ctx) == []


PHONES = ["+44 20 7946 0958", "+44/4111", "020 7946 0958", "(415) 555-0132", "+49 170 1234567", "0049-170-1234567"]
CARDS = ["4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "3782 822463 10005", "4111.1111.1111.1111"]
ADDRESSES = ["Berliner Straße 12", "221B Baker Street", "12 rue de la Paix, 75002 Paris", "Hauptstr. 5, 10115 Berlin"]
OTHERS = ["4111", "1111", "12", "2024", "09/27", "1111 1111", "0958", "1.2.3.4", "$1,299.00", "Tel/Fax:", "Büro:"]
OTHERS += ["call", "No.", "Visa", "Dana", "Reyes", "dana.reyes@northwind.com", "DE89 3704 0044 0532 0130 00"]
JOINERS = ["/", " ", "-", ", ", "; ", ".", " / ", "\n", " (", ") ", ": ", "", "–"]


def mixes(seed: int, count: int) -> list[str]:
    """Phone numbers, cards, addresses, numbers and words run together with everyday punctuation."""
    rng = random.Random(seed)  # noqa: S311 - test data
    kinds = [PHONES, CARDS, ADDRESSES, OTHERS]
    return [
        "".join(rng.choice(rng.choice(kinds)) + rng.choice(JOINERS) for _ in range(rng.randint(2, 6)))
        for _ in range(count)
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_redacted_mixes_of_numbers_and_punctuation_have_no_residual_hits(seed: int) -> None:
    """Before, about one in twenty of these left something the residual scan flagged."""
    ctx = context(regions=("GB", "DE", "US"))
    texts = mixes(seed, 800)
    redactor = rd.Redactor()
    redacted = redactor.redact_many(texts, ctx)
    residual = [
        (text, out, [out[s.start : s.end] for s in spans])
        for text, out, spans in zip(texts, redacted, redactor.find_many(redacted, ctx), strict=True)
        if spans
    ]
    assert residual == []


def test_a_text_whose_placeholders_stand_apart_is_read_once() -> None:
    """The second read is for texts whose replacement may have left something: most have none."""
    reads: list[str] = []

    class Counting:
        name = "counting"

        def find(self, text: str, context: rd.RedactionContext) -> list[rd.Span]:
            reads.append(text)
            return []

    redactor = rd.Redactor(detectors=(*rd.DEFAULT_DETECTORS, Counting()))
    ctx = context()
    assert redactor.redact("Hi Dana,\n\nthanks. Call me on 020 7946 0958.", ctx) == (
        "Hi {{first_name}},\n\nthanks. Call me on {{phone}}."
    )
    assert len(reads) == 1
    reads.clear()
    redactor.redact("Tel/Fax: +44/4111 1111 1111 1111", ctx)
    assert len(reads) == 2  # read again, and the second read replaced nothing left


# --- 3. card numbers in common layouts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111.1111.1111.1111 thanks", "card {{card_number}} thanks"),
        ("card 4111–1111–1111–1111", "card {{card_number}}"),  # en dashes
        ("card 4111—1111—1111—1111", "card {{card_number}}"),  # em dashes
        ("card 4111  1111  1111  1111", "card {{card_number}}"),  # double spaces
        ("card 4111 1111\n1111 1111\nthanks", "card {{card_number}}\nthanks"),  # a group on the next line
        ("No.4111111111111111", "No.{{card_number}}"),
        ("Visa 09/27 4111 1111 1111 1111", "Visa 09/27 {{card_number}}"),  # after the expiry date
        ("4111-1111-1111-1111-5555-5555-5555-4444", "{{card_number}}-{{card_number}}"),
    ],
)
def test_card_numbers_in_common_layouts_are_removed(text: str, expected: str) -> None:
    assert rd.Redactor().redact(text, context()) == expected
    assert "card" in flagged(text)


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4 and 10.0.0.1",
        "v2.4111111111111111",  # a decimal
        "INV-4111111111111111 and PO4111111111111111",
        "Priced at $1,299.00 (or 1.299.000.000 a year)",
        "from 2024.01.15 to 2024.02.15",
        "DE89 3704 0044 0532 0130 01 has a wrong check digit",
        "pi is 3.1415926535897932384",
        "Invoice 4111.1111.1111.1112 is due",  # fails Luhn
    ],
)
def test_versions_prices_dates_and_codes_are_not_cards(text: str) -> None:
    assert "card" not in flagged(text)


# --- 4. IBANs in lower case and other layouts -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iban de89 3704 0044 0532 0130 00.", "iban {{iban}}."),
        ("gb29nwbk60161331926819", "{{iban}}"),
        ("Gb29 Nwbk 6016 1331 9268 19 ok", "{{iban}} ok"),
        ("DE89-3704-0044-0532-0130-00", "{{iban}}"),
        ("DE89  3704  0044  0532  0130  00", "{{iban}}"),
        ("IBAN DE89 3704 0044\n0532 0130 00\nThanks", "IBAN {{iban}}\nThanks"),
    ],
)
def test_ibans_in_lower_case_and_other_layouts_are_removed(text: str, expected: str) -> None:
    assert rd.Redactor().redact(text, context()) == expected
    assert "iban" in flagged(text)


@pytest.mark.parametrize(
    "text",
    [
        "de89 3704 0044 0532 0130 01 has a wrong check digit",
        "sku ab12 3456 7890 1234 and fy24 q3 2024",
        "xde89370400440532013000",  # inside a word
    ],
)
def test_what_only_looks_like_a_lower_case_iban_is_kept(text: str) -> None:
    assert "iban" not in flagged(text)


# --- 5. a decomposed accent after what is replaced ------------------------------------------------


@pytest.mark.parametrize(
    ("first", "text", "expected"),
    [
        ("José", "Hola Jose\u0301,", "Hola {{first_name}},"),
        ("Dana", "mail jane@acme.com\u0301 today", "mail {{email}} today"),
        ("Zoë", "Hi Zoe\u0308!", "Hi {{first_name}}!"),
        ("Dana", "mail jane@acme.com\u0301\u0301 today", "mail {{email}} today"),  # two marks
    ],
)
def test_a_combining_accent_goes_with_the_letter_it_follows(first: str, text: str, expected: str) -> None:
    assert rd.Redactor().redact(text, context(first, "Reyes")) == expected


@pytest.mark.parametrize(
    "hostile",
    ["4111. " * 40_000, "4111 –" * 40_000, "4\n" * 100_000, "de89 " * 40_000, "de89-3704\n" * 20_000, "1.2." * 50_000],
    ids=lambda text: repr(text[:8]),
)
def test_hostile_text_for_the_wider_card_and_iban_layouts_is_redacted_in_bounded_time(hostile: str) -> None:
    from tests.conftest import deadline

    changed = [d for d in rd.DEFAULT_DETECTORS if d.name in ("card", "iban")]
    with deadline(15, hostile[:40]):
        rd.Redactor(detectors=changed).redact_many([hostile, hostile[:5000]], rd.RedactionContext(regions=("US",)))

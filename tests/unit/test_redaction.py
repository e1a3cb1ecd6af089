"""Redaction detectors, each on its own planted corpus, and the whole pipeline on all of it."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flywheel.domain import redaction as rd
from tests.conftest import ROOT, planted_context

CORPUS = [json.loads(line) for line in (ROOT / "tests" / "data" / "pii_planted.jsonl").read_text().splitlines()]
CLEAN = [line for line in (ROOT / "tests" / "data" / "pii_clean.txt").read_text().splitlines() if line]
DETECTORS = {d.name: d for d in rd.DEFAULT_DETECTORS}


def survivors(item: dict, redacted: str) -> list[str]:
    return [p for p in item["planted"] if p in redacted]


def test_the_planted_corpus_is_broad() -> None:
    assert len(CORPUS) >= 200
    assert set(Counter(i["detector"] for i in CORPUS)) == set(DETECTORS)
    countries = {i["country"] for i in CORPUS} - {"any", "none"}
    assert len(countries) >= 12
    text = "".join(i["text"] for i in CORPUS)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text) and any("\u0400" <= ch <= "\u04ff" for ch in text)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_alone_removes_its_planted_corpus(name: str) -> None:
    redactor = rd.Redactor(detectors=(DETECTORS[name],))
    items = [i for i in CORPUS if i["detector"] == name]
    missed = [
        (i["id"], survivors(i, out))
        for i in items
        if survivors(i, out := redactor.redact(i["text"], planted_context(i)))
    ]
    assert items and missed == []


def test_the_pipeline_leaves_zero_survivors_in_the_whole_corpus() -> None:
    redactor = rd.Redactor()
    missed = [i["id"] for i in CORPUS if survivors(i, redactor.redact(i["text"], planted_context(i)))]
    assert missed == []
    assert redactor.counts["phone"] >= 60 and redactor.counts["email"] >= 15


def test_clean_text_is_left_alone() -> None:
    """Ranges, amounts, dates, versions, times and placeholders are not personal data (measured: 0 of 59 changed)."""
    redactor = rd.Redactor()
    ctx = rd.RedactionContext(regions=("US", "DE", "GB"))
    assert [line for line in CLEAN if redactor.redact(line, ctx) != line] == []


def test_links_get_placeholders_by_kind() -> None:
    out = rd.Redactor().redact(
        "Book calendly.com/sam-lee/30min, see linkedin.com/in/jdoe or acme.example/case-study.", rd.RedactionContext()
    )
    assert out == "Book {{booking_link}}, see {{profile_link}} or {{link}}."


def test_longest_match_first_keeps_company_names_whole() -> None:
    ctx = rd.build_context(lead={"first_name": "Jonas", "last_name": "Müller", "company": "Müller & Söhne AG"})
    out = rd.Redactor().redact("Jonas Müller leads Müller & Söhne AG (mueller-soehne.de, abm-mueller-soehne).", ctx)
    assert out == "{{first_name}} {{last_name}} leads {{company}} ({{link}}, abm-{{company}})."


def test_a_built_context_brings_the_needles_its_terms_give() -> None:
    """build_context works the needles out with the terms; they are the ones the terms alone give,
    in the same order, for every context of the planted corpus (CJK names and all)."""
    ordinary = rd.build_context(
        lead={"first_name": "Will", "last_name": "Price", "company": "Bright Box Ltd"},
        colleagues=["Amélie Haddad", "山田太郎", "山田Taro"],
        sender={"name": "Mark Wood", "company": "株式会社山田製作所", "signature": "Mark Wood\nBright Ideas"},
    )
    for built in [ordinary, *(planted_context(item) for item in CORPUS)]:
        assert built.known_needles is not None
        assert built.needles == rd.RedactionContext(built.regions, built.terms).needles, built.terms


def test_existing_placeholders_are_never_touched() -> None:
    ctx = rd.build_context(lead={"first_name": "Name", "last_name": None, "company": "Link"})
    assert rd.Redactor().redact("Hi {{first_name}}, {{booking_link}}", ctx) == "Hi {{first_name}}, {{booking_link}}"


def test_names_in_scripts_without_spaces_match_inside_words() -> None:
    ctx = rd.build_context(lead={"first_name": "太郎", "last_name": "山田", "company": "株式会社山田製作所"})
    assert rd.Redactor().redact("山田様、山田製作所の件です。", ctx) == "{{last_name}}様、{{company}}の件です。"


def test_phone_regions_come_from_the_lead_and_the_sender() -> None:
    local = "Ruf an: 030 901820 oder 0171 2345678"
    assert rd.Redactor().redact(local, rd.build_context(lead={}, regions=["DE"])) == "Ruf an: {{phone}} oder {{phone}}"
    assert rd.build_context(lead={}, regions=["germany", "UK", None, "xx"]).regions == ("DE", "GB")


def test_colleagues_come_from_name_like_keys_of_the_lead_context() -> None:
    extra = {
        "champion": {"name": "Ana Silva"},
        "assistant": "Tom Becker",
        "industry_notes": "Series B, 2024",
        "stack": ["Salesforce", "Slack"],
    }
    assert sorted(rd.names_in(extra)) == ["Ana Silva", "Tom Becker"]


def test_a_signature_block_is_cut_and_its_lines_removed_elsewhere() -> None:
    from flywheel.domain.reply_text import strip_signature

    body = "Hi Dana,\nShort question.\n\nBest regards,\nSam Lee\nAcme Robotics | +44 20 7946 0958"
    text, cut = strip_signature(body)
    assert cut and text == "Hi Dana,\nShort question.\n\nBest regards,"
    assert strip_signature("Hi,\nsee below.\n-- \nSam")[0] == "Hi,\nsee below."
    assert strip_signature("No signature here.\nThanks for the note.") == (
        "No signature here.\nThanks for the note.",
        False,
    )


def test_comprehend_requests_are_packed_under_the_limit_and_mapped_back() -> None:
    texts = ["a" * 60, "Call Paul Santos today", "é" * 70_000]
    requests = rd.pack_requests(texts)
    assert all(len(r.encode()) <= rd.COMPREHEND_MAX_BYTES for r, _ in requests) and len(requests) == 2
    request, layout = requests[0]
    begin = request.index("Paul Santos")
    spans = list(
        rd.unpack_entities(
            [{"Type": "NAME", "Score": 0.99, "BeginOffset": begin, "EndOffset": begin + 11}], layout, 0.5
        )
    )
    assert spans == [(1, rd.Span(5, 16, "{{name}}", "comprehend"))]
    assert rd.comprehend_units("x" * 50) == 3 and rd.comprehend_units("x" * 1001) == 11

"""The fast paths of the detectors find exactly what the plain scans find.

`Segmented` scans only the runs of allowed characters that hold an anchor: that is exact when no
match can consume a character outside `allowed`, every match holds an anchor, and no look-ahead
reads past `lookahead`. Those three facts are checked on the parsed patterns (so an edit that
breaks one fails here), then the results are compared with a plain `finditer` on random texts.
The address layouts are tried only where one can start a match (`_Gated`): that each starts with
a character of its `_STARTS` is checked on the parsed patterns the same way, and the results are
compared with the plain alternation of the layouts.
Joined scanning (`find_many`, `redact_many`) is compared with text-by-text scanning the same way,
and the possessive runs with the patterns as first written."""

from __future__ import annotations

import importlib
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from re import _constants as C  # noqa: N812 - the parser's own names
from re import _parser
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flywheel.domain import redaction as rd
from tests.conftest import ROOT, planted_context

_compiler: Any = importlib.import_module("re._compiler")  # sre's own compiler, for one parsed node
CORPUS = [json.loads(line) for line in (ROOT / "tests" / "data" / "pii_planted.jsonl").read_text().splitlines()]
CLEAN = [line for line in (ROOT / "tests" / "data" / "pii_clean.txt").read_text().splitlines() if line]
SEGMENTED = {
    "email (plain)": rd.EmailDetector.plain,
    "link": rd.LinkDetector.scan,
}
# the address scans: every layout, and those a text of Latin letters only (or with Cyrillic) is read with
LAYOUT_SCANS = {
    "street address": rd.AddressDetector.scans[0][0],
    "postcode": rd.AddressDetector.scans[1][0],
    "street address (latin)": rd.AddressDetector.scans_for(frozenset())[0][0],
    "postcode (latin)": rd.AddressDetector.scans_for(frozenset())[1][0],
    "street address (cyrillic)": rd.AddressDetector.scans_for(frozenset({"cyrillic"}))[0][0],
}
# every character a text may hold that matters to some pattern, plus the joiner's NUL
PROBES = [chr(c) for c in range(0x20, 0x7F)] + list("\n\t\r\x00\u00a0ÄÖÜäöüßéèàçñ’»”〒−‐ー東京都市区路号ул.дом")


# --- what a parsed pattern can consume ------------------------------------------------------------


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


CATEGORIES: dict[Any, Callable[[str], bool]] = {
    C.CATEGORY_DIGIT: str.isdecimal,
    C.CATEGORY_NOT_DIGIT: lambda c: not c.isdecimal(),
    C.CATEGORY_SPACE: str.isspace,
    C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    C.CATEGORY_WORD: _is_word,
    C.CATEGORY_NOT_WORD: lambda c: not _is_word(c),
}


def _variants(ch: str, icase: bool) -> set[str]:
    return {ch, ch.lower(), ch.upper(), ch.swapcase()} if icase else {ch}


def _in_class(items: list[tuple[Any, Any]], ch: str, icase: bool) -> bool:
    negate = bool(items) and items[0][0] is C.NEGATE
    hit = False
    for op, av in items[1:] if negate else items:
        for v in _variants(ch, icase):
            if (
                (op is C.LITERAL and ord(v) == av)
                or (op is C.RANGE and av[0] <= ord(v) <= av[1])
                or (op is C.CATEGORY and CATEGORIES[av](v))
            ):
                hit = True
    return hit != negate


def can_consume(items: Iterable[tuple[Any, Any]], ch: str, icase: bool) -> bool:
    """Whether any character-consuming node of the pattern (look-arounds aside) accepts `ch`."""
    for op, av in items:
        if op is C.LITERAL and any(ord(v) == av for v in _variants(ch, icase)):
            return True
        if op is C.NOT_LITERAL and all(ord(v) != av for v in _variants(ch, icase)):
            return True
        if op is C.ANY and ch != "\n":
            return True
        if op is C.IN and _in_class(av, ch, icase):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and av[1] > 0 and can_consume(av[2], ch, icase):
            return True
        if op is C.SUBPATTERN:
            _, add, remove, sub = av
            if can_consume(sub, ch, (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE):
                return True
        if op is C.ATOMIC_GROUP and can_consume(av, ch, icase):
            return True
        if op is C.BRANCH and any(can_consume(b, ch, icase) for b in av[1]):
            return True
    return False


def _every_member(op: Any, av: Any, wanted: Callable[[str], bool]) -> bool:
    """Whether every character a member of a class (a digit category, a literal, a range) stands
    for satisfies `wanted` (a negated class never does)."""
    if op is C.CATEGORY:
        return av is C.CATEGORY_DIGIT and wanted("0")
    if op is C.LITERAL:
        return wanted(chr(av))
    if op is C.RANGE:
        return all(wanted(chr(code)) for code in range(av[0], av[1] + 1))
    return False


def must_consume(items: Iterable[tuple[Any, Any]], wanted: Callable[[str], bool]) -> bool:
    """Whether every match consumes at least one character satisfying `wanted` (conservative:
    True only when it can be shown)."""
    for op, av in items:
        if op is C.LITERAL and wanted(chr(av)):
            return True
        if op is C.IN and av and all(_every_member(o, av0, wanted) for o, av0 in av):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and av[0] >= 1 and must_consume(av[2], wanted):
            return True
        if op in (C.SUBPATTERN,) and must_consume(av[3], wanted):
            return True
        if op is C.ATOMIC_GROUP and must_consume(av, wanted):
            return True
        if op is C.BRANCH and all(must_consume(b, wanted) for b in av[1]):
            return True
    return False


def lookahead_reach(items: Iterable[tuple[Any, Any]], barriers: list[str] = (), icase: bool = False) -> int:  # type: ignore[assignment]
    """The farthest a look-ahead (or `\\b`, `$`) reads past where it is checked, or past the end
    of the run: a look-ahead that cannot consume a barrier stops at the run's first barrier."""
    reach = 0
    for op, av in items:
        if op in (C.ASSERT, C.ASSERT_NOT) and av[0] == 1:
            inside = _parser.SubPattern(av[1].state, av[1].data)
            bounded = barriers and not any(can_consume(inside, ch, icase) for ch in barriers)
            reach = max(reach, 1 if bounded else inside.getwidth()[1])
        elif op is C.AT:
            reach = max(reach, 1)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            reach = max(reach, lookahead_reach(av[2], barriers, icase))
        elif op is C.SUBPATTERN:
            _, add, remove, sub = av
            inner = (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
            reach = max(reach, lookahead_reach(sub, barriers, inner))
        elif op is C.ATOMIC_GROUP:
            reach = max(reach, lookahead_reach(av, barriers, icase))
        elif op is C.BRANCH:
            reach = max([reach, *(lookahead_reach(b, barriers, icase) for b in av[1])])
    return reach


def parsed(pattern: re.Pattern[str]) -> tuple[Any, bool]:
    return _parser.parse(pattern.pattern, pattern.flags & ~re.UNICODE), bool(pattern.flags & re.IGNORECASE)


def plain_alternation(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str]:
    return re.compile("|".join(rd._scoped(p) for p in patterns))


@pytest.mark.parametrize("name", sorted(SEGMENTED))
def test_no_match_can_consume_a_barrier(name: str) -> None:
    scan = SEGMENTED[name]
    tree, icase = parsed(scan.pattern)
    barriers = [ch for ch in PROBES if scan.barrier.fullmatch(ch)]
    assert barriers, "a segmented scan needs characters that end a run"
    assert [ch for ch in barriers if can_consume(tree, ch, icase)] == []
    assert lookahead_reach(tree, barriers, icase) + 2 <= scan.lookahead


@pytest.mark.parametrize("name", ["email (plain)"])
def test_every_match_holds_the_anchor(name: str) -> None:
    scan = SEGMENTED[name]
    tree, _ = parsed(scan.pattern)
    assert must_consume(tree, lambda ch: scan.anchor.fullmatch(ch) is not None)


@pytest.mark.parametrize(
    "pattern", [*rd._ADDRESS_PATTERNS, *rd._POSTCODE_PATTERNS, rd._CARD_CUE, rd._IBAN], ids=lambda p: p.pattern[:24]
)
def test_what_a_detector_that_needs_a_digit_matches_holds_one(pattern: re.Pattern[str]) -> None:
    """What `needs_digit` relies on: every address layout, and the cue the card and IBAN detectors
    search for before anything else, holds a digit, so a text without one is skipped whole."""
    tree, _ = parsed(pattern)
    assert must_consume(tree, str.isdecimal)


def test_the_detectors_that_need_a_digit_are_not_asked_about_a_text_without_one() -> None:
    """The texts without a digit (most field values and subjects) are left out for those detectors
    once, before any of them is asked (their `wanted` is not called for each), and what is found
    is what each detector finds text by text."""
    needing = [d for d in rd.DEFAULT_DETECTORS if getattr(d, "needs_digit", False)]
    assert {d.name for d in needing} == {"address", "card", "iban"}
    asked: list[tuple[str, str]] = []

    class Spy:
        def __init__(self, detector: Any) -> None:
            self.detector, self.name, self.needs_digit = detector, detector.name, True
            self.cache_key = detector.cache_key

        def wanted(self, text: str) -> bool:
            asked.append((self.name, text))
            return getattr(self.detector, "wanted", lambda _: True)(text)

        def find(self, text: str, context: rd.RedactionContext) -> Iterable[rd.Span]:
            asked.append((self.name, text))
            return self.detector.find(text, context)

    fields = ["SaaS", "VP Sales", "Dana, call 4111 1111 1111 1111 or see 10117 Berlin", "no digits here", ""]
    spied = rd.Redactor(detectors=[Spy(d) for d in needing])
    assert spied.find_many(fields, rd.RedactionContext()) == [
        rd.Redactor(detectors=needing).find(t, rd.RedactionContext()) for t in fields
    ]
    assert {text for _, text in asked} == {fields[2]}
    stripped = [re.sub(r"\d", "", i["text"]) for i in CORPUS] + [re.sub(r"\d", "", t) for t in CLEAN]
    for detector in needing:
        assert [t for t in stripped if list(detector.find(t, rd.RedactionContext()))] == [], detector.name


def test_a_kept_link_holds_a_dot_with_more_of_the_link_after_it() -> None:
    """The link pattern can match without a dot (`http://localhost`), but `find` drops those: a kept
    link holds a dot that is not its last character (trailing punctuation is cut first)."""
    for text in [
        "see http://localhost/x now",
        "http://a.b/c.",
        "www.acme.example",
        "go to acme.io.",
        "http://x../y",
        "e.g. this",
    ]:
        kept = [text[s.start : s.end] for s in rd.LinkDetector().find(text, rd.RedactionContext())]
        assert all(re.search(r"\.[^\s<>\"'`]", k) for k in kept), kept


# --- the same results as the plain scans ----------------------------------------------------------

TOKENS = sorted(
    {w for item in CORPUS for w in re.split(r"(\s+)", item["text"])}
    | set(CLEAN[:40])
    | {
        "at",
        "AT",
        "dot",
        "(at)",
        "[dot]",
        "@",
        ".",
        ",",
        "\n",
        " ",
        "\n\n",
        "Suite",
        "4100",
        "straße",
        "http://localhost",
        "calendly.com/x",
        "+1",
        "415",
        "555",
        "0132",
        "\x00",
    }
)


def texts(seed: int, count: int = 40) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - test data
    return [
        "".join(rng.choice(TOKENS) + rng.choice(["", " ", "", "\n", ", ", "."]) for _ in range(rng.randint(1, 40)))
        for _ in range(count)
    ]


def same(name: str, text: str) -> None:
    scan = SEGMENTED[name]
    fast, plain = list(scan.finditer(text)), list(scan.pattern.finditer(text))
    if name == "link":  # matches without a dot are dropped by `find`, so only kept ones must agree
        fast = [m for m in fast if "." in m.group(0).rstrip(rd._TRAILING)]
        plain = [m for m in plain if "." in m.group(0).rstrip(rd._TRAILING)]
    assert [m.span() for m in fast] == [m.span() for m in plain], (name, text)


def same_layouts(name: str, text: str) -> None:
    """A layout scan finds what the plain alternation of its layouts finds, as `finditer` does."""
    scan = LAYOUT_SCANS[name]
    plain = plain_alternation(scan.layouts)
    assert [m.span() for m in scan.finditer(text)] == [m.span() for m in plain.finditer(text)], (name, text)


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=40, deadline=None)
def test_segmented_scans_find_what_a_plain_scan_finds(seed: int) -> None:
    for text in texts(seed, 10):
        for name in SEGMENTED:
            same(name, text)
        for name in LAYOUT_SCANS:
            same_layouts(name, text)


def test_segmented_scans_on_the_planted_and_clean_corpora() -> None:
    for text in [i["text"] for i in CORPUS] + CLEAN + GROUP_SAMPLES:
        for name in SEGMENTED:
            same(name, text)
        for name in LAYOUT_SCANS:
            same_layouts(name, text)


def cue_holds(samples: list[str]) -> None:
    detector = rd.EmailDetector()
    for text in samples:
        if detector.obfuscated.search(text):
            assert detector.obfuscated_cue.search(text), text


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=40, deadline=None)
def test_a_text_the_obfuscated_email_pattern_matches_always_has_its_cue(seed: int) -> None:
    cue_holds(texts(seed, 10))


def test_the_obfuscated_email_cue_on_the_corpora_and_each_obfuscation() -> None:
    obfuscations = [
        "jane at acme dot com",
        "jane(at)acme(dot)com",
        "jane [AT] acme [dot] co [dot] uk",
        "j.doe at acme.com",
        "jane @ acme . io",
        "jane < at > acme < dot > de",
        "x_1 at y\n.com",
    ]
    assert all(rd.EmailDetector.obfuscated.search(t) for t in obfuscations)
    cue_holds(obfuscations + [i["text"] for i in CORPUS] + CLEAN)


def test_possessive_runs_match_what_the_greedy_patterns_match() -> None:
    greedy = {
        "plain": re.compile(r"(?:mailto:)?[\w.+%-]+@[\w-]+(?:\.[\w-]+)+"),
        "obfuscated": re.compile(
            rd.EmailDetector.obfuscated.pattern.replace("++", "+").replace("*+", "*"), re.IGNORECASE
        ),
        "link": re.compile(rd.LinkDetector.pattern.pattern.replace("++", "+"), re.IGNORECASE),
    }
    fast = {
        "plain": rd.EmailDetector.plain.pattern,
        "obfuscated": rd.EmailDetector.obfuscated,
        "link": rd.LinkDetector.pattern,
    }
    samples = [i["text"] for i in CORPUS] + CLEAN + texts(7, 400)
    for name, pattern in greedy.items():
        for text in samples:
            assert [m.span() for m in fast[name].finditer(text)] == [m.span() for m in pattern.finditer(text)], name


def contexts() -> list[rd.RedactionContext]:
    return [planted_context(i) for i in [i for i in CORPUS if i["context"]["lead"]][::7]]


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=30, deadline=None)
def test_joined_scanning_finds_and_redacts_what_text_by_text_does(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data
    fields = texts(seed, rng.randint(2, 9)) + [rng.choice(CORPUS)["text"]]
    fields.insert(rng.randrange(len(fields)), "")
    context = rng.choice(contexts())
    one_by_one, joined = rd.Redactor(), rd.Redactor()
    assert joined.find_many(fields, context) == [one_by_one.find(t, context) for t in fields]
    assert joined.redact_many(fields, context) == [one_by_one.redact(t, context) for t in fields]
    assert joined.counts == one_by_one.counts


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=30, deadline=None)
def test_texts_of_many_messages_scanned_together_give_each_text_its_own_answer(seed: int) -> None:
    """`find_each` / `redact_each` join the texts of many messages (a build's batch), each read
    with its own context: the same answers as each text alone, the same counts."""
    rng = random.Random(seed)  # noqa: S311 - test data
    known = contexts()
    pairs = [
        (text, rng.choice(known) if rng.random() < 0.8 else rd.RedactionContext(regions=(rng.choice(["US", "DE"]),)))
        for text in texts(seed, rng.randint(3, 30)) + [rng.choice(CORPUS)["text"] for _ in range(rng.randint(0, 8))]
    ]
    pairs.insert(rng.randrange(len(pairs)), ("", known[0]))
    rng.shuffle(pairs)
    one_by_one, together = rd.Redactor(), rd.Redactor()
    assert together.find_each(pairs) == [one_by_one.find(t, c) for t, c in pairs]
    assert together.redact_each(pairs) == [one_by_one.redact(t, c) for t, c in pairs]
    assert together.counts == one_by_one.counts


def every_known_entity(text: str, context: rd.RedactionContext) -> list[rd.Span]:
    """The known-entity detector as first written: every name found, those inside another too."""
    folded, found = rd.skeleton(text), []
    for needle, placeholder, left_free, right_free, strict in context.needles:
        start = folded.find(needle)
        while start != -1:
            end = start + len(needle)
            if (
                (left_free or start == 0 or not folded[start - 1].isalnum())
                and (right_free or end == len(folded) or not folded[end].isalnum())
                and (not strict or text[start].isupper() or rd._in_slug(text, start, end))
            ):
                found.append(rd.Span(start, end, placeholder, "known_entity"))
            start = folded.find(needle, start + 1)
    return found


def kept_names(text: str, context: rd.RedactionContext) -> list[rd.Span]:
    """The names the detector keeps, by definition: each name not inside one kept for an earlier
    needle (every kept name is compared)."""
    kept: list[rd.Span] = []
    for span in every_known_entity(text, context):
        if not any(k.start <= span.start and span.end <= k.end for k in kept):
            kept.append(span)
    return kept


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=60), st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_the_reach_of_the_kept_names_is_the_furthest_end_of_those_starting_before(
    names: list[tuple[int, int]], probe: int
) -> None:
    reach = rd._Reach(60)
    added: list[tuple[int, int]] = []
    for start, length in names:
        reach.add(start, start + length)
        added.append((start, start + length))
        for position in (probe, start, max(0, start - 1)):
            assert reach.furthest(position) == max((e for s, e in added if s <= position), default=0)


def test_leaving_out_the_names_inside_others_resolves_to_the_same_spans() -> None:
    detector, known = rd.KnownEntityDetector(), contexts()
    overlapping = rd.RedactionContext(
        terms=(("Bright Box", "{{company}}", False), ("Box Co", "{{sender_company}}", False), ("Box", "{{x}}", False))
    )
    # a shorter name searched for before a longer one holding it (terms out of order): the lookup
    # must see the longer name's end past the shorter one's
    unordered = rd.RedactionContext(
        terms=(("Box", "{{x}}", False), ("Bright Box Co", "{{company}}", False), ("Co", "{{y}}", False))
    )
    samples = [
        ("Bright Box Co, Box Co and Bright Box", overlapping),
        ("Bright Box Co, Box Co and Bright Box; Box. " * 12, overlapping),  # past the few compared one by one
        ("Bright Box Co. " * 20, unordered),
        ("Bright Box. " * 20, rd.RedactionContext(terms=(("Bright Box", "{{x}}", False), ("Box.", "{{y}}", False)))),
        *((i["text"], planted_context(i)) for i in CORPUS),
        *((t, c) for c in known for t in texts(19, 30)),
    ]
    left_out = 0
    for text, ctx in samples:
        everything = every_known_entity(text, ctx)
        kept = list(detector.find(text, ctx))
        left_out += len(everything) - len(kept)
        assert kept == kept_names(text, ctx), text
        assert rd.resolve(kept, text) == rd.resolve(everything, text), text
    assert left_out > 0  # the samples hold names inside names


SOFOS = {"lead_first_name": "Σοφος", "lead_last_name": "Smith", "lead_company": "Acme", "brief": "x"}


def test_a_dotted_capital_i_in_one_text_changes_nothing_in_the_texts_joined_with_it() -> None:
    """İ lowers to two characters, so texts holding one are lowered apart from it: a final Σ of a
    name in another text (or in the same one) still lowers to ς and the name is found."""
    from flywheel.domain import dataset as ds

    context = ds.context_of(SOFOS)
    pairs = [("Greetings from İstanbul", context), ("Dear ΣΟΦΟΣ, see you", context), ("İ ΣΟΦΟΣ İ", context)]
    assert rd.Redactor().find_each(pairs) == [rd.Redactor().find(t, c) for t, c in pairs]
    assert rd.Redactor().redact_each(pairs)[1:] == ["Dear {{first_name}}, see you", "İ {{first_name}} İ"]
    assert rd._lower("İSTANBUL ΣΟΦΟΣ") == "İstanbul σοφος"  # one character for one, final sigma kept
    a = dict(SOFOS, outcome_id="a", subject="Hi", body="Greetings from İstanbul", framework="f")
    b = dict(SOFOS, outcome_id="b", subject="İ", body="Dear ΣΟΦΟΣ, see you", framework="ΣΟΦΟΣ method")
    together = ds.examples_of([(a,), (b,)], rd.Redactor(), [(ds.context_of(a),), (ds.context_of(b),)])
    alone = [ds.supervised_example(row, rd.Redactor()) for row in (a, b)]
    assert [(e.targets, e.meta) for e in together] == [(e.targets, e.meta) for e in alone]
    assert together[1].targets == ["Subject: İ\n\nDear {{first_name}}, see you"]
    assert together[1].meta["framework"] == "{{first_name}} method"


def test_cached_results_are_the_results() -> None:
    """A detector's remembered answer for a text (and its regions) is what it finds again."""
    redactor = rd.Redactor()
    context = contexts()[0]
    fields = [i["text"] for i in CORPUS[:60]]
    first = redactor.find_many(fields, context)
    assert redactor._cache  # something was remembered
    assert redactor.find_many(fields, context) == first == [rd.Redactor().find(t, context) for t in fields]


# --- layouts of one script, left out for texts without it ----------------------------------------


def test_a_layout_left_out_for_a_script_needs_a_letter_of_that_script() -> None:
    assert rd._SCRIPT_OF
    for pattern, script in rd._SCRIPT_OF.items():
        tree, _ = parsed(pattern)
        probe = rd._SCRIPTS[script]

        def of_script(ch: str, probe: re.Pattern[str] = probe) -> bool:
            return probe.fullmatch(ch) is not None

        assert must_consume(tree, of_script), pattern.pattern


FIRST_ADDRESS_SCANS = (
    (plain_alternation(rd._ADDRESS_PATTERNS), "{{address}}"),
    (plain_alternation(rd._POSTCODE_PATTERNS), "{{postcode}}"),
)


def scripts_agree(samples: list[str]) -> None:
    """The detector finds what the plain alternations of every layout find (the detector as first
    written: a scan of each kind over the whole text), in the same order."""
    detector = rd.AddressDetector()
    for text in samples:
        every = [(m.span(), ph) for pattern, ph in FIRST_ADDRESS_SCANS for m in pattern.finditer(text)]
        assert [((s.start, s.end), s.placeholder) for s in detector.find(text, rd.RedactionContext())] == every


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=20, deadline=None)
def test_the_scans_for_a_texts_scripts_find_what_every_layout_finds(seed: int) -> None:
    scripts_agree(texts(seed, 10))


def test_the_scans_for_a_texts_scripts_on_the_corpora() -> None:
    extra = ["ул. Тверская, д. 7, 〒100-0005 東京都千代田区丸の内1-1-1", "강남구 테헤란로 152, 10117 Berlin"]
    scripts_agree(extra + GROUP_SAMPLES + [i["text"] for i in CORPUS] + CLEAN)


# --- resolving spans: the shortcut for spans that do not overlap ----------------------------------


@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12), st.sampled_from(["{{a}}", "{{b}}"])), max_size=12),
    st.booleans(),
)
@example([(43, 5, "{{a}}")], True)  # from the placeholder's last character
@example([(25, 6, "{{a}}"), (50, 2, "{{b}}")], True)  # to its first character
@example([(20, 10, "{{a}}"), (44, 3, "{{b}}")], True)  # up to it and from just after it
@settings(max_examples=300, deadline=None)
def test_resolving_answers_what_the_general_merge_answers(raw: list[tuple[int, int, str]], placeholder: bool) -> None:
    text = "x" * 30 + ("{{first_name}}" if placeholder else "y" * 14) + "z" * 30
    spans = [rd.Span(start, start + size, ph, f"d{k % 3}") for k, (start, size, ph) in enumerate(raw)]
    protected = [(m.start(), m.end()) for m in rd.PLACEHOLDER.finditer(text)]
    assert rd.resolve(spans, text) == rd._merged(spans, protected)


def first_merged(spans: list[rd.Span], protected: list[tuple[int, int]]) -> list[rd.Span]:
    """`_merged` as first written: every span compared with every one taken and every placeholder."""
    taken: list[rd.Span] = []
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        start, end = span.start, span.end
        if end <= start or any(p_start <= start and end <= p_end for p_start, p_end in protected):
            continue
        for p_start, p_end in protected:
            if start < p_end and p_start < end:
                start, end = min(start, p_start), max(end, p_end)
        overlapping = [t for t in taken if start < t.end and t.start < end]
        if any(t.start <= start and end <= t.end for t in overlapping):
            continue
        if overlapping:
            keep = overlapping[0]
            taken = [t for t in taken if t not in overlapping]
            span = rd.Span(
                min(start, *(t.start for t in overlapping)),
                max(end, *(t.end for t in overlapping)),
                keep.placeholder,
                keep.detector,
            )
        else:
            span = rd.Span(start, end, span.placeholder, span.detector)
        taken.append(span)
    return sorted(taken, key=lambda s: s.start)


@given(
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 14), st.sampled_from("abc")), max_size=40),
    st.lists(st.sampled_from(["xxxx", "{{p}}", "{{ q }}", "y"]), min_size=1, max_size=16),
)
@settings(max_examples=500, deadline=None)
def test_merging_answers_what_comparing_every_pair_answers(raw: list[tuple[int, int, str]], parts: list[str]) -> None:
    text = "".join(parts)
    spans = [rd.Span(start, start + size, "{{" + ph + "}}", f"d{k % 3}") for k, (start, size, ph) in enumerate(raw)]
    protected = [(m.start(), m.end()) for m in rd.PLACEHOLDER.finditer(text)]
    assert rd._merged(spans, protected) == first_merged(spans, protected)


# --- the address layouts grouped by what their matches start with ---------------------------------

GROUP_SAMPLES = [
    "ул. Тверская, д. 7, 〒100-0005 東京都千代田区丸の内1-1-1",
    "강남구 테헤란로 152, 10117 Berlin",
    "Индекс 123456, D-80331 München, 1012 AB Amsterdam, 8001 Zürich",
    "PO Box 12, Postfach 7, 350 Fifth Avenue, Suite 4100, New York, NY 10118",
    "Unter den Linden 77, Calle Mayor 5, 12 rue de la Paix, 75002 Paris, Friedrichstraße 123",
    "SW1A 1AA, K1A 0B1, NSW 2000, Bengaluru 560001, 1100-148 Lisboa, 01310-100, 111 51 Stockholm, ZIP: 94107",
    "Berliner Straße 12, 55 West 42nd Street, 1600 pennsylvania avenue, Atatürk Cad. No:12",
    "ul. Marszałkowska 10/12, 00-590 Warszawa, On March 3, 2025 Gartner, 2025 Gartner",
]


def test_each_layout_starts_where_its_group_says() -> None:
    """A digit-led layout only ever starts a match on a digit at a word's start, a letter-led one
    on a letter at a word's start: the groups' guards never turn a match away."""
    # every layout not of one script is in exactly one group (a new layout must be put in one)
    for pattern in rd._ADDRESS_PATTERNS + rd._POSTCODE_PATTERNS:
        assert (pattern in rd._SCRIPT_OF) + (pattern in rd._DIGIT_LED) + (pattern in rd._LETTER_LED) == 1
    boundary = re.compile(r"\b")
    samples = GROUP_SAMPLES + [i["text"] for i in CORPUS] + CLEAN + [x for seed in range(40) for x in texts(seed, 10)]
    for pattern in rd._DIGIT_LED | rd._LETTER_LED:
        digit = pattern in rd._DIGIT_LED
        assert any(pattern.search(text) for text in samples), f"no sample for {pattern.pattern[:40]}"
        for text in samples:
            for position in range(len(text)):
                if pattern.match(text, position):
                    char = text[position]
                    assert char.isdecimal() if digit else char.isalpha(), (pattern.pattern[:30], text)
                    assert boundary.match(text, position), (pattern.pattern[:30], text)


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=30, deadline=None)
def test_the_grouped_alternation_matches_the_plain_one(seed: int) -> None:
    grouped_equals_plain(texts(seed, 10))


def test_the_grouped_alternation_on_the_corpora() -> None:
    grouped_equals_plain(GROUP_SAMPLES + [i["text"] for i in CORPUS] + CLEAN)


def grouped_equals_plain(samples: list[str]) -> None:
    for patterns in (rd._ADDRESS_PATTERNS, rd._POSTCODE_PATTERNS):
        latin = [p for p in patterns if p not in rd._SCRIPT_OF]
        for subset in (patterns, latin):
            grouped, plain = rd._alternation(subset), plain_alternation(subset)
            for text in samples:
                assert [m.span() for m in grouped.finditer(text)] == [m.span() for m in plain.finditer(text)], text


EVERY_CHARACTER = "".join(map(chr, range(0x110000)))
REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)


def first_nodes(items: Iterable[tuple[Any, Any]], icase: bool) -> tuple[list[tuple[Any, bool]], bool]:
    """The nodes that can consume a match's first character (with whether each is read ignoring
    case), and whether `items` can match without consuming any. Look-arounds and word boundaries
    are passed over: what they rule out is still counted (conservative)."""
    found: list[tuple[Any, bool]] = []
    for op, av in items:
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue
        if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
            found.append(((op, av), icase))
            return found, False
        if op in REPEATS or op in (C.SUBPATTERN, C.ATOMIC_GROUP):
            if op is C.SUBPATTERN:
                _, add, remove, sub = av
                inner, empty = first_nodes(sub, (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE)
            else:
                inner, empty = first_nodes(av[2] if op in REPEATS else av, icase)
                empty = empty or (op in REPEATS and av[0] == 0)
            found += inner
            if not empty:
                return found, False
            continue
        if op is C.BRANCH:
            empty = False
            for branch in av[1]:
                inner, branch_empty = first_nodes(branch, icase)
                found += inner
                empty = empty or branch_empty
            if not empty:
                return found, False
            continue
        raise AssertionError(f"a node this check does not know: {op}")
    return found, True


def characters_of(node: Any, icase: bool) -> set[str]:
    """Every character one parsed node consumes, as sre itself reads it (case folding included)."""
    state = _parser.State()
    state.flags = re.UNICODE | (re.IGNORECASE if icase else 0)
    one = _compiler.compile(_parser.SubPattern(state, [node]), state.flags)
    return set(one.findall(EVERY_CHARACTER))


@pytest.mark.parametrize("pattern", rd._ADDRESS_PATTERNS + rd._POSTCODE_PATTERNS, ids=lambda p: p.pattern[:24])
def test_each_layout_starts_a_match_with_a_character_of_its_starts(pattern: re.Pattern[str]) -> None:
    """What `_Gated` relies on: a match of each layout starts with a character of `_STARTS` (every
    character of the Unicode range that the first character-consuming nodes of the parsed layout
    accept, ignoring case where the layout does, is in it), and consumes at least one character."""
    tree, icase = parsed(pattern)
    nodes, empty = first_nodes(tree, icase)
    assert nodes and not empty
    starts = re.compile(f"[{rd._STARTS[pattern]}]")
    outside = {ch for node, node_icase in nodes for ch in characters_of(node, node_icase) if not starts.fullmatch(ch)}
    assert outside == set(), pattern.pattern[:40]


def test_the_first_characters_check_would_see_a_start_left_out() -> None:
    """The check above fails a layout whose starts leave out a letter it starts with, in either case."""
    tree, icase = parsed(re.compile(r"\b(?=[pP])(?:P\.?O\.? Box|Postfach)\s+\d", re.IGNORECASE))
    nodes, _ = first_nodes(tree, icase)
    accepted = {ch for node, node_icase in nodes for ch in characters_of(node, node_icase)}
    assert accepted == {"p", "P"}
    tree, icase = parsed(re.compile(r"(?:[0-9]{2})?(?:ab|Cd)"))
    assert {ch for node, i in first_nodes(tree, icase)[0] for ch in characters_of(node, i)} == set("0123456789aC")


ADDRESS_PARTS = [
    "1 ",
    "12",
    "Am ",
    "An der ",
    "ul. ",
    "al. ",
    "p.o. box ",
    "P.O.Box ",
    "apartado ",
    "zip: ",
    "ZIP ",
    "post code ",
    "PIN ",
    "SW1A 1AA",
    "K1A 0B1",
    "NY ",
    "NSW ",
    "Mumbai ",
    "Cad. No:",
    "Caddesi ",
    "rue ",
    "Avenue",
    "Suite ",
    "Berliner ",
    "Straße ",
    "Str. ",
    "str.",
    "March 3, ",
    ", ",
    "\n",
    "\u00a0",
    "\u3000",
    "\u2003",
    "1100-148 ",
    "00-590 ",
    "٣",
    "Lisboa",
    "İstiklal ",
    "Kärntner ",
]


@given(st.integers(min_value=0, max_value=10**9))
@settings(max_examples=30, deadline=None)
def test_a_gated_search_from_any_position_finds_what_the_alternation_finds(seed: int) -> None:
    """`_Gated.search` (and the German street layout found apart) from any position to any end gives
    the alternation's own search there: the street and other layouts are merged from positions
    inside a text."""
    rng = random.Random(seed)  # noqa: S311 - test data
    gates = [rd._Gated([p for p in scan.layouts if p is not rd._STREET]) for scan in LAYOUT_SCANS.values()]
    for text in alphabet_texts(seed, LAYOUT_PARTS + ADDRESS_PARTS, 20) + texts(seed, 5):
        for _ in range(5):
            pos = rng.randint(0, len(text))
            endpos = rng.randint(pos, len(text))
            for gate in gates:
                found, plain = gate.search(text, pos, endpos), gate.alternation.search(text, pos, endpos)
                assert (found and found.span()) == (plain and plain.span()), (text, pos, endpos)
            streets = [m.span() for m in rd._streets(text, pos, endpos)]
            assert streets == [m.span() for m in rd._STREET.finditer(text, pos, endpos)], (text, pos, endpos)


# --- the obfuscated-email scan and the German street layout, against the patterns as first written --

FIRST_OBFUSCATED = re.compile(
    rf"(?<![\w.]){rd._LOCAL}{rd._AT_BRACKETED}{rd._DOMAIN}(?:{rd._DOT}{rd._END}|{rd._TIGHT_DOT}{rd._ANY_END})"
    rf"|(?<![\w.]){rd._LOCAL}\s*@\s*{rd._DOMAIN}(?:{rd._DOT}{rd._END}|{rd._DOT_WORD}{rd._ANY_END})"
    rf"|(?<![\w.])[\w+-]*[._+\d][\w.+-]*+\s+at\s+{rd._LABEL}(?:{rd._DOT}{rd._LABEL})*{rd._DOT}{rd._END}"
    rf"|(?<![\w.]){rd._LOCAL}\s+at\s+{rd._LABEL}(?:{rd._DOT_WORD}{rd._LABEL})*{rd._DOT_WORD}{rd._END}",
    re.IGNORECASE,
)
FIRST_STREET = re.compile(
    r"\b[A-ZÄÖÜ][\wäöüß-]*(?i:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee|"
    r"markt|straat|laan|gracht|plein|kade|dijk|gatan|vägen|gade|vej|veien|gata|tie|katu)\s+\d{1,4}"
    r"(?:\s?[a-zA-Z]\b)?"
)
# where one start inside a run of name characters matters: after a match that ends at a "." or "+"
RUNS = [
    "jane at acme.com.x+b.ob at acme.com",
    "a@b.com+c.d at e.io, f.g at h.de.+i_j at k.uk",
    "x+y at acme dot com-z.w at a.co",
    "+-+-j.ane at acme.com",
    "-- jane.doe at acme.com --",
    "jane at acme.com.j.doe at acme.com",
    "JANE AT ACME DOT COM",
    "j_1 at x dot io dot uk.k_2 at y.io",
]
STREETS = [
    "Ring 5",
    "Konrad-Adenauer-Ring 3",
    "x-Ring 5",
    "Str. 5",
    "Astr. 5",
    "Hauptweg. 5",
    "ab-Cd-Straße 1",
    "Musterstr. 5a, Karl-Marx-Straße 12",
    "Straße 5, STRASSE 7, Hauptstrasse 9 b",
    "Gata 1 Storgata 1 Drottninggatan 5 Ä-Gade 3",
    "Tie 4, Mannerheimintie 4, A-tie 4",
    "Hauptstr.-Ecke 5",
    "Ab-Cd-Ef 5 Ab-Cd-Weg-Gh 6",
]


def alphabet_texts(seed: int, alphabet: list[str], count: int = 200) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - test data
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(count)]


NAME_PARTS = ["a", "J", "1", ".", "+", "-", "_", " ", "at", " at ", "AT", "@", " dot ", "(dot)", "com", "io", "\n"]
STREET_PARTS = [
    "A",
    "Ä",
    "b",
    "-",
    ".",
    " ",
    "1",
    "5a",
    "str",
    "Str.",
    "straße",
    "Ring",
    "ring",
    "weg",
    "gata",
    "tie",
    ",",
]


def test_the_obfuscated_email_scan_finds_what_the_pattern_as_first_written_finds() -> None:
    detector = rd.EmailDetector()
    samples = RUNS + [i["text"] for i in CORPUS] + CLEAN + texts(11, 200) + alphabet_texts(3, NAME_PARTS, 3000)
    for text in samples:
        expected = [m.span() for m in FIRST_OBFUSCATED.finditer(text)]
        assert [m.span() for m in detector.obfuscated.finditer(text)] == expected, text
        assert [m.span() for m in detector._obfuscated(text)] == expected, text


FIRST_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[\d\s().\-/]{5,})\d")
DIGIT_PARTS = list("+()0123456789 .-/\nx") + ["+1 ", "(0)", "+(", "(+", rd.SEPARATOR]


def test_the_digit_runs_are_where_the_pattern_as_first_written_matches() -> None:
    samples = [i["text"] for i in CORPUS] + CLEAN + texts(17, 200) + alphabet_texts(7, DIGIT_PARTS, 20000)
    for text in samples:
        assert list(rd.digit_runs(text)) == [m.span() for m in FIRST_DIGIT_RUN.finditer(text)], text


def test_the_german_street_layout_finds_what_it_found_as_first_written() -> None:
    street = rd._ADDRESS_PATTERNS[1]
    samples = STREETS + [i["text"] for i in CORPUS] + CLEAN + texts(13, 200) + alphabet_texts(5, STREET_PARTS, 3000)
    for text in samples:
        assert [m.span() for m in street.finditer(text)] == [m.span() for m in FIRST_STREET.finditer(text)], text


def test_no_street_word_ends_another_one_past_its_first_letter() -> None:
    """What the German layout's look-ahead relies on: a word that is a street word and nothing more
    ("Ring 5") never ends in another street word after its capital."""
    words = [*rd._STREET_WORDS, "str"]
    assert [(a, b) for a in words for b in words if a[1:].endswith(b)] == []


LAYOUT_PARTS = [
    *STREET_PARTS,
    "1 Main Street",
    "Street-",
    "Am ",
    "Calle ",
    "Via ",
    "PO Box ",
    "12 rue ",
    "10117 ",
    "-",
    "-",
]


def test_the_street_layout_found_apart_gives_the_alternations_matches() -> None:
    """`AddressDetector` finds the German street layout apart from the other layouts (once a run of
    a hyphenated word) and merges the two as their alternation would: leftmost first, the street's
    on a tie; after a match that ends inside a hyphenated word, the next capital in it is tried."""
    samples = [
        "1 Main Street-Ab-Straße 5",
        "ab-Cd-Straße 1, Am Markt-Ring 5",
        "Via Roma-Weg 5 Calle Mayor-Straße 7",
        "A-" * 50 + "Ring 3 and A-B-C 4",
        *STREETS,
        *alphabet_texts(9, LAYOUT_PARTS, 3000),
    ]
    scans = [rd.AddressDetector.scans[0][0], rd.AddressDetector.scans_for(frozenset())[0][0]]
    for scan in scans:
        for text in samples:
            assert [m.span() for m in scan.finditer(text)] == [m.span() for m in scan.pattern.finditer(text)], text


def test_the_plain_address_scan_tried_once_a_name_finds_what_the_pattern_finds() -> None:
    scan = rd.EmailDetector.plain
    samples = [
        "xmailto:a@b.co",
        "mailto:mailto:a@b.co mailtox:a@b.co",
        "a@b.co.mailto:c@d.io, a@b.c+d@e.fg",
        "jane.doe+x@acme.co.uk.jane@acme.io",
        "%%a@b.c@d.e",
        *alphabet_texts(17, ["a", ".", "+", "%", "-", "@", ":", "mailto:", "mailto", "co", " ", "\n"], 3000),
    ]
    for text in samples:
        assert [m.span() for m in scan.finditer(text)] == [m.span() for m in scan.pattern.finditer(text)], text


@given(st.lists(st.sampled_from(LAYOUT_PARTS + ADDRESS_PARTS), max_size=40))
@settings(max_examples=300, deadline=None)
def test_the_detector_finds_what_it_found_as_first_written_in_texts_of_layout_parts(parts: list[str]) -> None:
    scripts_agree(["".join(parts)])


# the layouts whose runs of whitespace are read once, as first written: each split a long run every
# possible way between two or three parts that eat whitespace (seconds to hours on a hostile run)
FIRST_WHITESPACE_LAYOUTS = {
    4: re.compile(
        r"\b(?:Calle|C/|Avenida|Avda\.?|Av\.|Paseo|Plaza|Carrer|Via|Viale|Piazza|Corso|Rua|Travessa|Largo|"
        r"Praça|Alameda)\s+(?:(?:de|del|della|delle|da|do|dos|das)\s+)?[\w'’ .-]{2,40}?,?\s*\d{1,4}\b"
    ),
    5: re.compile(
        r"(?:ул\.|улица|пр-т|пр\.|проспект|пер\.|переулок|наб\.|набережная|ш\.|шоссе|бульвар)\s*"
        r"[А-ЯЁа-яё0-9 .-]{2,40}?,?\s*(?:д\.|дом)\s*\d+[а-я]?",
        re.IGNORECASE,
    ),
    13: re.compile(
        rf"(?<![\w-]){rd._TR_CAP}(?:\s+{rd._TR_CAP}){{0,2}}\s+(?:Caddesi|Cad\.|Cd\.|Sokak|Sokağı|Sok\.|Sk\.|"
        r"Bulvarı|Blv\.|Mahallesi|Mah\.|Mh\.)\s*,?\s*(?:No|Nr)\s*[:.]?\s*\d{1,4}(?:/\d{1,4})?"
    ),
}
FIRST_LABELLED_POSTCODE = re.compile(
    r"\b(?=[pPzZcCиИ])(?:PIN|P[Ii]n ?[Cc]ode|[Pp]ost ?[Cc]ode|[Pp]ostal [Cc]ode|ZIP|ZIP [Cc]ode|Zip(?: ?[Cc]ode)?|"
    r"zip ?code|zip(?=\s*:)|PLZ|CP|CEP|Индекс|индекс)\s*:?\s*\d[\d -]{2,8}\d\b"
)
WHITESPACE_PARTS = [
    *("Via", "Plaza", "de", "della", "Roma", "ул.", "проспект", "Тверская", "д.", "дом", "ZIP", "PIN", "zip"),
    *("CP", "Atatürk", " Cad.", "Gül", " Sok.", "No", "Nr", ":", ",", ".", "-", "1", "12", "12345", "5a", "x", "’"),
    *(" ", " ", " ", "  ", "   ", "\n", "\t", " \n", "\n "),
]


def test_the_layouts_read_a_whitespace_run_once_and_match_what_they_matched_as_first_written() -> None:
    """A street's name may borrow the last spaces of the run before it ("Via  12": the name is
    " 1"); the rewritten runs lend it at most two, and every match, from every start, is the one the
    layout as first written takes."""
    spanish = rd._ADDRESS_PATTERNS[4]
    assert [m.group() for m in spanish.finditer("Via  12, Via   5 x, Via   \t 7, Via  \t 8")] == [
        "Via  12",
        "Via   5",
        "Via   \t 7",
    ]
    pairs = [(FIRST_WHITESPACE_LAYOUTS[i], rd._ADDRESS_PATTERNS[i]) for i in FIRST_WHITESPACE_LAYOUTS]
    pairs.append((FIRST_LABELLED_POSTCODE, rd._POSTCODE_PATTERNS[11]))
    samples = [i["text"] for i in CORPUS] + CLEAN + texts(19, 200) + alphabet_texts(23, WHITESPACE_PARTS, 20000)
    for first, now in pairs:
        for text in samples:
            assert [m.span() for m in now.finditer(text)] == [m.span() for m in first.finditer(text)], text
            for start in range(len(text)):
                was, got = first.match(text, start), now.match(text, start)
                assert (got and got.span()) == (was and was.span()), (text, start)

"""Personal data out of training text: a pipeline of detectors, each finding spans of one kind.

Every detector returns spans of the ORIGINAL text; the pipeline resolves overlaps once (longest
span first, so "Müller & Söhne AG" wins over the surname "Müller" inside it) and replaces them
right to left with placeholders such as `{{phone}}`. Placeholders already in the text (the
sender's own `{{booking_link}}`, our `{{first_name}}`) are never touched. The same detectors run
again over the written files as the residual scan (`Redactor.find`).

Adding a detector: write a class with a `name` and `find(text, context) -> Iterable[Span]`
(module-level compiled patterns, no I/O), give it a planted corpus in
`tests/data/pii_planted.jsonl`, and append it to `DEFAULT_DETECTORS`.

Pure: no I/O. Patterns are compiled once at import; nothing is compiled per row.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import Any, NamedTuple, Protocol

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

from flywheel.domain.reply_text import is_closing_line

PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


Needle = tuple[str, str, bool, bool, bool]  # see RedactionContext.needles


class Span(NamedTuple):  # a tuple: made several times per name found, at half a frozen dataclass's cost
    start: int
    end: int
    placeholder: str  # e.g. "{{phone}}"
    detector: str


@dataclass(frozen=True)
class RedactionContext:
    """What is known about the people in one message: regions for phone numbers and the names to
    remove, as (term, placeholder, strict) triples, longest term first. A strict term (a name that
    is also an ordinary word: "Will", "Price", a company's first word "Bright") is only taken where
    it is written as a name: with a capital, or inside an id or a slug (`abm-bright-q3`)."""

    regions: tuple[str, ...] = ()
    terms: tuple[tuple[str, str, bool], ...] = ()
    # `needles`, when whoever built the context has worked them out already (`build_context`)
    known_needles: tuple[Needle, ...] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def needles(self) -> tuple[Needle, ...]:
        """(skeleton of the term, placeholder, free on the left, free on the right, strict), computed once."""
        if self.known_needles is not None:
            return self.known_needles
        out = []
        for term, placeholder, strict in self.terms:
            needle, left_free, right_free = _needle(term)
            if needle:
                out.append((needle, placeholder, left_free, right_free, strict))
        return tuple(out)


# --- what the detectors read: the text with look-alikes and invisible characters folded ----------

# format characters that render as nothing (zero-width space and joiners, soft hyphen, bidi marks,
# word joiner, BOM, variation selectors): dropped before detection, so "D\u200bana" is "Dana"
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
# Cyrillic and Greek letters drawn like Latin ones (after lower-casing), for matching known names:
# "Dаna" with a Cyrillic а is "Dana" to a reader (Unicode TR 39 confusables, the common subset)
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "i",
        "ј": "j",
        "һ": "h",
        "ԁ": "d",
        "ӏ": "l",
        "ԛ": "q",
        "ԝ": "w",
        "α": "a",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ı": "i",
        "ℓ": "l",
    }
)
# hyphen and apostrophe look-alikes, for matching known names: "Jean‑Luc" (a non-breaking hyphen,
# which NFKC makes U+2010) and "Jean–Luc" are "Jean-Luc"; "OʼBrien" and "O’Brien" are "O'Brien"
_CONFUSABLES.update(
    str.maketrans(
        dict.fromkeys("\u2010\u2011\u2012\u2013\u2212", "-") | dict.fromkeys("\u2018\u2019\u02bb\u02bc\u2032", "'")
    )
)
_CONFUSABLE = re.compile("[" + "".join(chr(code) for code in _CONFUSABLES) + "]")
# full-width ASCII and the ideographic space, one character for one
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalized(text: str) -> tuple[str, list[int] | None]:
    """The text as detectors read it: each character in NFKC (full-width `０３－１２` and `＠` become
    ASCII, decomposed accents compose), invisible format characters dropped, an at sign or a dot
    written as an HTML entity or percent- or quoted-printable-encoded decoded (`&#64;`, `%40`,
    `=40`, `&#x2E;`) and a doubled at sign made one. Returns the text and, when its offsets differ,
    the index in the original of each of its characters (None: same offsets)."""
    view, where = _folded(text)
    if _ENCODED.search(view) is None:
        return view, where
    return _decoded(view, where)


# an at sign or a dot as an HTML entity (`&#64;`, `&#x40;`, `&commat;`, `&#46;`, `&period;`),
# percent-encoded or quoted-printable (`%40`, `=40`: before a name character, as in an address),
# and a run of at signs ("peter@@bigcorp.de"): what is left of an address copied out of HTML or a
# URL, or mistyped. Read as the character it stands for, so the e-mail patterns see the address.
# Also an entity without its ';' (`&#64`), encoded twice (`&amp;#64;`, `%2540`), a backslash escape
# (`\u0040`, `\x40`), a percent- or quoted-printable-encoded dot inside a word (`%2E`, `=2E`) and
# an ideographic full stop between Latin letters or digits (`acme。com`; `｡` is one in NFKC).
# (it starts with a character class, which sre scans for fast, and each form is checked behind it)
_ENCODED = re.compile(
    r"[&%=@\\。](?:(?<=&)(?:amp;)?(?:#(?:0*(?:64|46)(?![0-9])|x0*(?:40|2e)(?![0-9a-f]));?|commat;|period;)"
    r"|(?<=[%=])(?:25)?40(?=[\w.+-])|(?<=[\w-][%=])(?:25)?2e(?=[a-z0-9])|(?<=@)@+"
    r"|(?<=\\)(?:u0*(?:40|2e)|x(?:40|2e))(?=[\w.+-])|(?<=[a-z0-9-]。)(?=[a-z0-9]))",
    re.IGNORECASE,
)


def _decoded(view: str, where: list[int] | None) -> tuple[str, list[int]]:
    """`view` with each `_ENCODED` as its one character, and where each character came from."""
    parts: list[str] = []
    index: list[int] = []
    last = 0
    for m in _ENCODED.finditer(view):
        start = m.start()
        code = m.group(0).lower()
        at = code[0] == "@" or "64" in code or "40" in code or "commat" in code
        parts += (view[last:start], "@" if at else ".")
        index += range(last, start + 1)  # the character stands where its encoding starts
        last = m.end()
    parts.append(view[last:])
    index += range(last, len(view))
    return "".join(parts), index if where is None else [where[i] for i in index]


def _folded(text: str) -> tuple[str, list[int] | None]:
    """`normalized` before the encoded characters are decoded."""
    if text.isascii():
        return text, None
    if not _INVISIBLE.search(text):
        one_for_one = text.translate(_FULL_WIDTH)  # the common case in Japanese and Chinese mail
        if unicodedata.is_normalized("NFKC", one_for_one):
            return one_for_one, None
    out: list[str] = []
    where: list[int] = []
    for i, char in enumerate(text):
        if _INVISIBLE.match(char):
            continue
        if unicodedata.combining(char) and out:  # a decomposed accent joins the letter before it
            joined = unicodedata.normalize("NFKC", out[-1] + char)
            if len(joined) == 1:
                out[-1] = joined
                continue
        folded = unicodedata.normalize("NFKC", char)
        out += folded
        where += [i] * len(folded)
    return "".join(out), where


def skeleton(text: str) -> str:
    """Lower case with look-alike letters folded; one character for one (offsets are kept)."""
    lowered = _lower(text)
    if lowered.isascii() or not _CONFUSABLE.search(lowered):  # nothing to fold (most texts)
        return lowered
    return lowered.translate(_CONFUSABLES)


class Detector(Protocol):
    name: str

    def find(self, text: str, context: RedactionContext) -> Iterable[Span]: ...


class Segmented:
    """A pattern scanned only where it can match, with exactly `pattern.finditer`'s matches.

    `allowed` (a character-class body) holds every character a match can consume, and `anchor`
    (a pattern over allowed characters) something every match holds, so each match lies inside
    one maximal run of allowed characters that holds an anchor; only those runs are scanned (in a
    message: the addresses around an at sign, the few tokens with an inner dot for links). Each
    scan runs on the whole string from the run's start, so look-behinds, `^` and `\b` see the
    real text, and ends `lookahead` characters past the run, farther than any look-ahead reads.
    tests/unit/test_redaction_scan.py checks these facts on the parsed patterns and compares the
    results with a plain `finditer`, so a pattern edit that breaks one fails there."""

    def __init__(
        self,
        pattern: re.Pattern[str],
        allowed: str,
        anchor: str,
        lookahead: int = 8,
        scan: Callable[[str, int, int], Iterator[re.Match[str]]] | None = None,
    ) -> None:
        self.pattern, self.allowed, self.lookahead = pattern, allowed, lookahead
        self.scan = scan or pattern.finditer  # how a run is scanned: `pattern.finditer`, or its matches found faster
        self.anchor = re.compile(anchor)  # starts with a literal or a class: found by a fast scan
        # a character no match consumes (`allowed` may itself be a negated class body)
        self.barrier = re.compile(f"[{allowed[1:]}]" if allowed.startswith("^") else f"[^{allowed}]")

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        anchor = self.anchor.search(text)
        if anchor is None:
            return
        size, reverse = len(text), text[::-1]
        while anchor is not None:  # one anchor a run: the next is searched for past the run
            position = anchor.start()
            after = self.barrier.search(text, position)
            before = self.barrier.search(reverse, size - position)  # the nearest barrier before it
            start, covered = (size - before.start() if before else 0), (after.start() if after else size)
            for m in self.scan(text, start, min(size, covered + self.lookahead)):
                if m.start() >= covered:
                    break
                yield m
            anchor = self.anchor.search(text, max(covered, position + 1))


# --- emails ------------------------------------------------------------------------------------

_TLDS = (
    r"com|net|org|io|co|ai|app|dev|tech|biz|info|me|eu|de|uk|fr|es|it|nl|be|ch|at|se|dk|no|fi|pl|pt|ie|"
    r"us|ca|au|nz|in|jp|cn|br|mx|ar|cl|sg|hk|kr|tw|za|ru|tr|il|ae|gr|cz|hu|ro|lu|ly|gl|to|so|xyz|online|cloud|"
    r"vn|th|ph|pk|ng|ke|eg|qa|ua|kz|rs|hr|si|sk|bg|lt|lv|ee|pe|ve|uy|ec|ma|lk|bd|np|pro|"
    # top-level domains that are also words, in lower case only: "the team.Today" is a missing space
    r"(?-i:email|consulting|photography|agency|studio|design|digital|solutions|services|media|marketing|"
    r"software|systems|network|store|shop|site|website|space|life|live|world|global|today|news|blog|page|"
    r"expert|partners|ventures|capital|finance|legal|law|health|travel|events|works|zone|academy|energy|"
    r"group|team|company)"
)
# a second-level label under which any country's code is a domain: somchai-trading.co.th, acme.com.my
_SECOND_LEVEL = r"(?:co|com|org|net|ac|gov|edu)"
_AT_BRACKETED = r"\s*[\(\[\{<]\s*at\s*[\)\]\}>]\s*"
_DOT_WORD = r"(?:\s*[\(\[\{<]\s*dot\s*[\)\]\}>]\s*|\s+dot\s+)"
_DOT = rf"(?:\s*\.\s*|{_DOT_WORD})"
_TIGHT_DOT = rf"(?:\.|{_DOT_WORD})"  # a dot not spaced as a full stop is
# Possessive runs (`++`) where what follows a run can never start with a character of the run
# (a label is followed by a dot, a local part by `@`, a space or a bracket): the same matches,
# without retrying every shorter run at every word.
_LABEL = r"[\w-]++"
# "calendly.com/jdoe" after "at" is a link, not an address
_END = rf"(?:{_SECOND_LEVEL}{_TIGHT_DOT}[a-z]{{2}}|{_TLDS})\b(?![/@\w-])"
# any top-level domain, after an "[at]" in brackets or an "@" and a written dot ("[dot] vn",
# "(dot) photography"; "jane@acme.vn" is the plain pattern's)
_ANY_END = r"[a-z]{2,24}\b(?![/@\w-])"
_DOMAIN = rf"{_LABEL}(?:{_DOT}{_LABEL})*"  # the labels before the last dot
# a local part: a name, or up to four words joined by written or spaced dots ("erik dot lindqvist",
# "peter . schmidt"); read possessively, as no at sign or "at" word starts with a dot
_LOCAL = rf"[\w.+-]++(?:(?:\s+\.\s+|{_DOT_WORD})[\w.+-]++){{0,3}}+"


class EmailDetector:
    """Addresses, `mailto:` links and the usual obfuscations (`jane at acme dot com`,
    `jane(at)acme(dot)com`, `jane [at] acme [dot] co [dot] uk`, `j.doe at acme.com`, a name of
    dotted words: `erik dot lindqvist at …`, `peter . schmidt @ …`). After a bracketed "[at]", or
    an "@" and a written "[dot]", any top-level domain (`[dot] vn`, `(dot) photography`). A bare
    " at " before a plain domain is an address only when the name looks like one (a dot, `_`, `+`
    or a digit in it): "find us at acme.com" is a preposition and a link. Encoded at signs
    (`&#64;`, `%40`) are decoded by `normalized`."""

    name = "email"
    _plain = re.compile(r"(?:mailto:)?[\w.+%-]++@[\w-]++(?:\.[\w-]++)+")
    _local = re.compile(r"[\w.+%-]++")  # a run of name characters

    @staticmethod
    def _plains(text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
        """`_plain.finditer(text, pos, endpos)`, tried at the first of a run of name characters (and
        at a "mailto:" ending it): from any other letter of the run the name reads to the same end.
        Trying each took quadratic time on a long name ("aaaa…@")."""
        plain, local = EmailDetector._plain, EmailDetector._local
        while (run := local.search(text, pos, endpos)) is not None:
            start, end = run.span()
            m = plain.match(text, start, endpos)
            if m is None and end - 6 > start and text.startswith("mailto:", end - 6, endpos):
                m = plain.match(text, end - 6, endpos)
            if m is None:
                pos = end
                continue
            yield m
            pos = m.end()

    plain = Segmented(_plain, allowed=r"\w.+%@:-", anchor="@", scan=_plains)
    # (the second form's name holds a dot, `_`, `+` or a digit: looked for ahead, in one read, where
    # `[\w+-]*[._+\d][\w.+-]*` tried every split of a long name)
    obfuscated = re.compile(
        rf"(?<![\w.]){_LOCAL}(?:{_AT_BRACKETED}{_DOMAIN}(?:{_DOT}{_END}|{_TIGHT_DOT}{_ANY_END})"
        rf"|\s*@\s*{_DOMAIN}(?:{_DOT}{_END}|{_DOT_WORD}{_ANY_END}))"
        rf"|(?<![\w.])(?=[\w.+-]*?[._+\d])[\w.+-]++\s+at\s+{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}{_END}"
        rf"|(?<![\w.]){_LOCAL}\s+at\s+{_LABEL}(?:{_DOT_WORD}{_LABEL})*{_DOT_WORD}{_END}",
        re.IGNORECASE,
    )
    _name_start = re.compile(r"(?<![\w.])[\w.+-]")  # where the pattern may start a match
    _run_start = re.compile(r"(?<![\w.+-])[\w.+-]")  # where a run of name characters starts

    # every obfuscated form has an "@" or an "at" word followed (past a closing bracket) by a
    # domain ending in a known top-level domain, or in any after a dot not spaced as a full stop
    # (after an "@": a written dot): a text without one skips the slow pattern, which
    # tries each of its alternatives at every word
    # (possessive spaces: a long run of them after an "at" is read once, not split every way; it
    # starts with a character class, which sre scans for fast: an "@", or an "a" at a word's start;
    # an "at" is followed by a space or a closing bracket in every form, so "at-at-at-…" does not
    # read the rest of the word from each "at")
    obfuscated_cue = re.compile(
        rf"[@aA](?:(?<=@)(?i:\s*+{_DOMAIN}(?:{_DOT}{_END}|{_DOT_WORD}{_ANY_END}))"
        rf"|(?<!\w[aA])[tT](?=[\s\)\]\}}>])(?i:\s*+[\)\]\}}>]?\s*+{_DOMAIN}(?:{_DOT}{_END}|{_TIGHT_DOT}{_ANY_END})))"
    )

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        for m in self.plain.finditer(text):
            yield Span(m.start(), m.end(), "{{email}}", self.name)
        if self.obfuscated_cue.search(text):
            for m in self._obfuscated(text):
                yield Span(m.start(), m.end(), "{{email}}", self.name)

    def _obfuscated(self, text: str) -> Iterator[re.Match[str]]:
        """`obfuscated.finditer(text)`, tried once a run of name characters (letters, digits, `.+-_`): every form
        reads the run to its end from wherever it starts, so a later start in the run (after a `+`
        or a `-`) finds nothing the run's first start does not find first. Trying each took cubic
        time on "+-+-…" (tests/unit/test_redaction_scan.py compares the two)."""
        pos = 0
        while (first := self._name_start.search(text, pos)) is not None:
            start = first.start()  # the first start in its run at or after `pos` (a match may end mid-run)
            while (m := self.obfuscated.match(text, start)) is None:
                run = self._run_start.search(text, start + 1)
                if run is None:
                    return
                start = run.start()
            yield m
            pos = m.end()


# --- links -------------------------------------------------------------------------------------

_BOOKING = re.compile(
    r"calendly\.com|(?:^|\.)cal\.com|calendar\.app\.google|calendar\.google\.com|meetings(?:-\w+)?\.hubspot\.com|"
    r"savvycal\.com|zcal\.co|tidycal\.com|chilipiper\.com|youcanbook\.me|acuityscheduling\.com|doodle\.com|"
    r"koalendar\.com|outlook\.office(?:365)?\.com/(?:owa/calendar|bookwithme|book)|bookings\.|appointlet\.com|"
    r"vyte\.in|oncehub\.com|x\.ai/|reclaim\.ai/|motion\.so/|zoom\.us/(?:j|my)/|meet\.google\.com|teams\.microsoft",
    re.IGNORECASE,
)
_PROFILE = re.compile(
    r"linkedin\.com/(?:in|pub|profile)/|lnkd\.in/|(?:^|[/.])(?:x|twitter)\.com/|github\.com/|facebook\.com/|"
    r"instagram\.com/|xing\.com/profile|t\.me/|wa\.me/|tiktok\.com/@|threads\.net/@|about\.me/|angel\.co/u/",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}'\"»”’"
# software written like a bare domain: a product, not a link to anyone
_NAMED_LIKE_DOMAINS = frozenset({"asp.net", "ado.net", "vb.net", "socket.io"})


class LinkDetector:
    """Every URL, with or without a scheme: `https://…`, `www.…`, and bare `domain.tld/path`
    (`calendly.com/sam-lee/30min`, `linkedin.com/in/jdoe`, `calendar.app.google/<token>`), a bare
    domain also before a full stop (`peterschmidt.dev.`) and under a country's second-level
    domain (`somchai-trading.co.th`).
    Booking links become `{{booking_link}}`, profiles `{{profile_link}}`, the rest `{{link}}`:
    a link's host names a company and its path often a person or a tracking token."""

    name = "link"
    pattern = re.compile(
        r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+"
        r"|(?<![\w@./-])(?:[\w-]++\.)+[a-z]{2,24}(?::\d{2,5})?/[^\s<>\"'`]*"
        rf"|(?<![\w@./-])(?:[\w-]++\.)+(?:{_SECOND_LEVEL}\.[a-z]{{2}}|{_TLDS})\b(?![\w@-]|\.[\w-])",
        re.IGNORECASE,
    )
    # a link holds no whitespace or quote, and a kept one a dot with more of the link after it
    scan = Segmented(pattern, allowed=r"^\s<>\"'`", anchor=r"\.(?=[^\s<>\"'`])")

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        for m in self.scan.finditer(text):
            url = m.group(0).rstrip(_TRAILING)
            if not url or "." not in url or url.lower() in _NAMED_LIKE_DOMAINS:
                continue
            placeholder = (
                "{{booking_link}}"
                if _BOOKING.search(url)
                else "{{profile_link}}"
                if _PROFILE.search(url)
                else "{{link}}"
            )
            yield Span(m.start(), m.start() + len(url), placeholder, self.name)


# --- payment cards, bank accounts and secrets ----------------------------------------------------

# a run of digits with separators between them, 13 or more digits long: every card number holds
# one, and ordinary text rarely does (a search for it reads at most ~60 characters from each digit,
# then the whole run is read once from its start). A separator is one or two spaces, dots, dashes,
# en or em dashes (`4111.1111.1111.1111`, `4111 – 1111`, a double space), or a line break (a group
# on the next line)
_CARD_SEPARATOR = r"(?:[ .\-\u2013\u2014]{1,2}| ?\r?\n ?)"
_CARD_CUE = re.compile(rf"[0-9](?:{_CARD_SEPARATOR}?[0-9]){{12}}")
_CARD_RUN = re.compile(rf"[0-9](?:{_CARD_SEPARATOR}?[0-9])*+")
_CARD_GROUP = re.compile(r"[0-9]+")
_NOT_BEFORE_CARD = frozenset("+.,/-_")  # a phone number, a decimal, a path or an id goes on there


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards_in(groups: list[str]) -> Iterator[tuple[int, int]]:
    """The card numbers in a run's digit groups, as (first group, last group + 1), leftmost and
    longest first: 13-19 digits starting with 2-6 (Mastercard, Amex, Visa, Discover, UnionPay …;
    0, 7, 8 and 9 start no payment card), one group or groups as cards are printed (all but the last
    of 4-6 digits: 4-4-4-4, 4-6-5, 4-4-4-4-3), whose Luhn check digit holds."""
    first = 0
    while first < len(groups):
        found, size = None, 0
        if "2" <= groups[first][0] <= "6":
            for last in range(first, len(groups)):
                size += len(groups[last])
                if size > 19 or (last > first and not (4 <= len(groups[last - 1]) <= 6 and len(groups[last]) <= 6)):
                    break
                if size >= 13 and _luhn("".join(groups[first : last + 1])):
                    found = last + 1
        if found is None:
            first += 1
            continue
        yield first, found
        first = found


class CardDetector:
    """Payment card numbers: 13-19 digits, unbroken or in groups split by `_CARD_SEPARATOR`
    (`4111 1111 1111 1111`, `4111-1111-1111-1111`, `4111.1111.1111.1111`, `3782 822463 10005`, a
    group on the next line), whose Luhn check digit holds (`_cards_in`); not after a `+` (a phone
    number), a decimal point or a word character (`_card_may_start`), nor before a word character.
    A run with more digits around the card (an expiry date before or after it) gives the card's
    own groups. A long invoice number that fails Luhn is left alone."""

    name = "card"
    needs_digit = True  # finds nothing in a text without a digit (`Redactor` skips those texts)

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    @staticmethod
    def wanted(text: str) -> bool:
        """Whether a text holds a run of 13 digits: most hold none, and are skipped whole."""
        return _CARD_CUE.search(text) is not None

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        cue = _CARD_CUE.search(text)
        while cue is not None:  # the leftmost cue of a run is where the run starts
            run = _CARD_RUN.match(text, cue.start())
            assert run is not None
            start, end = run.span()
            after = text[end] if end < len(text) else " "
            if not (after.isalnum() or after == "_"):
                groups = list(_CARD_GROUP.finditer(text, start, end))
                run_may_start = _card_may_start(text, start)
                # a card inside the run starts where the run may, or after a space or a line break
                # when the run follows punctuation: "exp 09/27 4111 1111 1111 1111" (the run starts
                # at 27, after a slash), not "DE89 3704 …" (a run inside a word is a code)
                after_punctuation = not (start and text[start - 1].isalnum())
                for first, last in _cards_in([g.group(0) for g in groups]):
                    at = groups[first].start()
                    if run_may_start or (first and after_punctuation and text[at - 1].isspace()):
                        yield Span(groups[first].start(), groups[last - 1].end(), "{{card_number}}", self.name)
            cue = _CARD_CUE.search(text, end)


def _card_may_start(text: str, start: int) -> bool:
    """Whether a card may start at `start`, by the character before it: not a letter or digit, nor
    what continues a phone number, a decimal, a path or an id (`_NOT_BEFORE_CARD`), except a full
    stop after a word ("No.4111111111111111")."""
    before = text[start - 1] if start else " "
    if before == "." and start >= 2 and text[start - 2].isalpha():
        return True
    return not (before.isalnum() or before in _NOT_BEFORE_CARD)


# the length of an IBAN in each country that issues them (the SWIFT IBAN registry)
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
# a country code at a word's start, two check digits, and 11-30 letters or digits, in either case,
# with one or two spaces or dashes, or a line break, allowed between them (`DE89 3704 0044 0532
# 0130 00`, `gb29nwbk60161331926819`, `DE89-3704-…`); the match starts at the check digits
# (digits are rarer than letters, and sre scans for them fast) and the code is checked behind it
_IBAN_SEPARATOR = r"(?:[ \-]{1,2}| ?\r?\n ?)"
_IBAN = re.compile(rf"[0-9](?<=(?<![A-Za-z0-9])[A-Za-z]{{2}}[0-9])[0-9](?:{_IBAN_SEPARATOR}?[A-Za-z0-9]){{11,30}}+")
_IBAN_SEPARATORS = frozenset(" -\r\n")


class IbanDetector:
    """International bank account numbers: a country code, two check digits and the national
    account number, in either case, unbroken or in groups (`_IBAN_SEPARATOR`), as long as that
    country's IBANs are, ending at a word's end, and passing the ISO 13616 mod-97 check."""

    name = "iban"
    needs_digit = True  # finds nothing in a text without a digit (`Redactor` skips those texts)

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    @staticmethod
    def wanted(text: str) -> bool:
        """Whether a text holds what reads as an IBAN: most hold none, and are skipped whole."""
        return _IBAN.search(text) is not None

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        m = _IBAN.search(text)
        while m is not None:
            start = m.start() - 2  # the country code before the check digits
            end = self._end(text, start, m.end())
            if end is not None:
                yield Span(start, end, "{{iban}}", self.name)
            m = _IBAN.search(text, end or m.start() + 1)

    @staticmethod
    def _end(text: str, start: int, most: int) -> int | None:
        """Where the IBAN read from `start` (up to `most`) ends, or None when it is none."""
        length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
        if length is None:
            return None
        seen, end = 0, start
        while seen < length and end < most:  # the country's length of characters, separators aside
            seen += text[end] not in _IBAN_SEPARATORS
            end += 1
        if seen < length or (end < len(text) and (text[end].isalnum() or text[end] == "_")):
            return None
        compact = "".join(c for c in text[start:end] if c not in _IBAN_SEPARATORS).upper()
        number = int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4]))
        return end if number % 97 == 1 else None


# API keys and tokens by the prefixes their issuers give them: OpenAI and Anthropic (`sk-…`,
# `sk-proj-…`), GitHub (`ghp_…`, `github_pat_…`), GitLab (`glpat-…`), Slack (`xoxb-…`), Stripe
# (`sk_live_…`, `rk_test_…`) and Google (`AIza…`); read from the start of a token or from inside
# one after a symbol (`_sk-proj-…_`, `**ghp_…**`, `~sk-…`, `#ghp_…`: markdown and symbols are
# token characters), never after a letter or a digit ("task-force-…" holds no key)
_SECRET_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-(?:proj-|svcacct-|admin-|ant-)?(?=[A-Za-z_-]*+[0-9])[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|[spr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_-]{35})"
)
# the rest of a key wrapped onto the next line: that line is one token with a digit in it
_WRAPPED_TAIL = re.compile(r"[ \t]*+\r?\n[ \t]*+(?=[A-Za-z0-9_-]*?[0-9])([A-Za-z0-9_-]{4,})[ \t]*+(?=\r?\n|\Z)")
# AWS access key ids (long-term `AKIA…`, temporary `ASIA…`) and JSON Web Tokens, found wherever
# they are (each starts with a literal, which sre searches for fast; the word start is checked behind it)
_AWS_KEY = re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
# (a token wrapped across lines: whitespace after a dot, before a signature of 16+ characters)
_JWT = re.compile(
    r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}\.\s*+eyJ[A-Za-z0-9_-]{8,}\.(?:\s*+(?=[A-Za-z0-9_-]{16}))?[A-Za-z0-9_-]*"
)
# the characters of a token: base64 and base64url, and the symbols passwords hold
_KEY_CLASS = "A-Za-z0-9_+/!#$%&*?@^~-"
_KEY_CHAR = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/!#$%&*?@^~-")
# a run of 16 or more token characters holding a digit (every key, token and password below does,
# but for one in many thousands): led by a digit, which sre scans for fast, read to the run's end
# once, its length checked behind it; a run shorter than 16 is read at most 15 characters a digit
_SECRET_CUE = re.compile(rf"[0-9][{_KEY_CLASS}]*+(?<=[{_KEY_CLASS}]{{16}})")
# what names a secret just before it: "API key: ", "token=", "AWS_SECRET_ACCESS_KEY = ", "password is ",
# camelCase ("accessToken=", "clientSecret:": a capital after a small letter), and with a short
# bracketed note before its colon ("API key (prod): ", "password [staging] = ")
_SECRET_LABEL = re.compile(
    r"(?:(?<![A-Za-z])(?:key|token|secret|password|passwd|pwd|passphrase|passcode|bearer|credentials?|apikey)"
    r"|(?-i:(?<=[a-z])(?:Key|Token|Secret|Password|Passwd|Pwd|Passphrase|Passcode|Credential)))s?"
    r"(?![A-Za-z])[\"']?\s*(?:[:=]|=>|\bis\b|[(\[][^()\[\]\n]{1,24}[)\]]\s*(?:[:=]|=>))?\s*[\"'`]?\s*\Z",
    re.IGNORECASE,
)
_CHARACTER_CLASS_RUN = re.compile(r"[A-Z]+|[a-z]+|[0-9]+|[^A-Za-z0-9]+")
_SLUG_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|[A-Za-z0-9]{1,3}")  # a word, a number, or a short code ("Q3")
# PEM and PGP (`-----BEGIN PGP PRIVATE KEY BLOCK-----`) private key blocks
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL
)


def _random_looking(token: str) -> bool:
    """A long token that is not words: 16+ characters, a letter and a digit, changing between
    capitals, small letters, digits and punctuation at least every fourth character on average
    (`differentiator2024` does not), not a slug of words, numbers and short codes
    (`2024-q3-budget-review`), and 3.5+ bits of entropy a character."""
    if len(token) < 16 or not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
        return False
    if len(_CHARACTER_CLASS_RUN.findall(token)) * 4 < len(token):
        return False
    pieces = re.split(r"[-_./+]", token)
    if len(pieces) >= 2 and all(_SLUG_PIECE.fullmatch(p) for p in pieces if p):
        return False
    counts = Counter(token)
    size = len(token)
    return -sum(n / size * math.log2(n / size) for n in counts.values()) >= 3.5


class SecretDetector:
    """API keys, access tokens, passwords and private keys: the issuers' prefixes above, AWS
    access key ids (`AKIA…`), JSON Web Tokens and PEM private key blocks wherever they appear, and
    after a word that names a secret ("API key:", "token=", "password is", "Bearer") a long
    random-looking token (`_random_looking`). Only the secret is replaced; the word naming it stays."""

    name = "secret"

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    @staticmethod
    def wanted(text: str) -> bool:
        """Whether a text may hold a secret: a long run holding a digit, or what starts an AWS access
        key id (`AKIA`, `ASIA`: one without a digit), a JSON Web Token or a private key. Most texts
        hold none, and are skipped whole."""
        return (
            _SECRET_CUE.search(text) is not None
            or "AKIA" in text
            or "ASIA" in text
            or "eyJ" in text
            or "PRIVATE KEY" in text
        )

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        for literal, pattern in (("PRIVATE KEY", _PRIVATE_KEY), ("eyJ", _JWT), ("A", _AWS_KEY)):
            if literal in text:
                for m in pattern.finditer(text):
                    yield Span(m.start(), m.end(), "{{secret}}", self.name)
        pos = 0
        while (cue := _SECRET_CUE.search(text, pos)) is not None:
            start, end = cue.start(), cue.end()
            while start and text[start - 1] in _KEY_CHAR:  # back to the run's start
                start -= 1
            pos = end
            known = _SECRET_PREFIXED.search(text, start, end)
            if known is not None:
                key_start, key_end = known.span()
                if key_start > start and text[key_start - 1] == "_":  # `_sk-…_`: markdown emphasis
                    key_end -= len(text[key_start:key_end]) - len(text[key_start:key_end].rstrip("_"))
                if key_end == end and (tail := _WRAPPED_TAIL.match(text, end)) is not None:
                    key_end = pos = tail.end(1)
                yield Span(key_start, key_end, "{{secret}}", self.name)
                continue
            while end < len(text) and end - pos < 2 and text[end] == "=":  # base64 padding
                end += 1
            token = text[start:end].rstrip("!?")
            if _SECRET_LABEL.search(text, max(0, start - 40), start) and _random_looking(token):
                end = start + len(token)
                if end == pos and (tail := _WRAPPED_TAIL.match(text, end)) is not None:
                    end = pos = tail.end(1)
                yield Span(start, end, "{{secret}}", self.name)


# --- phone numbers -----------------------------------------------------------------------------

# cheap pre-filter: a run that could hold 7+ digits; texts without one skip the matchers. Written
# digits first: a pattern that starts with a class is searched for by a fast loop, while one with
# an optional `+` and `(` in front is tried at every character (3x slower on a message)
_DIGITS_FIRST = re.compile(r"\d[\d\s().\-/]{5,}\d")


def digit_runs(text: str) -> Iterator[tuple[int, int]]:
    """The runs, each with the `(` and then the `+` just before it: where the pattern with its
    optional prefix matches (`FIRST_DIGIT_RUN` in tests/unit/test_redaction_scan.py compares them)."""
    for m in _DIGITS_FIRST.finditer(text):
        start = m.start()
        if start and text[start - 1] == "(":
            start -= 1
        if start and text[start - 1] == "+":
            start -= 1
        yield start, m.end()


# the leniency pass for numbers with no region: 3+ digit groups, a bracketed area code, or a long run
_LOOSE_PHONE = re.compile(
    r"(?<![\w+/.,-])(?:\+\s?)?(?:\(\d{1,5}\)\s?)?\d{1,5}(?:[\s./-]{1,2}\(?\d{1,8}\)?){1,6}(?![\w/])"
    r"|(?<![\w+/.,-])\d{9,15}(?![\w/])"
)
_GROUP_SEPARATORS = re.compile(r"[\s./()-]+")
# the dashes typed or autocorrected between digit groups (hyphen, non-breaking hyphen, figure dash,
# en and em dashes, horizontal bar, minus sign, small hyphen-minus, the katakana long-vowel mark
# Japanese mail types for one): `phonenumbers` reads them all, and the phone detector reads them as
# '-' so that its runs and layouts above see them too (only it: an em dash after a link is no hyphen)
# Also the hyphen bullet, the Hebrew maqaf and the Armenian hyphen; middle dots and bullets
# (`415·555·0132`, `415 • 555 • 0132`, the hyphenation point, the katakana middle dot) read as spaces.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\u30fc\u2043\u05be\u058a"
_DOTS = "\u00b7\u2022\u2027\u2219\u30fb"
_SEPARATOR_LIKE = re.compile(f"[{_DASHES}{_DOTS}]")
_AS_SEPARATORS = str.maketrans(dict.fromkeys(_DASHES, "-") | dict.fromkeys(_DOTS, " "))
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:[.,]\d{3})+")


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if digits < 8 or digits > 15:
        return False
    stripped = candidate.strip()
    if _DATE.fullmatch(stripped) or _THOUSANDS.fullmatch(stripped):
        return False
    groups = _GROUP_SEPARATORS.split(stripped.lstrip("+"))
    groups = [g for g in groups if g]
    # two plain groups are a range or a quantity ("1001-5000") unless they carry a '+', brackets
    # or a trunk prefix ("030 901820", "0412 345678")
    return len(groups) != 2 or stripped.startswith(("+", "(", "0"))


# thousands grouped by spaces (10 000 000, 12 500 000 €): an amount where a currency is next to it
# or its last group is 000; a phone number otherwise ("612 345 678")
_SPACED_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:[ \u00a0\u202f]\d{3})+")
_CURRENCIES = r"[$€£¥₹₽]|USD|EUR|GBP|CHF|JPY|INR|RUB|PLN|SEK|NOK|DKK|CAD|AUD"
_CURRENCY_BEFORE = re.compile(rf"(?:{_CURRENCIES}|Rs\.?)[ \u00a0]?$")
_CURRENCY_AFTER = re.compile(rf"[ \u00a0]?(?:[$€£¥₹₽]|(?:{_CURRENCIES}|euros?|dollars?|zł|kr|руб)\b)")


def _is_amount(text: str, start: int, end: int) -> bool:
    if not _SPACED_THOUSANDS.fullmatch(text, start, end):
        return False
    return (
        text.endswith("000", start, end)
        or _CURRENCY_BEFORE.search(text, max(0, start - 4), start) is not None
        or _CURRENCY_AFTER.match(text, end) is not None
    )


class PhoneDetector:
    """`phonenumbers`' matcher with the lead's and the sender's regions (valid numbers), then a
    leniency pass for numbers no region vouches for: any `+` number that is possible, and local
    numbers in a phone-like layout (3+ groups, a bracketed area code, or 9-15 digits in a row)
    that are not dates, ranges or amounts."""

    name = "phone"

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return context.regions  # the text and the regions it is read for

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        # "415–555–0132" as Word autocorrects it, read as "415-555-0132" (one character for one:
        # the spans found are the text's)
        if not text.isascii() and _SEPARATOR_LIKE.search(text):
            text = text.translate(_AS_SEPARATORS)
        # the matchers only see the digit runs (plus one character each side, never a neighbouring
        # field of a joined text), not the whole text
        for run_start, run_end in digit_runs(text):
            start, end = max(0, run_start - 1), run_end + 1
            if start and text[start - 1 : start + 1] == SEPARATOR[-2:]:
                start += 1
            if text[end - 1 : end + 1] == SEPARATOR[:2]:
                end -= 1
            for left, right in _phone_spans(text[start:end], context.regions):
                if not _is_amount(text, start + left, start + right):
                    yield Span(start + left, start + right, "{{phone}}", self.name)


@lru_cache(maxsize=16_384)
def _phone_spans(window: str, regions: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Phone spans in one window: the slow matchers run once per distinct window (a sender's
    signature number recurs in every message of that sender)."""
    found: list[tuple[int, int]] = []
    for region in regions:
        found += [(m.start, m.end) for m in PhoneNumberMatcher(window, region, leniency=Leniency.VALID)]
    found += [(m.start, m.end) for m in PhoneNumberMatcher(window, None, leniency=Leniency.POSSIBLE)]
    found += [(m.start(), m.end()) for m in _LOOSE_PHONE.finditer(window) if _looks_like_phone(m.group(0))]
    return tuple(found)


def region_code(value: object) -> str | None:
    """An ISO 3166 alpha-2 region phonenumbers knows, from a code or a common country name."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    code = raw.upper()
    if code in _COUNTRY_ALIASES:
        code = _COUNTRY_ALIASES[code]
    elif len(code) != 2:
        code = _COUNTRY_NAMES.get(raw.casefold(), "")
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


_COUNTRY_ALIASES = {"UK": "GB", "USA": "US", "UAE": "AE"}
_COUNTRY_NAMES = {
    "united states": "US",
    "united states of america": "US",
    "united kingdom": "GB",
    "great britain": "GB",
    "england": "GB",
    "germany": "DE",
    "deutschland": "DE",
    "france": "FR",
    "spain": "ES",
    "españa": "ES",
    "italy": "IT",
    "italia": "IT",
    "netherlands": "NL",
    "the netherlands": "NL",
    "belgium": "BE",
    "switzerland": "CH",
    "schweiz": "CH",
    "austria": "AT",
    "österreich": "AT",
    "ireland": "IE",
    "portugal": "PT",
    "sweden": "SE",
    "norway": "NO",
    "denmark": "DK",
    "finland": "FI",
    "poland": "PL",
    "india": "IN",
    "japan": "JP",
    "china": "CN",
    "brazil": "BR",
    "brasil": "BR",
    "mexico": "MX",
    "méxico": "MX",
    "canada": "CA",
    "australia": "AU",
    "new zealand": "NZ",
    "singapore": "SG",
    "south africa": "ZA",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "israel": "IL",
    "united arab emirates": "AE",
}


# --- street addresses and postcodes ------------------------------------------------------------

_CAP = r"[A-ZÄÖÜÉÈÀÇÑ][\w'’.-]*"
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
    "NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
# the street words of the German, Dutch and Nordic layout ("str." aside)
_STREET_WORDS = [
    "straße",
    "strasse",
    "weg",
    "allee",
    "platz",
    "gasse",
    "ring",
    "damm",
    "ufer",
    "chaussee",
    "markt",
    "straat",
    "laan",
    "gracht",
    "plein",
    "kade",
    "dijk",
    "gatan",
    "vägen",
    "gade",
    "vej",
    "veien",
    "gata",
    "tie",
    "katu",
]
# "Drive" that ends a product's name: "your 10 Google Drive folders" is no address
_NOT_A_PRODUCT = "".join(
    f"(?<!{word} )" for word in ("Google", "Hard", "Flash", "Test", "Disk", "Shared", "Team", "USB")
)
# the first word of a German street of two words (Berliner Straße, Frankfurter Allee, Neue Straße)
_STREET_ADJECTIVE = r"(?<![\w-])(?!The\s)[A-ZÄÖÜ][\w-]*+(?:(?<=er)|(?<=e)|(?<=es)|(?<=en))"
_PL_CAP = r"[A-ZĄĆĘŁŃÓŚŹŻ][\w-]*+\.?"
_TR_CAP = r"[A-ZÇĞİÖŞÜ][\w-]*+"
# A run of whitespace before a street's name, which may lend the name its first spaces ("Via  12":
# the name is " 1"), as `\s+` (`\s*`) followed by the name and the rest of the layout would read
# it, trying the whole run first, then the run but its last space, then but its last two, then
# (`_LENDING_SPACES`) a name of spaces inside the run, the rest read from the run's end. Lending
# more is never needed: a name starting with the run's last two spaces reaches as far as any
# starting earlier, and a name ending inside the run leaves the rest to be read from the run's end.
# Each way reads the run once, where `\s+` backtracked over every split of a long run between it,
# the name and the whitespace after the name (hours for 200 KB of spaces).
_RUN_LEAVING_2 = r"(?:\s++|(?:\s(?=\s))++|(?:\s(?=\s\s))++)"
_OPTIONAL_RUN_LEAVING_2 = r"(?:\s*+|(?:\s(?=\s))*+|(?:\s(?=\s\s))*+)"
_LENDING_SPACES = r"(?=\s*?  \s)\s*+"  # two spaces of the run (a name) with more of it after them
_SPANISH_REST = r"[\w'’ .-]{2,40}?,?\s*+\d{1,4}\b"  # a name, a number
_SPANISH_NAME = rf"(?:{_RUN_LEAVING_2}{_SPANISH_REST}|\s{_LENDING_SPACES}\d{{1,4}}\b)"  # `\s+{_SPANISH_REST}`
_ADDRESS_PATTERNS = [
    # 1600 Amphitheatre Parkway, 221B Baker Street, 350 Fifth Ave, Suite 4100, 55 West 42nd Street
    re.compile(
        rf"\b\d{{1,5}}[A-Za-z]?,?\s+(?:(?:{_CAP}|\d{{1,3}}(?:st|nd|rd|th))\s+){{0,4}}(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|"
        rf"Blvd\.?|Lane|Ln\.?|{_NOT_A_PRODUCT}Drive|Dr\.?|Court|Ct\.?|Place|Pl\.?|Square|Sq\.?|Parkway|Pkwy\.?|Way|Terrace|"
        r"Highway|Hwy\.?|Circle|Crescent|Close|Row|Mews|Wharf|Broadway|Gardens|Hill|Walk|Loop|Alley|Trail|"
        r"Plaza)\b"
        r"(?:,?\s+(?:Suite|Ste\.?|Apt\.?|Unit|Floor|Fl\.?)\s*[\w-]+)?"
    ),
    # Friedrichstraße 123, Musterstr. 5a, Keizersgracht 123, Drottninggatan 5, Hauptplatz 1
    # (Karl-Marx-Straße 12, Konrad-Adenauer-Ring 3: after a hyphen the street word is capitalised).
    # The word is read once and its street word checked by looking back (not tried at every split
    # of a long word); the street word comes after the capital, so a word that is only a street word
    # ("Ring 5") is not one (no street word ends in another past its first letter)
    re.compile(
        rf"\b(?!(?i:{'|'.join(_STREET_WORDS)}|str\.)(?![\w-]))[A-ZÄÖÜ][\w-]*+"
        rf"(?i:{'|'.join(f'(?<={word})' for word in _STREET_WORDS)}|(?<=str)\.)\s+\d{{1,4}}(?:\s?[a-zA-Z]\b)?"
    ),
    # Unter den Linden 77, Am Sandtorkai 50, An der Alster 1
    re.compile(rf"\b(?:Am|An der|Auf der|Im|In der|Unter den|Zum|Zur)\s+{_CAP}\s+\d{{1,4}}\s?[a-z]?\b"),
    # 12 rue de la Paix, 8 bis avenue Foch, 5 place Vendôme
    re.compile(
        r"\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|quai|allée|impasse|chemin|"
        r"route|cours|square)\s+[\w'’ -]{2,40}?(?=[,\n]|$|\s\d)",
        re.IGNORECASE | re.MULTILINE,
    ),
    # Calle Mayor 5, Via Roma 10, Rua Augusta, 274, Piazza della Signoria 1
    re.compile(
        r"\b(?:Calle|C/|Avenida|Avda\.?|Av\.|Paseo|Plaza|Carrer|Via|Viale|Piazza|Corso|Rua|Travessa|Largo|"
        rf"Praça|Alameda)(?:\s++(?:de|del|della|delle|da|do|dos|das){_SPANISH_NAME}|{_SPANISH_NAME})"
    ),
    # ул. Тверская, д. 7 / проспект Мира, дом 12
    re.compile(
        r"(?:ул\.|улица|пр-т|пр\.|проспект|пер\.|переулок|наб\.|набережная|ш\.|шоссе|бульвар)"
        rf"(?:{_OPTIONAL_RUN_LEAVING_2}[А-ЯЁа-яё0-9 .-]{{2,40}}?,?\s*+|{_LENDING_SPACES})(?:д\.|дом)\s*+\d+[а-я]?",
        re.IGNORECASE,
    ),
    # 東京都千代田区丸の内1-1-1
    re.compile(
        r"(?:東京都|北海道|(?:京都|大阪)府|[\u4e00-\u9fff]{2,3}県)[\u3040-\u30ff\u4e00-\u9fff]{1,20}?"
        r"\d+(?:[-−‐ー]\d+)*(?:丁目|番地?|号)?"
    ),
    # 北京市朝阳区建国路88号
    re.compile(
        r"[\u4e00-\u9fff]{2,4}(?:省|市)[\u4e00-\u9fff]{1,10}(?:区|县|市)[\u4e00-\u9fff\d]{1,20}?"
        r"(?:路|街|道|巷)\d+号"
    ),
    # 강남구 테헤란로 152, 중구 세종대로 110 (district, then road and building number)
    re.compile(r"[가-힣]{1,6}(?:구|군|시)\s[가-힣0-9]{1,12}(?:대로|로|길)\s?\d{1,4}(?:-\d{1,4})?(?:번길\s?\d{1,4})?"),
    re.compile(r"\b(?=[pPaAcC])(?:P\.?\s?O\.?\s?Box|Postfach|Apartado|Casella postale)\s+\d+\b", re.IGNORECASE),
    # Berliner Straße 12, Frankfurter Allee 111, Kärntner Straße 12
    re.compile(
        rf"{_STREET_ADJECTIVE}\s+(?:Straße|Strasse|Str\.|Allee|Weg|Platz|Ring|Damm|Ufer|Chaussee|Markt|Gasse|Steig|"
        r"Graben|Tor|Berg)\s+\d{1,4}(?:\s?[a-zA-Z]\b)?"
    ),
    # 1600 pennsylvania avenue, 12 main st (a lower-case name of one or two words, not "the" or "on")
    re.compile(
        r"\b\d{1,5}\s+(?:(?!(?:the|and|for|from|with|our|your|their|his|her|its|per|new|more|over|all)\b)"
        r"[a-z]{3,}+\s+){1,2}(?:street|st\.|avenue|ave\.?|road|rd\.|boulevard|blvd\.?|lane|parkway|highway)\b"
    ),
    # ul. Marszałkowska 10/12, al. Jana Pawła II 27, pl. Defilad 1
    re.compile(
        rf"\b(?:ul\.|ulica|al\.(?<!\bet\sal\.)|aleja|aleje|pl\.|plac|os\.|osiedle)\s*{_PL_CAP}(?:\s+{_PL_CAP}){{0,3}}"
        r"\s+\d{1,4}[a-zA-Z]?(?:\s?/\s?\d{1,4}[a-zA-Z]?)?"
    ),
    # Atatürk Cad. No:12, İstiklal Caddesi No: 5/3, Gül Sok. No 4
    re.compile(
        rf"(?<![\w-]){_TR_CAP}(?:\s+{_TR_CAP}){{0,2}}\s+(?:Caddesi|Cad\.|Cd\.|Sokak|Sokağı|Sok\.|Sk\.|Bulvarı|Blv\.|"
        r"Mahallesi|Mah\.|Mh\.)\s*+(?:,\s*+)?(?:No|Nr)\s*+(?:[:.]\s*+)?\d{1,4}(?:/\d{1,4})?"
    ),
]
_INDIAN_PLACES = (
    "Mumbai|Delhi|Bengaluru|Bangalore|Chennai|Madras|Kolkata|Calcutta|Hyderabad|Pune|Ahmedabad|Jaipur|Surat|Lucknow|"
    "Kanpur|Nagpur|Indore|Thane|Bhopal|Visakhapatnam|Patna|Vadodara|Ghaziabad|Ludhiana|Agra|Nashik|Faridabad|Rajkot|"
    "Varanasi|Srinagar|Aurangabad|Amritsar|Ranchi|Coimbatore|Madurai|Jodhpur|Raipur|Kochi|Cochin|Chandigarh|Mysuru|"
    "Mysore|Gurugram|Gurgaon|Noida|Thiruvananthapuram|Trivandrum|Bhubaneswar|Dehradun|Guwahati|Mangaluru|Mangalore|"
    "Goa|Panaji|Puducherry|Pondicherry|Navi|Maharashtra|Karnataka|Kerala|Gujarat|Rajasthan|Punjab|Haryana|Telangana|"
    "Odisha|Bihar|Assam|Uttarakhand|Jharkhand|Chhattisgarh|Nadu|Pradesh|Bengal"
)
_MONTHS = [
    *("January", "February", "March", "April", "May", "June", "July", "August", "September", "October"),
    *("November", "December", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"),
]


def _not_after_a_date() -> str:
    """Look-behinds refusing what follows a date and a comma ("March 3, ", "Jan. 21st,", "January
    2024, "): one for each width the date can have (a look-behind's alternatives have one width)."""
    by_width: dict[int, list[str]] = {}
    for month in _MONTHS:
        for dot in ("", ".") if len(month) <= 4 else ("",):
            for digits in (1, 2, 4):
                for ordinal in ("", "st", "nd", "rd", "th") if digits < 4 else ("",):
                    for space in ("", " "):
                        width = len(month) + len(dot) + 1 + digits + len(ordinal) + 1 + len(space)
                        date = f"{month}{re.escape(dot)} " + r"\d" * digits + f"{ordinal},{space}"
                        by_width.setdefault(width, []).append(date)
    return "".join(f"(?<!{'|'.join(dates)})" for _, dates in sorted(by_width.items()))


# a 4-digit number after a comma is not a postcode after a date ("On March 3, 2025 Gartner")
_NOT_AFTER_A_DATE = _not_after_a_date()
_POSTCODE_PATTERNS = [
    re.compile(r"\b(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b"),  # UK
    re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d\b"),  # Canada
    re.compile(rf"\b(?:{_US_STATES}),?\s+\d{{5}}(?:-\d{{4}})?\b"),  # US state + ZIP
    re.compile(r"\b(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)\s+\d{4}\b"),  # Australia
    # 10117 Berlin, 75008 Paris, D-80331 München: at the start of a line or after a comma
    re.compile(rf"(?=\d{{5}}\s)(?:^|(?<=,)|(?<=,\s)|(?<=\b[A-Z]-))\d{{5}}\s+{_CAP}", re.MULTILINE),
    # 8001 Zürich, 1012 AB Amsterdam, A-1010 Wien: after a comma or a country prefix, not after a
    # date ("On March 3, 2025 Gartner", "Since January 2024, 3000 Finance teams")
    re.compile(
        rf"(?=\d{{4}})(?:(?<=,)|(?<=,\s)|(?<=\b[A-Z]-)|(?<=\b[A-Z]{{2}}-)){_NOT_AFTER_A_DATE}"
        rf"\d{{4}}\s?(?:[A-Z]{{2}}\s+)?{_CAP}"
    ),
    re.compile(r"〒\s?\d{3}-?\d{4}"),  # Japan
    # India: Bengaluru 560001, Mumbai - 400001 (a known town or state: "Over 250000" is a number)
    re.compile(rf"\b(?:{_INDIAN_PLACES})\s?[-–]?\s?[1-9]\d{{5}}\b"),
    re.compile(rf"\b\d{{4}}-\d{{3}}\s+{_CAP}"),  # Portugal: 1100-053 Lisboa (not "ref 2024-117")
    re.compile(rf"(?=\d{{3}}\s)(?:(?<=,)|(?<=,\s))\d{{3}}\s\d{{2}}\s+{_CAP}"),  # Sweden: 111 51 Stockholm
    re.compile(r"\b\d{5}-\d{3}\b"),  # Brazil CEP
    # labelled, as a label is written ("zip 2025 pack" is a file; "zip: 94107" and "ZIP 94107" are codes)
    re.compile(
        r"\b(?=[pPzZcCиИ])(?:PIN|P[Ii]n ?[Cc]ode|[Pp]ost ?[Cc]ode|[Pp]ostal [Cc]ode|ZIP|ZIP [Cc]ode|Zip(?: ?[Cc]ode)?|"
        r"zip ?code|zip(?=\s*+:)|PLZ|CP|CEP|Индекс|индекс)\s*+(?::\s*+)?\d[\d -]{2,8}\d\b"
    ),
    re.compile(rf"(?=\d\d-)(?:^|(?<=,)|(?<=,\s))\d\d-\d{{3}}\s+{_PL_CAP}", re.MULTILINE),  # Poland: 00-590 Warszawa
]


_ANY_DIGIT = re.compile(r"\d")
# The Latin layouts by what a match starts with: a digit at a word's start (a house number, a
# postcode) or a letter at a word's start (a street word, a town, a label).
_DIGIT_LED = {
    *_ADDRESS_PATTERNS[0:1],
    _ADDRESS_PATTERNS[3],
    _ADDRESS_PATTERNS[11],
    *_POSTCODE_PATTERNS[4:6],
    *_POSTCODE_PATTERNS[8:11],
    _POSTCODE_PATTERNS[12],
}
_LETTER_LED = {
    *_ADDRESS_PATTERNS[1:3],
    _ADDRESS_PATTERNS[4],
    _ADDRESS_PATTERNS[9],
    _ADDRESS_PATTERNS[10],
    *_ADDRESS_PATTERNS[12:14],
    *_POSTCODE_PATTERNS[0:4],
    _POSTCODE_PATTERNS[7],
    _POSTCODE_PATTERNS[11],
}


# The characters each layout's matches start with (a class body): a digit for the digit-led ones,
# else the first letters of the words it starts with (tests/unit/test_redaction_scan.py checks each
# on the parsed pattern)
_STARTS: dict[re.Pattern[str], str] = {
    **dict.fromkeys(_DIGIT_LED, r"\d"),
    _ADDRESS_PATTERNS[1]: "A-ZÄÖÜ",  # Friedrichstraße 123
    _ADDRESS_PATTERNS[2]: "AIUZ",  # Am, An der, Im, Unter den, Zum
    _ADDRESS_PATTERNS[4]: "ACLPRTV",  # Calle, Avenida, Largo, Piazza, Rua, Travessa, Via
    _ADDRESS_PATTERNS[5]: "бнпушБНПУШ",  # бульвар, наб., пр., ул., шоссе (in either case)
    _ADDRESS_PATTERNS[6]: "\u4e00-\u9fff",  # 東京都, 北海道, 大阪府, …県
    _ADDRESS_PATTERNS[7]: "\u4e00-\u9fff",  # 北京市
    _ADDRESS_PATTERNS[8]: "\uac00-\ud7a3",  # 강남구
    _ADDRESS_PATTERNS[9]: "ACPacp",  # PO Box, Postfach, Apartado, Casella postale (in either case)
    _ADDRESS_PATTERNS[10]: "A-ZÄÖÜ",  # Berliner Straße
    _ADDRESS_PATTERNS[12]: "aopu",  # al., os., pl., ul.
    _ADDRESS_PATTERNS[13]: "A-ZÇĞÖŞÜİ",  # Atatürk Cad.
    _POSTCODE_PATTERNS[0]: "A-PR-UWYZ",  # UK
    _POSTCODE_PATTERNS[1]: "ABCEGHJ-NPRSTVXY",  # Canada
    _POSTCODE_PATTERNS[2]: "A-Z",  # a US state
    _POSTCODE_PATTERNS[3]: "ANQSTVW",  # an Australian state
    _POSTCODE_PATTERNS[6]: "〒",
    _POSTCODE_PATTERNS[7]: "A-Z",  # an Indian town or state
    _POSTCODE_PATTERNS[11]: "CPZpzИи",  # CP, PIN, ZIP, post code, zip, индекс
}


def _alternation(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str]:
    """The layouts as one pattern, each with its own flags, grouped behind what their matches start
    with: at most positions (inside a word, a space) one check fails where each of fifteen
    alternatives would be tried. At a position only one group can match, and within a group the
    layouts keep their order, so the first layout to match is the one the plain alternation of
    them all would take (tests/unit/test_redaction_scan.py compares the two)."""
    digit = [p for p in patterns if p in _DIGIT_LED]
    letter = [p for p in patterns if p in _LETTER_LED]
    parts = [
        *([rf"\b(?=\d)(?:{'|'.join(_scoped(p) for p in digit)})"] if digit else []),
        *([rf"\b(?=[^\W\d_])(?:{'|'.join(_scoped(p) for p in letter)})"] if letter else []),
        *(_scoped(p) for p in patterns if p not in _DIGIT_LED and p not in _LETTER_LED),
    ]
    return re.compile("|".join(parts))


class _Gated:
    """The alternation of `patterns`, searched for only where one of them can start a match.

    A pattern led by a word boundary or a look-around is tried by sre at every position of the
    text; one led by a character class is not: sre scans for a character of the class in a tight
    loop first. So the search is for a character a layout starts with (`_STARTS`) from which, read
    again by a look-behind of one character, the alternation matches (a look-ahead). Its leftmost
    hit is where the alternation's leftmost match starts, and the match there is read with the
    alternation itself: the same matches as `alternation.finditer`, with most of the text (small
    letters, spaces, punctuation) passed over by the tight loop."""

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self.alternation = _alternation(patterns)
        starts = "".join(dict.fromkeys(_STARTS[p] for p in patterns))
        self.gate = re.compile(rf"[{starts}](?<=(?={self.alternation.pattern})[\s\S])")

    def search(self, text: str, pos: int, endpos: int) -> re.Match[str] | None:
        hit = self.gate.search(text, pos, endpos)
        return None if hit is None else self.alternation.match(text, hit.start(), endpos)

    def finditer(self, text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
        while (m := self.search(text, pos, endpos)) is not None:
            yield m
            pos = m.end()  # no layout matches the empty string


_STREET = _ADDRESS_PATTERNS[1]  # Friedrichstraße 123, Karl-Marx-Straße 12
# a capital at a word's start, where it may start (led by the class: sre scans for it in a tight loop)
_CAPITAL = re.compile(r"[A-ZÄÖÜ](?<!\w[A-ZÄÖÜ])")
# what every street ends in: a number after a space
_NUMBER_AFTER_SPACE = re.compile(r"\d(?<=\s\d)")
# where a run of word characters and hyphens ending in a street word (or "str" before a dot) ends
_STREET_WORD_END = re.compile(rf"(?i:{'|'.join(f'(?<={word})' for word in _STREET_WORDS)}|(?<=str)(?=\.))")


def _streets(text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
    """`_STREET.finditer(text, pos, endpos)`, found from the numbers after a space: a street is a run
    of word characters and hyphens ending in a street word (or "str."), spaces and a number, so only
    the runs before such a number are read, each once, at its first capital: a match reads its run
    to the end from wherever it starts, so a later capital in the run (after a hyphen) finds
    nothing the first one does not find first. Trying each took quadratic time on a long hyphenated
    word ("A-A-A-…": a minute for 200 KB); trying the first capital of every run read every word."""
    for number in _NUMBER_AFTER_SPACE.finditer(text, pos, endpos):
        end = number.start() - 1  # the run's end: back over the spaces, and the dot of "str."
        while end > pos and text[end - 1].isspace():
            end -= 1
        if end > pos and text[end - 1] == ".":
            end -= 1
        if end <= pos or _STREET_WORD_END.match(text, end) is None:
            continue
        start = end
        while start > pos and (text[start - 1].isalnum() or text[start - 1] in "_-"):
            start -= 1
        capital = _CAPITAL.search(text, start, end)  # the first capital of the run (after `pos`)
        if capital is not None and (m := _STREET.match(text, capital.start(), endpos)) is not None:
            yield m
            pos = m.end()


def _street_apart(others: _Gated, text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
    """The matches of the alternation of the street layout and `others` (the layouts after it), found
    as that alternation finds them: the leftmost match of either, the street's on a tie (no layout
    before it in the alternation starts with a capital)."""
    other, street = others.search(text, pos, endpos), next(_streets(text, pos, endpos), None)
    while other or street:
        m = street if street and (other is None or street.start() <= other.start()) else other
        assert m is not None
        yield m
        pos = m.end()
        if other and other.start() < pos:
            other = others.search(text, pos, endpos)
        if street and street.start() < pos:
            street = next(_streets(text, pos, endpos), None)


class _LayoutScan:
    """The matches of the alternation of `patterns` (`pattern`), found as `pattern.finditer` finds
    them: where a layout can start one (`_Gated`), with the street layout found apart."""

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self.layouts = tuple(patterns)
        self.pattern = _alternation(patterns)
        others = _Gated([p for p in patterns if p is not _STREET])
        self.scan = partial(_street_apart, others) if _STREET in patterns else others.finditer

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.scan(text, 0, len(text))


# the layouts written in one script, and a letter every match of each holds
_SCRIPTS = {
    "cyrillic": re.compile("[\u0400-\u04ff]"),
    "cjk": re.compile("[\u4e00-\u9fff]"),
    "hangul": re.compile("[\uac00-\ud7af]"),
    "postal mark": re.compile("〒"),
}
_SCRIPT_OF = {
    _ADDRESS_PATTERNS[5]: "cyrillic",  # ул. Тверская, д. 7
    _ADDRESS_PATTERNS[6]: "cjk",  # 東京都千代田区丸の内1-1-1
    _ADDRESS_PATTERNS[7]: "cjk",  # 北京市朝阳区建国路88号
    _ADDRESS_PATTERNS[8]: "hangul",  # 강남구 테헤란로 152
    _POSTCODE_PATTERNS[6]: "postal mark",  # 〒100-0005
}


def _scoped(pattern: re.Pattern[str]) -> str:
    flags = ("i" if pattern.flags & re.IGNORECASE else "") + ("m" if pattern.flags & re.MULTILINE else "")
    return f"(?{flags}:{pattern.pattern})" if flags else f"(?:{pattern.pattern})"


class AddressDetector:
    """Street addresses (English, German, Dutch, Nordic, French, Spanish, Italian, Portuguese,
    Polish, Turkish, Russian, Japanese and Chinese layouts, PO boxes) and postcodes (UK, Canada,
    US state + ZIP, Australia, 4-5 digit codes followed by a town in address position, Japan,
    Brazil, Poland, labelled)."""

    name = "address"
    needs_digit = True  # every layout holds a number (`Redactor` skips the texts without a digit)
    # one scan per kind instead of one per pattern (each keeps its own flags), tried only where a
    # layout can start a match
    scans = ((_LayoutScan(_ADDRESS_PATTERNS), "{{address}}"), (_LayoutScan(_POSTCODE_PATTERNS), "{{postcode}}"))

    @staticmethod
    @lru_cache(maxsize=32)
    def scans_for(scripts: frozenset[str]) -> tuple[tuple[_LayoutScan, str], ...]:
        """The scans without the layouts of scripts a text does not hold (each of those matches
        only text with a letter of its script): the same matches, without trying those layouts
        wherever another layout may start."""
        if scripts == frozenset(_SCRIPTS):
            return AddressDetector.scans
        return tuple(
            (_LayoutScan([p for p in patterns if _SCRIPT_OF.get(p) in {None, *scripts}]), placeholder)
            for patterns, placeholder in ((_ADDRESS_PATTERNS, "{{address}}"), (_POSTCODE_PATTERNS, "{{postcode}}"))
        )

    @staticmethod
    def cache_key(context: RedactionContext) -> Hashable:
        return ()  # what it finds depends on the text alone

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        if _ANY_DIGIT.search(text) is None:  # every layout above holds a number
            return
        scripts = frozenset() if text.isascii() else frozenset(k for k, probe in _SCRIPTS.items() if probe.search(text))
        for scan, placeholder in self.scans_for(scripts):
            for m in scan.finditer(text):
                yield Span(m.start(), m.end(), placeholder, self.name)


# --- known people and companies ----------------------------------------------------------------


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF
        or 0x3400 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0xF900 <= code <= 0xFAFF
        or 0x0E00 <= code <= 0x0E7F
    )


class KnownEntityDetector:
    """The names the context knows (lead, sender, colleagues, companies, signature lines), found
    case-insensitively with word boundaries (none for scripts written without spaces) on the
    text's skeleton (look-alike letters folded), with plain `str.find` on one copy of the text:
    no pattern is compiled per row. A strict term needs a capital or a slug around it."""

    name = "known_entity"

    def find(self, text: str, context: RedactionContext) -> Iterator[Span]:
        if not context.terms:
            return
        folded = skeleton(text)
        size = len(folded)
        plain = folded.isascii()  # a name with any other letter cannot be in it (Иванова, Müller)
        # a name inside one kept for an earlier needle ("Aisha" in "Aisha Smith") is left out:
        # resolving would drop it, and without it most texts' spans overlap nowhere (`resolve`'s
        # shortcut). A needle's own names never hold each other (the same length, other starts), so
        # each name is compared with every name kept so far: one by one while they are few, then
        # through `_Reach` (a text repeating names thousands of times stays near-linear)
        kept: list[tuple[int, int]] = []
        reach: _Reach | None = None
        for needle, placeholder, left_free, right_free, strict in context.needles:
            if plain and not needle.isascii():
                continue
            start = folded.find(needle)
            while start != -1:
                end = start + len(needle)
                if (
                    (left_free or start == 0 or not folded[start - 1].isalnum())
                    and (right_free or end == size or not folded[end].isalnum())
                    and (not strict or text[start].isupper() or _in_slug(text, start, end))
                    and not (strict and needle in _DECLINED_WORDS and _sentence_start(text, start))
                ):
                    if reach is not None:
                        inside = reach.furthest(start) >= end
                    else:
                        for outer_start, outer_end in kept:
                            if outer_start <= start and end <= outer_end:
                                inside = True
                                break
                        else:
                            inside = False
                    if not inside:
                        yield Span(start, end, placeholder, self.name)
                        if reach is not None:
                            reach.add(start, end)
                        else:
                            kept.append((start, end))
                            if len(kept) > _FEW_NAMES:
                                reach = _Reach(size)
                                for kept_start, kept_end in kept:
                                    reach.add(kept_start, kept_end)
                start = folded.find(needle, start + 1)


_FEW_NAMES = 16  # names kept in a text, compared one by one; past that, looked up in a _Reach

# declined names that are also common words ("Marka", Polish and Czech for brand, for Marek; "Kuby",
# of Cuba, for Kuba; "róży", of a rose; "sławy", of fame): taken as a name except as the first word
# of a sentence, where any word has a capital
_DECLINED_WORDS = frozenset({"marka", "kuby", "kubie", "kubę", "kubą", "róży", "różę", "sławy", "sławie", "sławę"})


def _sentence_start(text: str, start: int) -> bool:
    """Whether a word starts a sentence: at the text's start or a line's, or after a full stop, a
    question or exclamation mark or a colon (opening quotes and brackets between)."""
    i = start - 1
    while i >= 0 and text[i] in " \t\u00a0\"'«»„“‚‘([":
        i -= 1
    return i < 0 or text[i] in ".!?…:\n\r"


class _Reach:
    """The furthest end among the names starting at or before a position, as names are added (a
    Fenwick tree of maxima over start positions: both in O(log n))."""

    def __init__(self, size: int) -> None:
        self.tree = [0] * (size + 1)

    def add(self, start: int, end: int) -> None:
        i, tree = start + 1, self.tree
        while i < len(tree):
            if tree[i] < end:
                tree[i] = end
            i += i & -i

    def furthest(self, start: int) -> int:
        i, tree, best = start + 1, self.tree, 0
        while i > 0:
            if tree[i] > best:
                best = tree[i]
            i -= i & -i
        return best


def _in_slug(text: str, start: int, end: int) -> bool:
    """Written inside an id, a path or a slug: `abm-bright-q3`, `bright_box`, `/bright/`."""
    return (start > 0 and text[start - 1] in _SLUG_JOINERS) or (end < len(text) and text[end] in _SLUG_JOINERS)


_SLUG_JOINERS = frozenset("-_/=0123456789")


# the one character whose lower case is two characters (İ lowers to i + a combining dot)
_LOWERS_TO_TWO = "\u0130"
_NOT_LOWERING_TO_TWO = re.compile(f"[^{_LOWERS_TO_TWO}]+")


def _lower(text: str) -> str:
    """Lower case with the offsets of the original: an İ is kept as it is, and each stretch between
    them is lowered whole, so a final Σ still lowers to ς and a text lowers the same however it is
    joined with others (lowering it character by character lost the final sigma of every text
    joined with one that held an İ)."""
    if _LOWERS_TO_TWO not in text:
        return text.lower()
    return _NOT_LOWERING_TO_TWO.sub(lambda m: m.group(0).lower(), text)


DEFAULT_DETECTORS: tuple[Detector, ...] = (
    LinkDetector(),
    EmailDetector(),
    SecretDetector(),
    IbanDetector(),
    CardDetector(),
    PhoneDetector(),
    AddressDetector(),
    KnownEntityDetector(),
)


def resolve(spans: Iterable[Span], text: str) -> list[Span]:
    """Non-overlapping spans, longest first (earlier detector on ties). What any detector found is
    always removed: a span that partly overlaps a longer one is merged into it (never dropped,
    which would leave its tail behind), and a span reaching into one of our placeholders takes the
    placeholder with it (a link ending in `?name={{first_name}}` is still a link). Spans inside a
    placeholder are the placeholder itself and are left alone."""
    protected = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)] if "{{" in text else []
    # the common case: spans that overlap neither each other nor a placeholder are kept as they are
    ordered = sorted((s for s in spans if s.end > s.start), key=lambda s: s.start)
    if all(a.end <= b.start for a, b in itertools.pairwise(ordered)) and not _touching(ordered, protected):
        return ordered
    return _merged(ordered, protected)


def _touching(ordered: list[Span], protected: list[tuple[int, int]]) -> bool:
    """Whether a span (ordered, none overlapping) overlaps a placeholder (in order too)."""
    i = 0
    for p_start, p_end in protected:
        while i < len(ordered) and ordered[i].end <= p_start:
            i += 1
        if i < len(ordered) and ordered[i].start < p_end:
            return True
    return False


def _merged(spans: Iterable[Span], protected: list[tuple[int, int]]) -> list[Span]:
    """`resolve` in general: longest first, merging partial overlaps, around placeholders.

    The spans taken so far never overlap, so they are kept by start (their ends in the same
    order), and what a span overlaps, of them or of the placeholders (`protected`, in order, apart),
    is a slice found by bisection: a text with thousands of overlapping names stays near-linear
    (comparing each span with every one taken took 41 s for 390 KB). A span that overlaps several
    taken ones is merged into the one taken first (`seq`), as the longest (tests/unit/
    test_redaction_scan.py compares this with the version that compared every pair)."""
    p_starts, p_ends = [p for p, _ in protected], [e for _, e in protected]
    starts: list[int] = []
    ends: list[int] = []
    taken: list[tuple[int, Span]] = []  # (when it was taken, the span), by start
    for seq, span in enumerate(sorted(spans, key=lambda s: (s.start - s.end, s.start))):
        start, end = span.start, span.end
        if end <= start:
            continue
        first, last = bisect.bisect_right(p_ends, start), bisect.bisect_left(p_starts, end)
        if first < last:  # placeholders it reaches into: inside one, it is that placeholder
            if p_starts[first] <= start and end <= p_ends[first]:
                continue
            start, end = min(start, p_starts[first]), max(end, p_ends[last - 1])
        lo, hi = bisect.bisect_right(ends, start), bisect.bisect_left(starts, end)
        if lo < hi:
            if hi - lo == 1 and starts[lo] <= start and end <= ends[lo]:
                continue  # inside one taken
            keep = min(taken[lo:hi])[1]
            span = Span(min(start, starts[lo]), max(end, ends[hi - 1]), keep.placeholder, keep.detector)
            del starts[lo:hi], ends[lo:hi], taken[lo:hi]
        else:
            span = Span(start, end, span.placeholder, span.detector)
        starts.insert(lo, span.start)
        ends.insert(lo, span.end)
        taken.insert(lo, (seq, span))
    return [span for _, span in taken]


# Joins the texts of one message (or one written line) so each detector scans them in one call.
# No pattern can match across it: only the link pattern's negated classes accept NUL, and they stop
# at the newlines around it. The newline next to each text keeps `^`, `$`, `\b` and the look-arounds
# behaving as at the start and end of a string; a match that still crossed it would be found again
# text by text (`_joined_find`).
SEPARATOR = "\n\x00\n"


# What a Redactor remembers: short texts only (field values, subjects, the system prompt: they
# recur), never message bodies (they rarely do, and would hold megabytes a worker)
CACHED_TEXT, CACHED_TEXTS = 300, 8192


# how many times a text is read and redacted at most: again while a read replaced something
REDACTION_ROUNDS = 3


@dataclass
class Redactor:
    """Runs the detectors and replaces what they find; counts replacements by placeholder.

    Detectors read the normalised text (`normalized`); their spans are mapped back to the
    original, which is what gets replaced. `find_many` and `redact_many` do what `find` and
    `redact` do to each of several texts, with each detector scanning them all in one call, and
    remember what a detector found in a text when that depends on the text (and its regions) only."""

    detectors: Sequence[Detector] = DEFAULT_DETECTORS
    counts: Counter[str] = field(default_factory=Counter)
    _cache: dict[tuple[str, Hashable, str], tuple[Span, ...]] = field(default_factory=dict, repr=False)

    def spans(self, text: str, context: RedactionContext) -> list[Span]:
        view, where = normalized(text)
        return _to_original([s for d in self.detectors for s in d.find(view, context)], where, text)

    def find(self, text: str, context: RedactionContext) -> list[Span]:
        if not text:
            return []
        return resolve(self.spans(text, context), text)

    def redact(self, text: str | None, context: RedactionContext) -> str:
        """`text` with what the detectors find replaced, again until they find nothing
        (`REDACTION_ROUNDS`: `redact_each`)."""
        return self.redact_each([(text, context)])[0]

    def find_many(self, texts: Sequence[str], context: RedactionContext) -> list[list[Span]]:
        return self.find_each([(text, context) for text in texts])

    def redact_many(self, texts: Sequence[str | None], context: RedactionContext) -> list[str]:
        """`redact` of each text (None and empty give "")."""
        return self.redact_each([(text, context) for text in texts])

    def find_each(self, pairs: Sequence[tuple[str, RedactionContext]]) -> list[list[Span]]:
        """`find` of each text with its own context (the texts of many messages at once)."""
        texts = [text for text, _ in pairs]
        raw = self._raw_spans(texts, [context for _, context in pairs])
        return [resolve(spans, text) if text else [] for spans, text in zip(raw, texts, strict=True)]

    def redact_each(
        self, pairs: Sequence[tuple[str | None, RedactionContext]], counts: Sequence[Counter[str]] | None = None
    ) -> list[str]:
        """`redact` of each text with its own context (None and empty give ""). With `counts` (one
        per text, the same one for texts counted together), each text's replacements are counted
        there instead of in `self.counts`.

        The spans are found in the original and replaced together; what is left next to them can
        read as something new ("Tel/Fax: +44/4111 1111 1111 1111" leaves "{{phone}} 1111 1111
        1111", a phone number on its own), which the residual scan would flag. So a text is read
        again, up to REDACTION_ROUNDS times in all, while a replacement left something that could
        (`_may_expose`): a text with none, or whose placeholders stand apart (most), is read once."""
        out = [text or "" for text, _ in pairs]
        contexts = [context for _, context in pairs]
        if counts is not None and len(counts) != len(out):
            raise ValueError(f"{len(counts)} counts for {len(out)} texts")
        tally = counts if counts is not None else [self.counts] * len(out)
        todo = [i for i, text in enumerate(out) if text]
        for _ in range(REDACTION_ROUNDS):
            if not todo:
                break
            raw = self._raw_spans([out[i] for i in todo], [contexts[i] for i in todo])
            changed = []
            for i, spans in zip(todo, raw, strict=True):
                resolved = resolve(spans, out[i]) if spans else spans
                if resolved and (redacted := _replaced(out[i], resolved, tally[i])) != out[i]:
                    if _may_expose(out[i], resolved):
                        changed.append(i)
                    out[i] = redacted
            todo = changed
        return out

    def _raw_spans(self, texts: Sequence[str], contexts: Sequence[RedactionContext]) -> list[list[Span]]:
        """Each detector's spans in each text (read with its own context), unresolved. A detector
        scans the texts it reads the same way (the same context, or the same `cache_key` of their
        contexts) together, joined: one call for many texts, whatever message each came from."""
        normal = [normalized(t) if t else ("", None) for t in texts]
        views = [view for view, _ in normal]
        per_view: list[list[Span]] = [[] for _ in texts]
        every = [i for i, view in enumerate(views) if view]
        with_digit: list[int] | None = None  # the texts holding a digit, worked out once
        for detector in self.detectors:
            # a detector that can tell a text holds nothing for it (an address needs a digit, a card
            # a run of 13) only sees the texts that may, as it would text by text; one that finds
            # nothing without a digit (`needs_digit`) is not asked about the texts without one
            # (most: field values, subjects), which are found once for all such detectors
            wanted = getattr(detector, "wanted", None)
            cache_key = getattr(detector, "cache_key", None)
            groups: dict[tuple[bool, Hashable], list[int]] = {}  # (keyed, key or context id) -> texts
            chosen_texts = every
            if getattr(detector, "needs_digit", False):
                if with_digit is None:
                    with_digit = [i for i in every if _ANY_DIGIT.search(views[i]) is not None]
                chosen_texts = with_digit
            for i in chosen_texts:
                view = views[i]
                if wanted is not None and not wanted(view):
                    continue
                key = cache_key(contexts[i]) if cache_key is not None else None
                if key is None:  # read with this very context
                    groups.setdefault((False, id(contexts[i])), []).append(i)
                # what a detector finds in a text that depends on nothing else (or only on the
                # regions) is remembered: the system prompt, the prompt lines and many briefs recur
                elif len(view) <= CACHED_TEXT and (known := self._cache.get((detector.name, key, view))) is not None:
                    per_view[i] += known
                else:
                    groups.setdefault((True, key), []).append(i)
            for (keyed, key), chosen in groups.items():
                context = contexts[chosen[0]]  # what the group's texts are read with
                if len(chosen) == 1:
                    found = [list(detector.find(views[chosen[0]], context))]
                else:
                    found = _joined_find(detector, [views[i] for i in chosen], context)
                for i, spans in zip(chosen, found, strict=True):
                    per_view[i] += spans
                    if keyed and len(views[i]) <= CACHED_TEXT:
                        if len(self._cache) >= CACHED_TEXTS:
                            self._cache.clear()
                        self._cache[(detector.name, key, views[i])] = tuple(spans)
        return [
            _to_original(spans, where, text) for spans, (_, where), text in zip(per_view, normal, texts, strict=True)
        ]


# what may stand next to a placeholder without reading as part of something else: a space, a
# sentence's punctuation, a bracket or quote, a full stop that ends a sentence
_APART_AFTER = re.compile(r"[\s,;:!?)\]}\"'»”’]|\.(?!\S)|\Z")
_APART_BEFORE = frozenset(" \t\r\n\f\v\u00a0([{\"'«“‘:,;")
# what goes between the digits of a phone number, a card or an address number ("12/4111 1111")
_DIGIT_JOINERS = frozenset(" \t\r\n\u00a0\u202f().-/+,:\u2013\u2014")
_DIGITS_AFTER = re.compile(r"[\s().\-/+,:\u2013\u2014]*+\d")


def _may_expose(text: str, spans: list[Span]) -> bool:
    """Whether replacing `spans` (resolved) in `text` may leave something the detectors read anew:
    a placeholder next to a letter, a digit or a joining character (a name no longer inside a
    word), or digits that reach it across the separators of a number (the rest of a digit run a
    phone number was taken from)."""
    for span in spans:
        if not _APART_AFTER.match(text, span.end) or _DIGITS_AFTER.match(text, span.end):
            return True
        i = span.start - 1
        if i >= 0 and text[i] not in _APART_BEFORE:
            return True
        while i >= 0 and text[i] in _DIGIT_JOINERS:
            i -= 1
        if i >= 0 and text[i].isdigit():
            return True
    return False


def _to_original(spans: list[Span], where: list[int] | None, text: str) -> list[Span]:
    """Spans of a normalised text as spans of its original (`normalized`'s offsets). A span ends
    past the combining marks that follow it in the original: `normalized` joins a decomposed
    accent to the letter before it, and the placeholder takes the accent with the letter (else
    "José" written with U+0301 would leave the accent after `{{first_name}}`)."""
    if where is not None:
        spans = [
            Span(where[s.start], where[s.end - 1] + 1, s.placeholder, s.detector) for s in spans if s.end > s.start
        ]
    elif text.isascii():
        return spans
    return [_past_marks(s, text) for s in spans]


def _past_marks(span: Span, text: str) -> Span:
    end = span.end
    while end < len(text) and unicodedata.combining(text[end]):
        end += 1
    return span if end == span.end else span._replace(end=end)


def _joined_find(detector: Detector, texts: list[str], context: RedactionContext) -> list[list[Span]]:
    """One `find` over the texts joined by SEPARATOR, its spans given back to each text."""
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(SEPARATOR)
    found: list[list[Span]] = [[] for _ in texts]
    for span in detector.find(SEPARATOR.join(texts), context):
        i = bisect.bisect_right(starts, span.start) - 1
        offset = starts[i]
        if span.end - offset > len(texts[i]):  # across a separator: this detector text by text instead
            return [list(detector.find(text, context)) for text in texts]
        found[i].append(Span(span.start - offset, span.end - offset, span.placeholder, span.detector))
    return found


# --- building the context of one message -------------------------------------------------------

_LEGAL_SUFFIX = re.compile(
    r"[,\s]+(?:inc\.?|incorporated|llc|l\.l\.c\.|ltd\.?|limited|plc|corp\.?|corporation|co\.?|company|gmbh|"
    r"gmbh & co\.? kg|ag|kg|se|sa|s\.a\.|sas|sarl|s\.r\.l\.|srl|spa|s\.p\.a\.|bv|b\.v\.|nv|n\.v\.|oy|ab|as|a/s|"
    r"aps|pty\.? ltd\.?|pte\.? ltd\.?|k\.k\.|kk|llp|lp|s\.l\.|sl|oü|sp\. z o\.o\.)$",
    re.IGNORECASE,
)
# legal forms written before the name (ООО «Ромашка», PT Maju Jaya) and the quotes around it
_LEGAL_PREFIX = re.compile(r"^(?:ООО|ОАО|ЗАО|ПАО|НАО|АО|ИП|ТОВ|ПрАТ|ПАТ|ТОО|PT|CV|UAB|SIA|OOO)\s+")
_QUOTES = "\"'«»„“”‘’‹›「」『』"
_CJK_COMPANY_AFFIX = re.compile(r"^(?:株式会社|有限会社)|(?:株式会社|有限会社|有限公司|股份有限公司|公司)$")


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Keys of a lead context whose values are people, judged on the key's words (`buying_committee`,
# `referred_by`, `assistant.name`), never on substrings: "cc" is in `account_tier`, "contact" in
# `contact_preference`, "team" in `team`: their values ("Enterprise", "Email", "Finance") are not people.
_PERSON_KEYS = _wordset(
    "name names fullname colleague colleagues contact contacts assistant assistants manager managers champion "
    "champions referrer boss owner owners founder founders cofounder ceo cfo cto coo cmo cro cio ciso cpo vp svp evp "
    "director directors person people stakeholder stakeholders sponsor sponsors buyer buyers signer signers "
    "signatory introducer cc bcc committee member members attendee attendees participant participants recipient "
    "recipients approver approvers maker makers influencer influencers rep reps ae sdr bdr csm"
)
_PERSON_VERBS = _wordset("referred introduced reports managed owned sponsored approved signed assigned")
_NOT_PERSON_NAMES = _wordset(
    "product company account campaign plan stage file host domain brand event project deal tool app team org "
    "organization organisation list field template sequence segment tier industry city country region street job "
    "role pipeline opportunity opp cadence workspace channel tag category source vendor competitor partner"
)
_PART_KEYS = _wordset("first last given family surname middle display full")
_KEY_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
# name parts that are not names on their own ("de" and "la" of De La Cruz, "van" of van Dijk)
_PARTICLES = _wordset(
    "de da di du del della delle dei der den des van von la le lo los las el al bin ibn ben "
    "bint ter ten te zu zum zur y e dos das do st saint mac"
)
# words that are also names: taken only where written as a name (capital or slug), so "I will
# check the price" keeps its words for a lead called Will Price
COMMON_WORDS = _wordset("""
will mark bill grace hope may june april august rose summer chase max pat sue rob art jack frank faith joy dawn
hunter ray gene guy don drew miles wade lance dean glen cliff dale page penny ruby iris holly ivy daisy amber crystal
sky brook brooks read reed price cook baker young long white brown green black gray grey king hill wood woods stone
rich hall bell ford field fields lane park rice fox bush love bond sharp strong little small short wise moon star day
child best north west east south law sale sales head case booth bishop cross marsh major hunt grant bright fair gold
silver swift power rush frost snow rain storm winter spring well wells banks bank street ward march key keys lake
ridge parks archer booker palmer porter potter shepherd fisher butler marshall chambers cotton house church coffee
good wolf lamb bird fish crane swan finch drake carter mason taylor turner walker cooper smith miller clay rock cole
honor trust worth noble cash chance sterling victor early late new
box square notion monday slack zoom stripe apple amazon target gap shell oracle meta snap block ring nest segment
loom linear ramp gusto front outreach gong close pipe plaid mercury remote open clear smart core prime summit pulse
spark echo signal vista atlas beacon harbor harbour anchor bridge compass pioneer frontier horizon keystone pinnacle
apex vertex zenith quest venture capital global united general national first digital
""")
# first words that do not name a company on their own ("General" of General Motors)
_GENERIC_FIRST_WORDS = _wordset("""
the a an general united american national international global first new digital advanced applied royal standard
central pacific atlantic western eastern northern southern north south east west great big smart open data cloud
tech software systems solutions group consolidated universal integrated premier prime allied associated british
german french european euro asia asian china japan indian india canadian australian city state metro bank union
mutual federal old modern creative total pro best top one all my your our blue red green black white gold golden
silver star sun super mega ultra net web info micro grand home health medical pharma bio energy power media market
capital financial finance insurance real travel food foods auto motor motors air sea land ocean mountain river lake
park deutsche société societe banco grupo compagnie nippon
""")


def _strip_accents(value: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))


# letters NFKD leaves whole (no accent to strip), as they are written in plain ASCII: Paweł as
# Pawel, Søren as Soren, Đorđe as Dorde, Æsa as Aesa, Þóra as Thora, Straße as Strasse; then the
# second spelling some of them have (Đorđe as Djordje, Søren as Soeren): two forms, not every mix
_FOLDS = str.maketrans(
    {
        **dict(zip("łŁøØđĐðÐıħĦ", "lLoOdDdDihH", strict=True)),
        **{"æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe", "þ": "th", "Þ": "Th", "ß": "ss", "ẞ": "SS"},
    }
)
_SECOND_FOLDS = str.maketrans({"đ": "dj", "Đ": "Dj", "ø": "oe", "Ø": "Oe"})


def _plain_letters(value: str) -> set[str]:
    """`value` in ASCII letters where only folding gets it there (`_FOLDS`): none, one or two forms."""
    stripped = _strip_accents(value)
    if stripped.isascii():
        return set()
    return {stripped.translate(_FOLDS), stripped.translate(_SECOND_FOLDS).translate(_FOLDS)}


def _transliterations(value: str) -> set[str]:
    german = (
        value.replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("Ä", "Ae")
        .replace("Ö", "Oe")
        .replace("Ü", "Ue")
        .replace("ß", "ss")
    )
    forms = {value, _strip_accents(value), german, *_plain_letters(value)}
    if "'" in value or "’" in value:  # O'Brien, D’Angelo: as written in ids and addresses
        forms |= {f.replace("'", sep).replace("’", sep) for f in list(forms) for sep in ("", "-", " ")}
    forms.update(romanizations(value))  # Ольга as Olga, Ol'ga, Olha
    return forms


# --- names stored in Cyrillic or Greek, written in Latin letters ---------------------------------
# Each system is one way of romanising, letter by letter: a key of two letters (ия, ου) is tried
# before one letter, "^" marks the start of a word and "$" its end. A name gets at most
# _MAX_ROMANIZATIONS spellings (the first systems first): the spellings people and passports use,
# not every combination of every letter's choices.
_CYRILLIC_BASE = {
    **dict(zip("абвгдезиклмнопрстуфы", "abvgdeziklmnoprstufy", strict=True)),
    **{"ё": "e", "ж": "zh", "й": "y", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ь": ""},
    **{"э": "e", "ю": "yu", "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u"},
    **{"ђ": "dj", "ј": "j", "љ": "lj", "њ": "nj", "ћ": "c", "џ": "dz", "ѓ": "gj", "ќ": "kj", "ѕ": "dz"},
}
_VOWELS_YE = {
    v + "е": r + "ye"
    for v, r in zip("аоуиыэюяеъь", ["a", "o", "u", "i", "y", "e", "yu", "ya", "e", "", "'"], strict=True)
}
_CYRILLIC_SYSTEMS: tuple[dict[str, str], ...] = (
    # the common English spelling (Olga, Yulia, Dmitry, Fyodor)
    {**_CYRILLIC_BASE, "ё": "yo", "ия": "ia", "ий$": "y", "ый$": "y"},
    # BGN/PCGN (Ol'ga, Yelena, Dmitriy, Yuliya)
    {**_CYRILLIC_BASE, **_VOWELS_YE, "ь": "'", "^е": "ye", "ия": "iya", "ий$": "iy", "ый$": "yy"},
    # the passport (ICAO 9303) spelling (Iuliia, Dmitrii)
    {**_CYRILLIC_BASE, "й": "i", "ю": "iu", "я": "ia", "ъ": "ie", "є": "ie", "ї": "i", "ий$": "ii", "ия": "iia"},
    # Ukrainian national (Olha, Yuliia, Hryhorii)
    {
        **_CYRILLIC_BASE,
        **{"г": "h", "и": "y", "ї": "i", "^ї": "yi", "є": "ie", "^є": "ye", "й": "i", "^й": "y"},
        **{"ю": "iu", "^ю": "yu", "я": "ia", "^я": "ya", "зг": "zgh"},
    },
    # the j-spellings of German, Polish and ISO 9 simplified (Julia, Jurij, Chruschtschow aside)
    {
        **_CYRILLIC_BASE,
        "й": "j",
        "ю": "ju",
        "я": "ja",
        "х": "h",
        "ц": "c",
        "є": "je",
        "ї": "ji",
        "ия": "ia",
        "ий$": "ij",
    },
    # Bulgarian (Georgi Stoyanov, Hristo, Shtilyanov)
    {**_CYRILLIC_BASE, "х": "h", "щ": "sht", "ъ": "a", "ьо": "yo", "ия$": "ia"},
    # Serbian Latin, with its letters (its accent-free form is added after)
    {
        **_CYRILLIC_BASE,
        **{"ж": "ž", "ч": "č", "ћ": "ć", "ш": "š", "ђ": "đ", "џ": "dž", "х": "h", "ц": "c", "й": "j"},
        **{"ю": "ju", "я": "ja"},
    },
)
_GREEK_BASE = {
    **dict(zip("αβγδεζηικλμνξοπρστυφω", "avgdeziiklmnxoprstyfo", strict=True)),
    **{"ς": "s", "θ": "th", "χ": "ch", "ψ": "ps", "ου": "ou", "αυ": "av", "ευ": "ev", "ηυ": "iv"},
    **{"γγ": "ng", "γκ": "gk", "^γκ": "g", "μπ": "mp", "^μπ": "b", "ντ": "nt", "^ντ": "d"},
    **{"αι": "ai", "ει": "ei", "οι": "oi"},
}
_GREEK_SOUNDS = {"γι": "yi", "γε": "ye", "γη": "yi", "γυ": "yi", "χ": "h", "υ": "i", "αι": "e", "ει": "i", "οι": "i"}
_GREEK_SYSTEMS: tuple[dict[str, str], ...] = (
    _GREEK_BASE,  # ELOT 743 (Giorgos Papadopoulos, Vasileios)
    {**_GREEK_BASE, **_GREEK_SOUNDS, "μπ": "b", "ντ": "d", "γκ": "g"},  # as said (Yiorgos, Hristos)
    {**_GREEK_BASE, "ου": "u", "χ": "kh"},  # Papadopulos, Khristos
    {**_GREEK_BASE, **_GREEK_SOUNDS, "ου": "u"},  # Yiorgos Papadopulos
    {**_GREEK_BASE, "β": "b", "η": "e", "φ": "ph", "υ": "y"},  # older (Basileios, Demetrios, Christophoros)
    {**_GREEK_BASE, "χ": "h", "η": "i", "υ": "i", "δ": "dh"},  # Dhimitris, Hristos
)
_MAX_ROMANIZATIONS = 8
_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_GREEK_LETTER = re.compile("[\u0370-\u03ff\u1f00-\u1fff]")
_WORD = re.compile(r"\w+")


def _romanized_word(word: str, system: Mapping[str, str]) -> str:
    low, out, i = word.lower(), [], 0
    while i < len(low):
        pair = low[i : i + 2]
        for key in (
            *((pair + "$",) if len(pair) == 2 and i + 2 == len(low) else ()),
            *(("^" + pair,) if i == 0 and len(pair) == 2 else ()),
            *((pair,) if len(pair) == 2 else ()),
        ):
            if key in system:
                out.append(system[key])
                i += 2
                break
        else:
            char = low[i]
            single = (
                ("^" + char)
                if i == 0 and ("^" + char) in system
                else (char + "$")
                if i == len(low) - 1 and (char + "$") in system
                else char
            )
            out.append(system.get(single, char))
            i += 1
    roman = "".join(out)
    if word[:1].isupper():
        roman = roman.upper() if word.isupper() and len(word) > 1 else roman[:1].upper() + roman[1:]
    return roman


def _romanized_match(system: Mapping[str, str], m: re.Match[str]) -> str:
    return _romanized_word(m.group(0), system)


@lru_cache(maxsize=8192)
def romanizations(value: str) -> tuple[str, ...]:
    """A name written in Cyrillic or Greek as it is spelled in Latin letters: `Ольга Иванова` as
    Olga / Ol'ga / Olha Ivanova, `Юлия` as Yulia / Yuliya / Iuliia / Julia, `Γιώργος Παπαδόπουλος` as
    Giorgos / Yiorgos Papadopoulos / Papadopulos; at most _MAX_ROMANIZATIONS spellings. Letter by
    letter only: what a name becomes in another language (Georgios for Giorgos, Yamada for 山田)
    is not spelling and is not found."""
    if value.isascii():
        return ()
    if _CYRILLIC_LETTER.search(value):
        systems, text = _CYRILLIC_SYSTEMS, value
    elif _GREEK_LETTER.search(value):
        systems, text = _GREEK_SYSTEMS, _strip_accents(value)  # tonos and dialytika: one spelling
    else:
        return ()
    spellings: dict[str, None] = {}
    for system in systems:
        spelled = _WORD.sub(partial(_romanized_match, system), text)
        spellings[spelled] = None
        plain = _strip_accents(spelled).replace("đ", "dj").replace("Đ", "Dj")
        spellings[plain] = None
    return tuple(s for s in spellings if s != value)[:_MAX_ROMANIZATIONS]


# --- Slavic names as declined in a sentence ("Пишу Ирине Петровой", "Pani Anno", "pane Nováku") ---
# (what a name ends in, lower case; how many of its last letters the case endings replace; the
# endings): the first row whose ending the name has applies. Only names of at least 4 letters
# whose stem keeps 3 are declined, and only those of a lead who is Slavic by the script of the
# name, its letters or endings, or the lead's country; the forms are taken only where written
# with a capital (a name in a sentence), so "anno" or "marke" in running text stay.
_CYRILLIC_CASES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("ій", 2, ("ія", "ію", "ієм", "ієві", "ії")),  # Андрій (Ukrainian)
    ("ий", 2, ("ия", "ию", "ием", "ии", "ого", "ому", "им", "ом")),  # Дмитрий, Достоевский
    ("ый", 2, ("ого", "ому", "ым", "ом")),
    ("ой", 2, ("ого", "ому", "ым", "ом")),  # Толстой
    ("ая", 2, ("ой", "ую", "ою")),  # Достоевская
    ("я", 1, ("и", "е", "ю", "ей", "ею", "і")),  # Мария, Наталья
    ("а", 1, ("ы", "и", "е", "у", "ой", "ою", "о", "і")),  # Ирина, Петрова
    ("й", 1, ("я", "ю", "ем", "е")),  # Андрей, Сергей
    ("ь", 1, ("я", "ю", "ем", "е", "і")),  # Игорь
)
_CYRILLIC_CONSONANT_CASES = ("а", "у", "ом", "ем", "е", "ым", "им", "ові")  # Иван, Петров
_LATIN_CASES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("ska", 1, ("iej", "ą")),  # Kowalska
    ("cka", 1, ("iej", "ą")),
    ("ová", 1, ("é", "ou")),  # Nováková
    ("ski", 1, ("iego", "iemu", "im")),  # Kowalski
    ("cki", 1, ("iego", "iemu", "im")),
    ("ý", 1, ("ého", "ému", "ým", "ém")),  # Dvorský
    ("ek", 2, ("ka", "ku", "kiem", "kowi")),  # Marek, Jacek
    ("a", 1, ("o", "y", "i", "ie", "ę", "ą", "u", "e", "ě", "ou")),  # Anna, Jolanta
)
_LATIN_CONSONANT_CASES = ("a", "u", "e", "em", "ovi", "owi", "ie", "om")  # Novák, Piotr
# a name whose last "e" drops when declined, after a consonant (Paweł: Pawła, Pawłem, Pawle;
# Pavel: Pavla, Pavlovi; Павел: Павла, Павлом), as well as the forms that keep it: what replaces
# its last two letters
_FLEETING_E = {
    "el": ("la", "lu", "lem", "lovi", "lowi", "lom", "le"),
    "eł": ("ła", "łu", "łem", "łowi", "le"),
    "ел": ("ла", "лу", "лом", "ле"),
}
# Polish consonant changes (one form each: the locative, dative or vocative, and the instrumental
# after k/g): Piotr: Piotrze, Marta: Marcie, Agnieszka: Agnieszce, Olga: Oldze, Nowak: Nowakiem
_POLISH_SOFTENED = (
    ("ka", "ce"),
    ("ga", "dze"),
    ("ta", "cie"),
    ("da", "dzie"),
    ("ra", "rze"),
    ("ła", "le"),
    ("r", "rze"),
    ("t", "cie"),
    ("d", "dzie"),
    ("ł", "le"),
    ("k", "kiem"),
    ("g", "giem"),
)
_SLAVIC_REGIONS = frozenset({"RU", "UA", "BY", "BG", "RS", "PL", "CZ", "SK", "SI", "HR", "BA", "ME", "MK", "KZ"})
_SLAVIC_LOOK = re.compile(
    r"[\u0400-\u04ffčćďěňřšťůžźżłńśąęđ]|(?:ová|ski|ska|cki|cka|ský|ská|ić|vić|enko|czyk|wicz|ów)\b", re.IGNORECASE
)


@lru_cache(maxsize=1024)
def _slavic_region(value: str) -> bool:
    return region_code(value) in _SLAVIC_REGIONS


def _declined_word(word: str) -> Iterator[str]:
    forms = list(_declined_forms(word))
    yield from forms
    if "ё" in word or "Ё" in word:  # Пётр is written Петр, and declined Петра, Петром
        yield word.replace("ё", "е").replace("Ё", "Е")
        yield from (form.replace("ё", "е").replace("Ё", "Е") for form in forms)


def _declined_forms(word: str) -> Iterator[str]:
    if len(word) < 4 or not word.isalpha():
        return
    low = word.lower()
    cyrillic = _CYRILLIC_LETTER.search(word) is not None
    rule = next((r for r in (_CYRILLIC_CASES if cyrillic else _LATIN_CASES) if low.endswith(r[0])), None)
    if rule is not None:
        _, cut, endings = rule
    elif low[-1] in ("аеёиоуыэюяіїє" if cyrillic else "aeiouyáéíóúýěů"):
        return  # indeclinable here (Шевченко, Bruno)
    else:
        cut, endings = 0, _CYRILLIC_CONSONANT_CASES if cyrillic else _LATIN_CONSONANT_CASES
    stem = word[: len(word) - cut]
    if len(stem) < 3:
        return
    yield from (stem + e for e in endings if e != low[len(low) - cut :])
    fleeting = _FLEETING_E.get(low[-2:]) if len(word) >= 5 and low[-3] not in "aeiouyаеиоуыяю" else None
    if fleeting is not None:
        yield from (word[:-2] + e for e in fleeting)
    elif not cyrillic and (rule is None or rule[0] == "a"):
        softened = next((s for s in _POLISH_SOFTENED if low.endswith(s[0])), None)
        if softened is not None and len(word) - len(softened[0]) >= 3:
            yield word[: len(word) - len(softened[0])] + softened[1]


@lru_cache(maxsize=8192)
def declined_variants(name: str) -> frozenset[str]:
    """The declined forms of each word of a name (Ирина: Ирины, Ирине, Ирину, Ириной; Anna: Anno,
    Anny, Annę; Novák: Nováka, Nováku, Novákem), itself left out."""
    return frozenset(form for word in name.split() for form in _declined_word(word))


@lru_cache(maxsize=8192)
def company_variants(name: str) -> frozenset[str]:
    """The name as written, without its legal form, accent-free, and as slugs (`acme-robotics`,
    `acme_robotics`, `acmerobotics`) as it appears in campaign ids, URLs and addresses."""
    name = " ".join(name.split())
    cores = {name}
    core = name
    while True:
        shorter = _LEGAL_SUFFIX.sub("", core).strip(" ,")
        if shorter == core or not shorter:
            break
        cores.add(shorter)
        core = shorter
    cores |= {_CJK_COMPANY_AFFIX.sub("", c) for c in cores}
    cores |= {_LEGAL_PREFIX.sub("", c).strip(_QUOTES + " ") for c in cores}
    cores |= {c[4:] for c in cores if c.lower().startswith("the ") and len(c) > 6}
    variants: set[str] = set()
    cores |= {re.sub(r"\s*&\s*", f" {joiner} ", c) for c in cores if "&" in c for joiner in ("and", "und")}
    for c in cores:
        for v in _transliterations(c):
            words = re.findall(r"\w+", v)
            variants.add(v)
            # slugs of the whole name and of its leading words, as campaign ids and URLs use them
            for n in range(2, len(words) + 1):
                variants |= {"-".join(words[:n]), "_".join(words[:n]), "".join(words[:n])}
    return frozenset(v for v in variants if len(v) >= 2)


@lru_cache(maxsize=8192)
def company_first_word(name: str) -> str | None:
    """The distinctive first word of a company name of several words, as people shorten it
    ("Northwind's roadmap" for Northwind Traders Inc., `abm-northwind-q4`); None for a generic one."""
    core = _LEGAL_PREFIX.sub("", " ".join(name.split())).strip(_QUOTES + " ")
    while (shorter := _LEGAL_SUFFIX.sub("", core).strip(" ,")) and shorter != core:
        core = shorter
    words = core.split()
    if len(words) < 2:
        return None
    first = words[0].strip(",.&'’")
    if len(first) < 4 or not first.isalpha() or first.lower() in _GENERIC_FIRST_WORDS:
        return None
    return first


@lru_cache(maxsize=8192)
def person_variants(name: str) -> frozenset[str]:
    """A person's full name and its parts (3+ letters, or 2 for the short surnames Li, Wu, Ng);
    particles ("De" and "La" of De La Cruz) are parts of the full name only."""
    name = " ".join(name.split())
    variants = set()
    for v in _transliterations(name):
        variants.add(v)
        parts = [p.strip(".") for p in re.split(r"[\s,]+", v) if p.strip(".")]
        for part in parts:
            if len(parts) > 1 and part.lower() in _PARTICLES:
                continue
            if len(part) >= 2 and any(c.isalpha() for c in part) and not (len(part) == 2 and part.islower()):
                variants.add(part)
    # a hyphenated name also written with a space or run together: Jean Luc, JeanLuc for Jean-Luc
    variants |= {v.replace("-", sep) for v in list(variants) if "-" in v for sep in (" ", "")}
    return frozenset(v for v in variants if len(v) >= 2 or (v and _is_cjk(v[0])))


@lru_cache(maxsize=4096)  # a CRM's keys recur in every lead's context
def _is_person_key(key: str) -> bool:
    words = [w.lower() for w in _KEY_WORD.findall(key)]
    if not words:
        return False
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last in ("name", "names") or (last.endswith("name") and last not in ("username", "filename", "hostname")):
        return before not in _NOT_PERSON_NAMES
    return last in _PERSON_KEYS or (last in ("by", "to") and before in _PERSON_VERBS)


def names_in(value: object, key: str = "", person: bool = False) -> Iterator[str]:
    """Person names in a lead context (`extra`): string values under keys that name people
    (`assistant`, `buying_committee`, `referred_by`, `champion.name`, `stakeholders[].first`)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            child = str(k)
            yield from names_in(v, child, _is_person_key(child) or (person and child.lower() in _PART_KEYS))
    elif isinstance(value, list | tuple | set | frozenset):  # JSON arrays, and what a Python caller passes
        for item in value:
            yield from names_in(item, key, person)
    elif isinstance(value, str) and person:
        text = value.strip()
        words = text.split()
        if 1 <= len(words) <= 5 and len(text) <= 80 and not any(ch.isdigit() for ch in text) and "@" not in text:
            yield text


def signature_lines(signature: str) -> Iterator[str]:
    """Lines of a sender's signature worth removing wherever they appear (not "Best," or "--")."""
    for line in signature.replace("\r\n", "\n").split("\n"):
        line = line.strip().strip("-–—|•·").strip()
        if len(line) >= 4 and not is_closing_line(line):
            yield line


@lru_cache(maxsize=4096)
def _signature_terms(signature: str) -> frozenset[str]:
    return frozenset(signature_lines(signature))


def _ordinary_words(term: str) -> bool:
    """Whether a term is made of ordinary words only ("Will", "Will Mark", "The Box")."""
    words = re.findall(r"\w+", term)
    return (
        bool(words)
        and all(w in COMMON_WORDS or w in _FUNCTION_WORDS for w in words)
        and any(w in COMMON_WORDS for w in words)
    )


_FUNCTION_WORDS = _wordset("the a an and of for to in on at by")


@lru_cache(maxsize=8192)
def _skeleton_of(term: str) -> str:
    """A name's skeleton as the detectors compare it; names recur across messages."""
    return skeleton(normalized(term)[0])


@lru_cache(maxsize=8192)
def _needle(term: str) -> tuple[str, bool, bool]:
    """A name's skeleton, and whether it may touch letters on its left and right (CJK scripts)."""
    needle = _skeleton_of(term)
    return (needle, _is_cjk(needle[0]), _is_cjk(needle[-1])) if needle else ("", False, False)


@lru_cache(maxsize=8192)
def _term_key(term: str) -> tuple[str, bool]:
    """A name's skeleton, and whether it is made of ordinary words only."""
    key = _skeleton_of(term)
    return key, _ordinary_words(key)


# one name of a role: (its place in `terms`: longer first, then by term), its entry in `terms`,
# its entry in `needles` (None when its skeleton is empty)
Placed = tuple[tuple[int, str], tuple[str, str, bool], Needle | None]


@lru_cache(maxsize=8192)
def _placed(variants: frozenset[str], placeholder: str, strict: bool) -> tuple[tuple[str, Placed], ...]:
    """One role's names as (skeleton, what is placed): people, companies and senders recur across
    messages, so each role is worked out once."""
    out = []
    for v in variants:
        key, ordinary = _term_key(v)
        needle, left_free, right_free = _needle(v)
        term = (v, placeholder, strict or ordinary)
        out.append(
            (key, ((-len(v), v), term, (needle, placeholder, left_free, right_free, term[2]) if needle else None))
        )
    return tuple(out)


@lru_cache(maxsize=8192)
def _first_word_variants(name: str) -> frozenset[str]:
    word = company_first_word(name)
    return frozenset(_transliterations(word)) if word else frozenset()


SENDER_FIELDS = ("name", "title", "company", "signature", "country")  # what a context reads of a sender


def build_context(
    *,
    lead: dict[str, str | None],
    colleagues: Iterable[str] = (),
    sender: Mapping[str, Any] | None = None,
    regions: Iterable[str | None] = (),
) -> RedactionContext:
    """The redaction context of one message. Longer terms come first, so overlapping names
    (a surname inside the company name) resolve to the longest. The sender's country is one of
    the regions. A sender that is not an object, or whose fields are not text, raises TypeError:
    it would not be read as anyone, and its name would be left in the text."""
    sender = sender or {}
    regions = tuple(regions)  # read twice: for the lead's country and as the phone regions
    if not isinstance(sender, Mapping):
        raise TypeError(f"the sender is not an object: {type(sender).__name__}")
    for key in SENDER_FIELDS:
        if not isinstance(sender.get(key), str | None):
            raise TypeError(f"the sender's {key} is not text: {type(sender.get(key)).__name__}")
    parts: list[tuple[tuple[str, Placed], ...]] = []  # in order of precedence

    def add(variants: frozenset[str], placeholder: str, strict: bool = False) -> None:
        parts.append(_placed(variants, placeholder, strict))

    first, last = (lead.get("first_name") or "").strip(), (lead.get("last_name") or "").strip()
    company = (lead.get("company") or "").strip()
    if company:
        add(company_variants(company), "{{company}}")
    if first and last:
        add(
            person_variants(f"{first} {last}") - person_variants(first) - person_variants(last),
            "{{first_name}} {{last_name}}",
        )
    if first:
        add(person_variants(first), "{{first_name}}")
    if last:
        add(person_variants(last), "{{last_name}}")
    if sender.get("company"):
        add(company_variants(sender["company"]), "{{sender_company}}")
    if sender.get("name"):
        add(person_variants(sender["name"]), "{{sender_name}}")
    if sender.get("title"):
        add(frozenset({" ".join(sender["title"].split())}), "{{sender_title}}")
    if sender.get("signature"):
        add(_signature_terms(sender["signature"]), "{{signature}}")
    for name in colleagues:
        add(person_variants(name), "{{colleague_name}}")
    # the lead's names as declined in a sentence (Ирине, Pani Anno), for a Slavic lead
    slavic_country: bool | None = None  # worked out when a name does not tell
    for name, placeholder in ((first, "{{first_name}}"), (last, "{{last_name}}")):
        if not name:
            continue
        if _SLAVIC_LOOK.search(name) is None:
            if slavic_country is None:
                slavic_country = any(isinstance(r, str) and _slavic_region(r) for r in regions)
            if not slavic_country:
                continue
        add(declined_variants(name), placeholder, strict=True)
    # a company's first word last: a person or a full name that is the same word keeps its role
    for name, placeholder in ((company, "{{company}}"), (sender.get("company") or "", "{{sender_company}}")):
        words = _first_word_variants(name)
        if words:
            add(words, placeholder, strict=True)
    # skeleton -> what is placed: the first role wins (the parts from last to first, each one's
    # later entries overwritten by its earlier ones)
    placed: dict[str, Placed] = {}
    for part in reversed(parts):
        placed.update(reversed(part))
    ordered = sorted(placed.values())  # by place: no two names share one
    codes = tuple(dict.fromkeys(c for c in (region_code(r) for r in (*regions, sender.get("country"))) if c))
    return RedactionContext(
        regions=codes,
        terms=tuple(term for _, term, _ in ordered),
        known_needles=tuple(needle for _, _, needle in ordered if needle is not None),
    )


def apply_spans(text: str, spans: Iterable[Span], counts: Counter[str] | None = None) -> str:
    """Replace resolved spans (from any detector, local or Comprehend) by their placeholders."""
    spans = list(spans)
    if not spans:
        return text
    return _replaced(text, resolve(spans, text), counts)


def _replaced(text: str, resolved: list[Span], counts: Counter[str] | None = None) -> str:
    """`text` with `resolved` (spans `resolve` gave) replaced by their placeholders, counted."""
    if not resolved:
        return text
    parts, last = [], 0
    for span in resolved:
        parts += [text[last : span.start], span.placeholder]
        last = span.end
        if counts is not None:
            counts[span.placeholder.strip("{}")] += 1
    parts.append(text[last:])
    return "".join(parts)


# --- Amazon Comprehend DetectPiiEntities as a second pass ---------------------------------------

# DetectPiiEntities takes "a UTF-8 text string. The maximum string size is 100 KB", language en or
# es (https://docs.aws.amazon.com/comprehend/latest/APIReference/API_DetectPiiEntities.html); a
# request is billed in units of 100 characters with a minimum of 3 units
# (https://aws.amazon.com/comprehend/pricing/).
COMPREHEND_MAX_BYTES = 100_000
COMPREHEND_LANGUAGES = ("en", "es")
COMPREHEND_SEPARATOR = "\n\n"
# entity types kept as they are: dates and ages are not identities and a sales email needs them
COMPREHEND_IGNORED = frozenset({"DATE_TIME", "AGE"})
COMPREHEND_PLACEHOLDERS = {
    "NAME": "{{name}}",
    "ADDRESS": "{{address}}",
    "EMAIL": "{{email}}",
    "PHONE": "{{phone}}",
    "URL": "{{link}}",
}


@dataclass(frozen=True)
class Piece:
    text_index: int  # which input text
    offset: int  # where this piece starts in that text
    text: str


Layout = list[tuple[int, Piece]]  # (position in the request, piece)


def pack_requests(texts: Sequence[str], max_bytes: int = COMPREHEND_MAX_BYTES) -> list[tuple[str, Layout]]:
    """Many short texts in few requests: each request is pieces joined by a blank line, under
    `max_bytes` of UTF-8; a text longer than that is cut at whitespace. Returns each request's
    text and, for each piece, where it starts in the request."""
    budget = max_bytes - 16  # room for separators
    pieces: list[Piece] = []
    for index, text in enumerate(texts):
        start = 0
        while start < len(text):
            end = len(text)
            while len(text[start:end].encode("utf-8")) > budget:
                cut = text.rfind(" ", start, start + (end - start) * 3 // 4)
                end = cut if cut > start else max(start + 1, start + (end - start) * 3 // 4)
            if text[start:end].strip():
                pieces.append(Piece(index, start, text[start:end]))
            start = end
    requests: list[tuple[str, Layout]] = []
    current: Layout = []
    size, position = 0, 0
    for piece in pieces:
        piece_bytes = len(piece.text.encode("utf-8")) + len(COMPREHEND_SEPARATOR)
        if current and size + piece_bytes > budget:
            requests.append((COMPREHEND_SEPARATOR.join(p.text for _, p in current), current))
            current, size, position = [], 0, 0
        current.append((position, piece))
        size += piece_bytes
        position += len(piece.text) + len(COMPREHEND_SEPARATOR)
    if current:
        requests.append((COMPREHEND_SEPARATOR.join(p.text for _, p in current), current))
    return requests


def comprehend_units(request_text: str) -> int:
    return max(3, -(-len(request_text) // 100))


def unpack_entities(
    entities: Iterable[dict[str, object]],
    layout: Layout,
    min_score: float,
) -> Iterator[tuple[int, Span]]:
    """Comprehend's entities of one request as spans of the input texts (text index, span)."""
    for entity in entities:
        kind = str(entity.get("Type"))
        score = entity.get("Score")
        if kind in COMPREHEND_IGNORED or not isinstance(score, int | float) or score < min_score:
            continue
        begin, end = int(entity["BeginOffset"]), int(entity["EndOffset"])  # type: ignore[call-overload]
        for position, piece in layout:
            if position <= begin < position + len(piece.text):
                local_end = min(end, position + len(piece.text))
                yield (
                    piece.text_index,
                    Span(
                        piece.offset + begin - position,
                        piece.offset + local_end - position,
                        COMPREHEND_PLACEHOLDERS.get(kind, "{{pii}}"),
                        "comprehend",
                    ),
                )
                break

"""The ProviderOrgs and ApiCallerOrgs parameters' AllowedPattern accept exactly what the settings
accept (PROVIDER_ORGS_JSON, API_CALLER_ORGS_JSON), but for a key given twice, which only the settings
can see (README). CloudFormation matches AllowedPattern against the whole value with Java's
java.util.regex, where `\\s` is ASCII whitespace with VT and FF, JSON's is space, tab, LF and CR, and
Python's `str.isspace()` takes the Unicode spaces too: a pattern written with `\\s` let deploy an
account id followed by a no-break space, or a value ending in VT, that every function then refused.

The pattern is checked twice: with Python's `re`, once no construct whose meaning differs between
the two engines is left in it (so CI without Java still checks every case), and with Java itself
when `javac` and `java` are installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from flywheel.local.template import load_template
from flywheel.settings import ConfigurationError, Settings
from tests.conftest import ROOT

VARIABLES = {"ProviderOrgs": "PROVIDER_ORGS_JSON", "ApiCallerOrgs": "API_CALLER_ORGS_JSON"}
ROLE = "arn:aws:iam::123456789012:role/acme-sender"


@cache
def pattern(parameter: str) -> str:
    return str(load_template(ROOT / "template.yaml")["Parameters"][parameter]["AllowedPattern"])


def settings_accept(parameter: str, value: str) -> bool:
    try:
        Settings.from_env({VARIABLES[parameter]: value})
    except ConfigurationError:
        return False
    return True


def storable(value: str) -> bool:  # CloudFormation takes UTF-8 text: no lone surrogates
    return not any(unicodedata.category(c) == "Cs" for c in value)


# ---- the values compared ------------------------------------------------------------------------

# every character a JSON text, Java's \s or Python's str.isspace() may call whitespace, and a few
# invisible ones that none does
SPACES = sorted({c for c in map(chr, range(0x3001)) if c.isspace()} | {"\x0b", "\x0c", "\x00", "\u200b", "\ufeff"})


def _provider_orgs_values() -> list[str]:
    values = [
        "",
        " ",
        "{}",
        " { } ",
        '{"hubspot:5799819": "acme"}',
        '{"hubspot:5799819":"acme","pipedrive:*":"beta"}',
        '{"calendly:https://api.calendly.com/organizations/AB12": "org.one"}',
        '{"sendgrid_inbound:reply.acme.example": "acme", "salesforce:00D7F00000107Xs": "acme"}',
        '{"hubspot:5799819": "acme",}',
        '{"hubspot:5799819": "acme"',
        '{"zoho:1": "acme"}',
        '{"hubspot:1": "-acme"}',
        '["hubspot:1"]',
        # what the review found deployable but refused by every function, or the other way round
        '{"hubspot:5799819\u00a0": "acme"}',
        '{"hubspot:\u20035799819": "acme"}',
        '{"hubspot:123\\u0020": "acme"}',
        '{"hubspot:5799819":"acme"}\x0b',
        '{"salesforce:00D\\/x": "acme"}',
        '{"hubspot:5799819": "ac\\/me"}',
        '{"hubspot:5799819": "\\u0061cme"}',
        '{"hubspot:57\\"99": "acme"}',
        '{"hubspot:57\\\\99": "acme"}',
    ]
    # every character of the first planes (all the spaces are below U+3001) and a few beyond, in an
    # account id: the one place either side takes more than ASCII
    chars = [chr(c) for c in range(0x3001)] + ["\ud7ff", "\ue000", "\ufeff", "\uffff", "\U0001f600", "\U0010ffff"]
    values += [f'{{"hubspot:57{c}99": "acme"}}' for c in chars]
    # every kind of whitespace between every two tokens
    tokens = ["{", '"hubspot:1"', ":", '"acme"', ",", '"pipedrive:*"', ":", '"beta"', "}"]
    for space in SPACES:
        for gap in range(len(tokens) + 1):
            values.append("".join(tokens[:gap]) + space + "".join(tokens[gap:]))
        values.append(space)  # nothing but whitespace
    return [v for v in values if storable(v)]


def _api_caller_orgs_values() -> list[str]:
    values = [
        "",
        " ",
        "{}",
        json.dumps({ROLE: ["acme"], "arn:aws:iam::123456789012:role/platform/backend": ["*"]}),
        json.dumps({"arn:aws:iam::123456789012:user/bob": ["acme", "globex"]}),
        json.dumps({"arn:aws:iam::123456789012:role/a/b/acme-sender": ["acme"]}),
        f'{{"{ROLE}": ["acme"],}}',
        json.dumps({ROLE: []}),
        json.dumps({"arn:aws:iam::123456789012:root": ["acme"]}),
        # what the review found deployable but refused by every function, or the other way round
        f'{{"{ROLE}": ["acme"]}}\x0b',
        f'\x0c{{"{ROLE}": ["acme"]}}',
        f'{{"{ROLE}": ["ac\\/me"]}}',
        '{"arn:aws:iam::123456789012:role\\/acme-sender": ["acme"]}',
        f'{{"{ROLE}": ["\\u0061cme"]}}',
        f'{{"{ROLE}": ["acme\\u0020"]}}',
    ]
    for c in map(chr, range(0x3001)):  # in a path, a name and an org_id (ASCII classes on both sides)
        values += [
            json.dumps({f"arn:aws:iam::123456789012:role/p{c}q/acme-sender": ["acme"]}, ensure_ascii=False),
            json.dumps({f"arn:aws:iam::123456789012:role/acme{c}sender": ["acme"]}, ensure_ascii=False),
            json.dumps({ROLE: [f"ac{c}me"]}, ensure_ascii=False),
        ]
    ops = '"arn:aws:iam::123456789012:role/ops"'
    tokens = ["{", f'"{ROLE}"', ":", "[", '"acme"', ",", '"globex"', "]", ",", ops, ":", "[", '"*"', "]", "}"]
    for space in SPACES:
        for gap in range(len(tokens) + 1):
            values.append("".join(tokens[:gap]) + space + "".join(tokens[gap:]))
        values.append(space)  # nothing but whitespace: "no mapping" only when it is JSON's
    return [v for v in values if storable(v)]


VALUES = {"ProviderOrgs": _provider_orgs_values(), "ApiCallerOrgs": _api_caller_orgs_values()}

# what no pattern can see (it would have to compare keys): refused when the settings load (README)
A_KEY_GIVEN_TWICE = {
    "ProviderOrgs": ['{"hubspot:5799819": "acme", "hubspot:5799819": "globex"}'],
    "ApiCallerOrgs": [
        f'{{"{ROLE}": ["acme"], "{ROLE}": ["*"]}}',
        f'{{"{ROLE}": ["acme"], "arn:aws:iam::123456789012:role/Acme-Sender": ["globex"]}}',
        f'{{"{ROLE}": ["acme"], "arn:aws:iam::123456789012:role/senders/acme-sender": ["globex"]}}',
    ],
}


def _disagreements(parameter: str, deploy_accepts: list[bool]) -> list[str]:
    values = VALUES[parameter] + A_KEY_GIVEN_TWICE[parameter]
    found = []
    for value, deploy in zip(values, deploy_accepts, strict=True):
        settings = settings_accept(parameter, value)
        agree = (deploy and not settings) if value in A_KEY_GIVEN_TWICE[parameter] else deploy == settings
        if not agree:
            found.append(
                f"deploy {'accepts' if deploy else 'refuses'}, settings {'accept' if settings else 'refuse'}: {value!r}"
            )
    return found


# ---- Python's re, where it means what Java's regex means ---------------------------------------

# escapes both engines read alike; no shorthand class (\s, \w, \d, \b, \h, \R, \p{...}, \z, \Z ...)
SAME_ESCAPES = re.compile(r"\\(?:[{}\[\]*\\/^$|()?+.\-]|[tnr]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})")


def _constructs_read_alike(regex: str) -> list[str]:
    """What in `regex` Java and Python would read differently: any other escape, `.` outside a class
    (Java's leaves out more line terminators), inline flags, and inside a class an unescaped `[`
    (Java: a union) or `&&` (Java: an intersection)."""
    problems, i, in_class = [], 0, False
    while i < len(regex):
        if regex[i] == "\\":
            escape = SAME_ESCAPES.match(regex, i)
            if escape is None:
                problems.append(regex[i : i + 2])
                i += 2
                continue
            i = escape.end()
            continue
        if in_class:
            if regex[i] == "[" or regex.startswith("&&", i):
                problems.append(regex[i : i + 2])
            elif regex[i] == "]" and regex[i - 1] not in "[^":
                in_class = False
        elif regex[i] == "[":
            in_class = True
        elif regex[i] == "." or regex.startswith("(?", i) and not regex.startswith("(?:", i):
            problems.append(regex[i : i + 3])
        i += 1
    return problems


@pytest.mark.parametrize("parameter", sorted(VARIABLES))
def test_the_pattern_uses_only_what_java_and_python_read_alike(parameter: str) -> None:
    assert _constructs_read_alike(pattern(parameter)) == []
    # what the check finds: the old pattern's \s, and the other constructs Java reads its own way
    assert _constructs_read_alike('^\\s*\\{[^"\\s]+\\}$') == ["\\s", "\\s"]
    assert _constructs_read_alike("(?i)a.b[a[b]][a&&b]\\z") == ["(?i", ".b[", "[b", "&&", "\\z"]


@pytest.mark.parametrize("parameter", sorted(VARIABLES))
def test_the_pattern_accepts_what_the_settings_accept_python(parameter: str) -> None:
    compiled = re.compile(pattern(parameter))
    values = VALUES[parameter] + A_KEY_GIVEN_TWICE[parameter]
    assert _disagreements(parameter, [compiled.fullmatch(v) is not None for v in values]) == []


# ---- Java's regex itself -------------------------------------------------------------------------

MATCH_JAVA = """
import java.nio.charset.StandardCharsets; import java.nio.file.*; import java.util.HexFormat;
import java.util.regex.Pattern;
// args: a file holding the pattern, a file of values (one a line, hex-encoded UTF-8); prints 1 or 0 a line
public class Match { public static void main(String[] a) throws Exception {
  Pattern p = Pattern.compile(Files.readString(Paths.get(a[0]), StandardCharsets.UTF_8));
  StringBuilder out = new StringBuilder();
  for (String line : Files.readAllLines(Paths.get(a[1]))) {
    String value = new String(HexFormat.of().parseHex(line), StandardCharsets.UTF_8);
    out.append(p.matcher(value).matches() ? "1\\n" : "0\\n");  // the whole value, as CloudFormation
  }
  System.out.print(out);
}}
"""


@pytest.fixture(scope="module")
def java_match(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no Java here: the Python test above checks the same cases")
    folder = tmp_path_factory.mktemp("java")
    (folder / "Match.java").write_text(MATCH_JAVA)
    subprocess.run(["javac", "-d", str(folder), str(folder / "Match.java")], check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("parameter", sorted(VARIABLES))
def test_the_pattern_accepts_what_the_settings_accept_java(parameter: str, java_match: Path) -> None:
    values = VALUES[parameter] + A_KEY_GIVEN_TWICE[parameter]
    (java_match / "pattern.txt").write_text(pattern(parameter), encoding="utf-8")
    (java_match / "values.txt").write_text("".join(v.encode().hex() + "\n" for v in values))
    run = subprocess.run(
        ["java", "-cp", str(java_match), "Match", str(java_match / "pattern.txt"), str(java_match / "values.txt")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    deploy = [line == "1" for line in run.stdout.split()]
    assert len(deploy) == len(values)
    assert _disagreements(parameter, deploy) == []

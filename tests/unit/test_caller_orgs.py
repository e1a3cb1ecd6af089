"""API_CALLER_ORGS_JSON read and applied (flywheel.domain.callers): principals matched by account and
role (or user) name, whatever the path and the session; a malformed mapping refused when the settings
load, naming the variable and never a principal or an organisation; the template parameter's
AllowedPattern refusing what the settings refuse (IAM's own name and path limits), but for one principal
named twice, which only the settings can see."""

from __future__ import annotations

import inspect
import json
import re

import pytest
from pydantic import ValidationError

from flywheel.api import org_scope
from flywheel.domain.callers import (
    KEY,
    parse_caller_orgs,
    principal_key,
    refusal,
    refusal_before_validation,
    requested_orgs,
    values_at,
)
from flywheel.local.invoke import load_handler
from flywheel.local.template import load_template, read_template
from flywheel.models.base import Strict
from flywheel.models.messages import MessageBatch, MessageIn
from flywheel.settings import ConfigurationError, Settings
from tests.conftest import ROOT

ROLE = "arn:aws:iam::123456789012:role/acme-sender"


@pytest.mark.parametrize(
    ("arn", "key"),
    [
        ("arn:aws:sts::123456789012:assumed-role/acme-sender/worker-7", ROLE),
        ("arn:aws:sts::123456789012:assumed-role/acme-sender/ana@example.com", ROLE),
        ("arn:aws:iam::123456789012:role/senders/eu/acme-sender", ROLE),
        (ROLE, ROLE),
        ("arn:aws:iam::123456789012:user/integrations/bob", "arn:aws:iam::123456789012:user/bob"),
        ("arn:aws-cn:sts::123456789012:assumed-role/x/y", "arn:aws-cn:iam::123456789012:role/x"),
        ("arn:aws:iam::123456789012:root", None),
        ("arn:aws:sts::123456789012:federated-user/bob", None),
        ("arn:aws:sts::12345678901:assumed-role/acme-sender/s", None),  # 11 digits
        ("", None),
        # IAM names are unique whatever their case: one role, one key
        ("arn:aws:sts::123456789012:assumed-role/Acme-Sender/s", ROLE),
        ("arn:aws:iam::123456789012:role/Senders/ACME-SENDER", ROLE),
        # Python's `$` would take a trailing newline
        ("arn:aws:sts::123456789012:assumed-role/acme-sender/s\n", None),
        (ROLE + "\n", None),
        # IAM's limits: a name of 64 characters at most, ASCII; a path of printable ASCII
        ("arn:aws:iam::123456789012:role/" + "a" * 64, "arn:aws:iam::123456789012:role/" + "a" * 64),
        ("arn:aws:iam::123456789012:role/" + "a" * 65, None),
        ("arn:aws:iam::123456789012:role/acmé-sender", None),
        ("arn:aws:iam::123456789012:role/" + "p" * 510 + "/acme-sender", ROLE),
        ("arn:aws:iam::123456789012:role/" + "p" * 511 + "/acme-sender", None),  # a 513-character path
        ("arn:aws:iam::123456789012:role/acme-sender/", None),
    ],
)
def test_principal_key(arn: str, key: str | None) -> None:
    assert principal_key(arn) == key


def test_refusal() -> None:
    mapping = parse_caller_orgs(json.dumps({ROLE: ["acme", "initech"], "arn:aws:iam::123456789012:role/ops": ["*"]}))
    session = "arn:aws:sts::123456789012:assumed-role/acme-sender/s"
    assert refusal(mapping, session, {"acme"}) is None
    assert refusal(mapping, session, {"acme", "initech"}) is None
    assert "organisation globex" in (refusal(mapping, session, {"acme", "globex"}) or "")
    assert "platform routes" in (refusal(mapping, session, set()) or "")
    ops = "arn:aws:sts::123456789012:assumed-role/ops/s"
    assert refusal(mapping, ops, {"globex"}) is None and refusal(mapping, ops, set()) is None
    assert "not in API_CALLER_ORGS_JSON" in (
        refusal(mapping, "arn:aws:sts::999999999999:assumed-role/ops/s", set()) or "x"
    )
    assert refusal(mapping, None, {"acme"}) is not None
    assert refusal(mapping, "arn:aws:sts::999999999999:assumed-role/acme-sender/s", {"acme"}) is not None


def test_requested_orgs_reads_every_message_of_a_batch() -> None:
    def msg(org: str, i: int) -> dict[str, object]:
        return {
            "org_id": org,
            "campaign_id": "c",
            "lead_id": f"l{i}",
            "lead_email": f"l{i}@x.example",
            "body": "hi",
            "sent_at": "2026-11-20T09:00:00Z",
            "lead": {"extra": {"org_id": "not-an-org-the-request-acts-for"}},
        }

    batch = MessageBatch.model_validate({"messages": [msg("acme", 1), msg("globex", 2)]})
    assert requested_orgs({"body": batch}) == {"acme", "globex"}
    assert requested_orgs({"org_id": "acme", "limit": 10}) == {"acme"}
    assert requested_orgs({"limit": 10}) == set()


SECRET_LOOKING = "arn:aws:iam::123456789012:role/very-private-role-name"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{", "not valid JSON"),
        ('["acme"]', "must be a JSON object"),
        (json.dumps({"arn:aws:iam::123456789012:root": ["acme-private-org"]}), "key 1 is not an IAM role or user ARN"),
        (json.dumps({SECRET_LOOKING: []}), "the value of key 1 is not a non-empty list"),
        (json.dumps({SECRET_LOOKING: "acme-private-org"}), "the value of key 1"),
        (json.dumps({SECRET_LOOKING: ["acme private org"]}), "the value of key 1"),
        (
            json.dumps({SECRET_LOOKING: ["a"], "arn:aws:iam::123456789012:role/p/very-private-role-name": ["b"]}),
            "keys 1 and 2 name the same principal",
        ),
        # json.loads would keep the last of two equal keys: a later copy silently widens (or narrows)
        (
            f'{{"{SECRET_LOOKING}": ["acme-private-org"], "{SECRET_LOOKING}": ["*"]}}',
            "keys 1 and 2 are the same key",
        ),
        (
            json.dumps(
                {SECRET_LOOKING: ["*"], "arn:aws:iam::123456789012:role/Very-Private-Role-Name": ["acme-private-org"]}
            ),
            "keys 1 and 2 name the same principal",
        ),
        # a newline can be written only as an escape, which the settings refuse as the pattern does
        (json.dumps({SECRET_LOOKING: ["acme-private-org\n"]}), "has a backslash"),
        (json.dumps({"arn:aws:iam::123456789012:role/" + "very-private-role-name" * 3: ["a"]}), "key 1 is not"),
    ],
)
def test_a_malformed_mapping_is_refused_when_the_settings_load(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"API_CALLER_ORGS_JSON": value})
    assert list(refused.value.problems) == ["API_CALLER_ORGS_JSON"]
    said = str(refused.value)
    assert reason in said, said
    assert "very-private-role-name" not in said and "acme-private-org" not in said and "acme private" not in said


def test_a_mapping_in_a_secret_may_use_json_escapes() -> None:
    # no AllowedPattern reads API_CALLER_ORGS_ARN's secret: escapes there are decoded and checked
    escaped = '{"' + ROLE.replace("/", "\\/") + '": ["\\u0061cme"]}'  # as PHP's json_encode writes "/"
    assert parse_caller_orgs(escaped) == {ROLE: frozenset({"acme"})}
    with pytest.raises(ValueError, match="the value of key 1"):
        parse_caller_orgs(json.dumps({ROLE: ["acme\n"]}))
    with pytest.raises(ConfigurationError, match="has a backslash"):  # inline, as the pattern
        Settings.from_env({"API_CALLER_ORGS_JSON": escaped})


def test_unset_or_empty_is_no_mapping() -> None:
    for value in (None, "", "  ", "{}"):
        env: dict[str, str] = {} if value is None else {"API_CALLER_ORGS_JSON": value}
        assert Settings.from_env(env).api_caller_orgs == {}


PREFIX = "arn:aws:iam::123456789012:role/"
# mappings the functions refuse that a looser pattern once let deploy, after which every IAM route failed
NOT_IAM_NAMES = {
    "a character IAM does not allow in a name": {PREFIX + "acme!sender": ["acme"]},
    "a trailing slash after the name": {PREFIX + "acme-sender/": ["acme"]},
    "a name over IAM's 64 characters": {PREFIX + "a" * 65: ["acme"]},
    "a non-ASCII name": {PREFIX + "acmé-sender": ["acme"]},
    "a path over IAM's 512 characters": {PREFIX + "p" * 511 + "/acme-sender": ["acme"]},
    "a path with a quote": {PREFIX + 'p"q/acme-sender': ["acme"]},
    "whitespace in a path": {PREFIX + "p q/acme-sender": ["acme"]},
}
# what no pattern can see (it would have to compare keys): refused when the settings load (README)
ONE_PRINCIPAL_TWICE = {
    "with and without its path": f'{{"{PREFIX}acme-sender": ["acme"], "{PREFIX}senders/acme-sender": ["acme"]}}',
    "in two cases": f'{{"{PREFIX}acme-sender": ["acme"], "{PREFIX}Acme-Sender": ["*"]}}',
    "the same key twice": f'{{"{PREFIX}acme-sender": ["acme"], "{PREFIX}acme-sender": ["*"]}}',
}


def test_the_template_pattern_is_the_settings_key_with_iams_limits() -> None:
    pattern = load_template(ROOT / "template.yaml")["Parameters"]["ApiCallerOrgs"]["AllowedPattern"]
    assert f'"{KEY}"' in pattern  # the very expression flywheel.domain.callers matches keys with
    compiled = re.compile(pattern)
    for case, mapping in NOT_IAM_NAMES.items():
        value = json.dumps(mapping, ensure_ascii=False)
        assert not compiled.fullmatch(value), case
        with pytest.raises(ConfigurationError):
            Settings.from_env({"API_CALLER_ORGS_JSON": value})
    # the longest names and paths IAM allows pass both
    longest = json.dumps(
        {PREFIX + "p" * 510 + "/" + "n" * 64: ["acme"], "arn:aws:iam::123456789012:user/" + "u" * 64: ["*"]}
    )
    assert compiled.fullmatch(longest)
    Settings.from_env({"API_CALLER_ORGS_JSON": longest})
    for case, value in ONE_PRINCIPAL_TWICE.items():
        assert compiled.fullmatch(value), case
        with pytest.raises(ConfigurationError) as refused:
            Settings.from_env({"API_CALLER_ORGS_JSON": value})
        assert "keys 1 and 2" in str(refused.value) and "acme-sender" not in str(refused.value), case


def test_the_template_parameter_refuses_what_the_settings_refuse() -> None:
    parameter = load_template(ROOT / "template.yaml")["Parameters"]["ApiCallerOrgs"]
    pattern = re.compile(parameter["AllowedPattern"])
    accepted = [
        "",
        "{}",
        json.dumps({ROLE: ["acme"], "arn:aws:iam::123456789012:role/platform/backend": ["*"]}),
        json.dumps({"arn:aws:iam::123456789012:user/bob": ["acme", "globex"]}),
    ]
    refused = [
        '{"arn:aws:iam::123456789012:role/x": ["acme"],}',
        json.dumps({"arn:aws:iam::123456789012:root": ["acme"]}),
        json.dumps({ROLE: []}),
        json.dumps({ROLE: "acme"}),
        json.dumps({"acme-sender": ["acme"]}),
    ]
    for value in accepted:
        assert pattern.fullmatch(value), value
        Settings.from_env({"API_CALLER_ORGS_JSON": value})
    for value in refused:
        assert not pattern.fullmatch(value), value
        with pytest.raises(ConfigurationError):
            Settings.from_env({"API_CALLER_ORGS_JSON": value})


def test_the_body_paths_of_an_org_id_follow_the_model_never_a_free_form_field() -> None:
    """Where POST /messages names organisations before validation: the single message's org_id and
    each batch message's, never a key of `agent_decisions` or `lead.extra` (free-form JSON)."""
    spec = read_template(ROOT / "template.yaml").functions()["MessagesFunction"]
    app = inspect.unwrap(load_handler(spec)).__globals__["app"]
    route = next(r for r in app._static_routes if r.path == "/messages" and "POST" in r.method)
    scope = org_scope(route)
    assert scope.body_paths == (("messages", "*", "org_id"), ("org_id",)) and not scope.query
    body = {
        "org_id": "acme",
        "agent_decisions": {"org_id": "globex"},
        "lead": {"extra": {"org_id": "initech"}},
        "messages": [{"org_id": "umbrella"}, "not a message", {"org_id": 5}, {}],
    }
    assert values_at(body, scope.body_paths) == ["umbrella", 5, "acme"]
    assert values_at([1, 2], scope.body_paths) == [] and values_at({"messages": "x"}, scope.body_paths) == []


def test_refusal_before_validation() -> None:
    mapping = parse_caller_orgs(json.dumps({ROLE: ["acme"], "arn:aws:iam::123456789012:role/ops": ["*"]}))
    session = "arn:aws:sts::123456789012:assumed-role/acme-sender/s"
    ops = "arn:aws:sts::123456789012:assumed-role/ops/s"
    stranger = "arn:aws:sts::123456789012:assumed-role/nobody/s"
    # a caller the mapping does not name: refused whatever the request names, org-scoped or not
    for org_scoped, named in ((True, ["acme"]), (True, []), (False, [])):
        assert "may act for no organisation" in (
            refusal_before_validation(mapping, stranger, org_scoped=org_scoped, named=named) or ""
        )
        assert refusal_before_validation(mapping, ops, org_scoped=org_scoped, named=["globex"]) is None
    assert "platform routes" in (refusal_before_validation(mapping, session, org_scoped=False, named=["acme"]) or "")
    # nothing readable named (missing, empty, not a string): validation answers next
    assert refusal_before_validation(mapping, session, org_scoped=True, named=[None, "", 5, ["globex"]]) is None
    assert refusal_before_validation(mapping, session, org_scoped=True, named=["acme", "acme"]) is None
    reason = refusal_before_validation(mapping, session, org_scoped=True, named=["acme", "globex", "x" * 5000])
    assert reason is not None and reason.startswith(f"{ROLE} may not act for organisation globex, ")
    assert len(reason) < 200  # a value that is no identifier is shown short and quoted
    many = refusal_before_validation(mapping, session, org_scoped=True, named=[f"org{i}" for i in range(30)])
    assert many is not None and many.endswith(" and 10 more")


@pytest.mark.parametrize("padded", [" acme", "acme ", "acme\n", "\tacme", "\u3000acme\u2029", "acme\x1f"])
def test_an_org_id_is_compared_as_validation_will_read_it(padded: str) -> None:
    """The body models strip surrounding whitespace (" acme" is stored as acme): acme's caller is not
    refused its own organisation before validation, and the same padding never hides another's."""
    mapping = parse_caller_orgs(json.dumps({ROLE: ["acme"]}))
    session = "arn:aws:sts::123456789012:assumed-role/acme-sender/s"
    assert refusal_before_validation(mapping, session, org_scoped=True, named=[padded]) is None
    foreign = padded.replace("acme", "globex")
    reason = refusal_before_validation(mapping, session, org_scoped=True, named=["acme", foreign])
    assert reason is not None and "may not act for organisation" in reason
    # blank: names nothing (validation answers 422)
    assert refusal_before_validation(mapping, session, org_scoped=True, named=[" ", "\n"]) is None


def test_the_stripping_compared_covers_what_validation_strips() -> None:
    """str.strip() removes every character the body models' str_strip_whitespace removes, so a value
    a message validates to acme is compared as acme; what it removes beyond (U+001C-1F) is kept by
    validation, where the org_id pattern refuses it: never another organisation's id let through."""

    class Stripping(Strict):
        org_id: str

    # pydantic-core strips Unicode White_Space, all of it below U+3001 (NUL: the model refuses it)
    stripped = {c for c in map(chr, range(1, 0x3001)) if Stripping(org_id=c + "acme" + c).org_id == "acme"}
    python = {c for c in map(chr, range(0x110000)) if c.isspace()}
    assert len(stripped) >= 25 and stripped <= python
    for extra in sorted(python - stripped):
        assert _validated_org_id(extra + "acme") is None, repr(extra)
    assert _validated_org_id(" acme\n") == "acme"


def _validated_org_id(org_id: str) -> str | None:
    """The org_id a message validates to, or None when validation refuses it (for its org_id)."""
    message = json.loads(json.loads((ROOT / "events" / "messages_register_single.json").read_text())["body"])
    try:
        return MessageIn.model_validate({**message, "org_id": org_id}).org_id
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("org_id",)], exc.errors()
        return None

"""Settings: an invalid variable is refused when the settings load, as a ConfigurationError naming
it and why (never its value); each thread of the local API can read its own function's settings."""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import pytest

from flywheel.errors import FlywheelError
from flywheel.local.seed import PROVIDER_ORGS
from flywheel.local.signing import SendGridSigner
from flywheel.local.template import read_template
from flywheel.settings import ConfigurationError, Settings, get_settings, reset_settings, settings_environment
from tests.webhook_helpers import DEEPLY_NESTED, UNSUPPORTED_CURVE_KEYS


def refused(environ: dict[str, str]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    return caught.value


def test_an_invalid_setting_names_the_variable_and_why_never_its_value() -> None:
    error = refused({"SENDGRID_MAX_AGE_S": "3600", "DATABASE_PORT": "hunter2-port"})
    assert set(error.problems) == {"SENDGRID_MAX_AGE_S", "DATABASE_PORT"}
    assert "90000" in error.problems["SENDGRID_MAX_AGE_S"]  # the bound it breaks
    assert isinstance(error, FlywheelError) and error.code == "configuration_error"
    assert error.message == "invalid configuration: DATABASE_PORT, SENDGRID_MAX_AGE_S"
    # what a queue or schedule function logs when it fails: the names and reasons
    assert "SENDGRID_MAX_AGE_S: Input should be greater than or equal to 90000" in str(error)
    for text in (str(error), error.message, repr(error.details)):
        assert "3600" not in text and "hunter2" not in text


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('{"hubspot:5799819": "acme",}', "not valid JSON"),  # the reviewer's trailing comma
        ('["hubspot:5799819", "acme"]', "must be a JSON object"),
        ('{"hubspot:5799819": 7}', "organisation of key 1"),
        ('{"hubspot:5799819": "acme", "salesforce:00D7F00000107Xs": ""}', "organisation of key 2"),
        ('{"hubspot": "acme"}', "key 1"),
        ('{"hubsopt:5799819": "acme"}', "key 1"),  # a misspelt provider maps nothing: refused
        ('{"hubspot:": "acme"}', "key 1"),
        ('{"hubspot:5799819": "a c m e"}', "organisation of key 1"),
        # json.loads would keep the second silently: a portal moved to another organisation by a copy
        (
            '{"hubspot:5799819": "acme", "salesforce:00D7F00000107Xs": "acme", "hubspot:5799819": "globex"}',
            "keys 1 and 3",
        ),
    ],
)
def test_provider_orgs_are_parsed_and_checked_when_the_settings_load(value: str, why: str) -> None:
    error = refused({"PROVIDER_ORGS_JSON": value})
    assert list(error.problems) == ["PROVIDER_ORGS_JSON"]
    assert why in error.problems["PROVIDER_ORGS_JSON"]
    assert "5799819" not in str(error) and "00D7F" not in str(error)


def test_documented_provider_orgs_load() -> None:
    settings = Settings.from_env(
        {
            "PROVIDER_ORGS_JSON": '{"hubspot:5799819": "acme", "salesforce:00D7F00000107Xs": "acme", '
            '"pipedrive:*": "beta", "sendgrid_inbound:reply.acme.example": "acme", "calendly:https://api.calendly'
            '.com/users/X": "acme", "sendgrid:*": "acme"}'
        }
    )
    assert settings.provider_org("hubspot", 5799819) == "acme"
    assert settings.provider_org("pipedrive", 1) == "beta"
    assert settings.provider_org("hubspot", 1) is None
    assert Settings.from_env({}).provider_orgs == {}


def test_a_thread_reads_the_settings_of_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPORT_WINDOW_DAYS", "50")
    reset_settings()
    seen: dict[str, object] = {}

    def request(name: str, environ: dict[str, str]) -> None:
        with settings_environment(environ):
            seen[name] = get_settings().report_window_days
            try:
                with settings_environment({"REPORT_WINDOW_DAYS": "3"}):
                    get_settings()
            except ConfigurationError as exc:
                seen[f"{name} invalid"] = list(exc.problems)

    try:
        threads = [
            threading.Thread(target=request, args=(n, {"REPORT_WINDOW_DAYS": d})) for n, d in [("a", "60"), ("b", "70")]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == {"a": 60, "b": 70, "a invalid": ["REPORT_WINDOW_DAYS"], "b invalid": ["REPORT_WINDOW_DAYS"]}
        assert get_settings().report_window_days == 50  # the process's own, outside any block
    finally:
        reset_settings()


@pytest.mark.parametrize(
    "value",
    [
        "{}",
        " { } ",
        '{"hubspot:5799819": "acme"}',
        '{"hubspot:5799819":"acme","pipedrive:*":"beta"}',
        '{"calendly:https://api.calendly.com/organizations/AB12": "org.one"}',
        '{"hubspot:5799819": "acme",}',
        '{"hubspot:5799819": "acme"',
        '{"hubspot:579 9819": "acme"}',
        '{"zoho:1": "acme"}',
        '{"hubspot:1": ""}',
        '{"hubspot:1": "-acme"}',
        '["hubspot:1"]',
    ],
)
def test_the_templates_allowed_pattern_accepts_what_the_settings_accept(value: str) -> None:
    """The ProviderOrgs parameter refuses at deploy what every function would refuse at run time."""
    template = read_template(Path(__file__).resolve().parents[2] / "template.yaml")
    pattern = template.body["Parameters"]["ProviderOrgs"]["AllowedPattern"]
    try:
        Settings.from_env({"PROVIDER_ORGS_JSON": value})
        accepted = True
    except ConfigurationError:
        accepted = False
    assert bool(re.fullmatch(pattern, value)) is accepted
    assert re.fullmatch(pattern, json.dumps(PROVIDER_ORGS))  # the samples' value (the local stack's)


IN_HOUSE_KEY = base64.b64encode(bytes(range(31))).decode()  # ends "Hg==": 4 bits of its last "g" unused
IN_HOUSE_KEY_ALT = IN_HOUSE_KEY[:-3] + "h=="  # the same key bytes, spelled differently
TWO_ORGS = {"salesforce:00D7F00000107Xs": "acme", "salesforce:00DGL0BEX000001": "globex", "pipedrive:1": "acme"}
SENDGRID_KEY, SENDGRID_KEY_NEW = SendGridSigner().public_key_b64, SendGridSigner().public_key_b64


def compressed(key_b64: str) -> str:
    """The same SendGrid key as a SubjectPublicKeyInfo with a compressed point: other DER bytes,
    the very same key (it verifies the same signatures)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_der_public_key(base64.b64decode(key_b64))
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    inner = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107") + b"\x03" + bytes([len(point) + 1]) + b"\x00"
    return base64.b64encode(b"\x30" + bytes([len(inner) + len(point)]) + inner + point).decode()


@pytest.mark.parametrize(
    ("secrets", "why"),
    [
        # one Salesforce token for two organisations: whoever holds it could write into both
        ({"salesforce_token": "sf-shared-1"}, "salesforce_token: one value for every organisation"),
        # the `*` default counts as an organisation of the provider
        ({"calendly_signing_key": "cal-shared-2"}, "calendly accounts to 2 organisations (acme, globex)"),
        ({"salesforce_token": {"acme": "sf-same-3", "globex": "sf-same-3"}}, "the same value"),
        ({"salesforce_token": {"acme": ""}}, "non-empty string"),
        ({"salesforce_token": {"a c m e": "sf-4"}}, "org_id"),
        # a rotation list of one credential is still one credential for every organisation
        ({"salesforce_token": ["sf-5", "sf-5b"]}, "salesforce_token: one value for every organisation"),
        ({"salesforce_token": 5}, "must be a string, a list of strings (during a rotation) or a JSON object"),
        ({"pipedrive_username": {"acme": "u"}, "pipedrive_password": "pw-6"}, "both map the same organisations"),
        ({"pipedrive_username": {"acme": "u", "b": "u"}, "pipedrive_password": {"acme": "p7", "b": "p7"}}, "same pair"),
        # Basic auth sends "user:password": these two pairs are one login ("a:b:p8")
        (
            {"pipedrive_username": {"acme": "a:b", "b": "a"}, "pipedrive_password": {"acme": "p8", "b": "b:p8"}},
            "same pair",
        ),
        # one Standard Webhooks key, written with and without `whsec_`, or in another base64 spelling
        ({"crm_webhook_secret": {"acme": "whsec_" + IN_HOUSE_KEY, "globex": IN_HOUSE_KEY}}, "the same value"),
        ({"crm_webhook_secret": {"acme": IN_HOUSE_KEY, "globex": IN_HOUSE_KEY_ALT}}, "the same value"),
        # one login and per-organisation API tokens: the login has no organisation to pick a token by
        ({"pipedrive_username": "u", "pipedrive_password": "p9", "pipedrive_api_token": {"acme": "tok-9"}}, "form"),
        # per-organisation logins and one API token: one account's persons read for every organisation
        (
            {
                "pipedrive_username": {"acme": "u", "b": "v"},
                "pipedrive_password": {"acme": "p10", "b": "p11"},
                "pipedrive_api_token": "tok-10",
            },
            "pipedrive_api_token must take the login's form",
        ),
    ],
)
def test_webhook_credentials_must_fit_provider_orgs(secrets: dict, why: str) -> None:
    orgs = {**TWO_ORGS, "calendly:*": "acme", "calendly:https://api.calendly.com/users/G": "globex"}
    error = refused({"PROVIDER_ORGS_JSON": json.dumps(orgs), "WEBHOOK_SECRETS_JSON": json.dumps(secrets)})
    assert list(error.problems) == ["WEBHOOK_SECRETS_JSON"]
    assert why in error.problems["WEBHOOK_SECRETS_JSON"]
    for value in (
        "sf-shared-1",
        "cal-shared-2",
        "sf-same-3",
        "sf-5",
        "pw-6",
        "p7",
        "p8",
        IN_HOUSE_KEY,
        "tok-9",
        "tok-10",
    ):
        assert value not in str(error) and value not in error.message


def test_webhook_credentials_that_fit_load() -> None:
    per_org = {
        "salesforce_token": {"acme": "sf-a", "globex": "sf-g"},
        "pipedrive_username": "pd",  # ProviderOrgs maps pipedrive to acme alone: one value is fine
        "pipedrive_password": "pw",
        "pipedrive_api_token": "pd-token",  # one login, one API token
        "hubspot_client_secret": "app-secret",  # the app's: shared by every portal, the portal map decides
        "crm_webhook_secret": "whsec_c2VjcmV0",  # one in-house system speaking for every organisation
    }
    env = {"PROVIDER_ORGS_JSON": json.dumps(TWO_ORGS), "WEBHOOK_SECRETS_JSON": json.dumps(per_org)}
    assert Settings.from_env(env).provider_org("salesforce", "00DGL0BEX000001") == "globex"
    assert list(refused({**env, "WEBHOOK_SECRETS_JSON": "{"}).problems) == ["WEBHOOK_SECRETS_JSON"]


def test_each_credentials_problems_are_filed_under_its_own_name() -> None:
    """clients.secrets refuses only the credentials a route reads: one provider's unsplit value must
    not stop the others (README "One organisation's credential never writes into another")."""
    from flywheel.settings import webhook_secret_problems, webhook_secret_problems_by_name

    secrets = {
        "salesforce_token": "sf-shared",
        "sendgrid_public_key": {"acme": SENDGRID_KEY, "globex": SENDGRID_KEY_NEW},
        "pipedrive_username": {"acme": "u"},
        "pipedrive_password": "pw",
        "hubspot_client_secret": "app-secret",
    }
    problems = webhook_secret_problems_by_name(secrets, TWO_ORGS)
    assert set(problems) == {"salesforce_token", "pipedrive_username", "pipedrive_password"}
    assert problems["pipedrive_username"] == problems["pipedrive_password"]
    assert webhook_secret_problems(secrets, TWO_ORGS) == [
        *problems["salesforce_token"],
        *problems["pipedrive_username"],
    ]
    assert webhook_secret_problems_by_name(["not", "an", "object"], TWO_ORGS) == {
        None: ["must be a JSON object of secret name -> value"]
    }


# --- rotation: a credential may be a list of values, all accepted while it is rotated --------------


@pytest.mark.parametrize(
    ("secrets", "why"),
    [
        ({"salesforce_token": {"acme": [], "globex": "sf-g"}}, "salesforce_token of acme is an empty list"),
        ({"calendly_signing_key": []}, "calendly_signing_key is an empty list"),
        ({"salesforce_token": {"acme": ["sf-new", "sf-new"], "globex": "sf-g"}}, "lists the same value twice"),
        # one Standard Webhooks key in two spellings is one value listed twice
        ({"crm_webhook_secret": ["whsec_" + IN_HOUSE_KEY, IN_HOUSE_KEY_ALT]}, "crm_webhook_secret lists the same"),
        ({"salesforce_token": {"acme": ["sf-new", ""], "globex": "sf-g"}}, "must list non-empty strings"),
        ({"salesforce_token": {"acme": ["sf-new", 7], "globex": "sf-g"}}, "must list non-empty strings"),
        ({"salesforce_token": {"acme": {"x": "sf-new"}, "globex": "sf-g"}}, "salesforce_token of acme must be"),
        # acme's old token is globex's: whoever holds it could write into either
        ({"salesforce_token": {"acme": ["sf-new", "sf-old"], "globex": ["sf-old"]}}, "two organisations the same"),
        ({"salesforce_token": {"acme": ["sf-new", "sf-old"], "globex": "sf-old"}}, "two organisations the same"),
        # the CRM API tokens are sent, not matched: a list would not say which to send
        ({"pipedrive_api_token": ["tok-new", "tok-old"]}, "pipedrive_api_token is sent to the provider's API"),
        ({"hubspot_access_token": ["pat-new", "pat-old"]}, "hubspot_access_token is sent to the provider's API"),
        # the HubSpot client secret is the app's: one (list) for every portal, never per organisation
        ({"hubspot_client_secret": {"acme": "app"}}, "hubspot_client_secret must be a string, a list of strings"),
        ({"hubspot_client_secret": []}, "hubspot_client_secret is an empty list"),
        # a Pipedrive login rotates as a pair: two lists pair by position
        (
            {"pipedrive_username": ["u-new", "u-mid", "u-old"], "pipedrive_password": ["p-new", "p-old"]},
            "list different numbers of values",
        ),
        (
            {"pipedrive_username": ["u", "u"], "pipedrive_password": ["p-same", "p-same"]},
            "give the same login twice",
        ),
        (
            {
                "pipedrive_username": {"acme": ["u-new", "u"], "b": "u"},
                "pipedrive_password": {"acme": ["p-new", "p-old"], "b": "p-old"},
            },
            "give two organisations the same pair",
        ),
        # a one-value LIST is a list: it pairs by position (only a plain string goes with every value
        # of the other half), else the new user would log in with the old password too
        (
            {"pipedrive_username": ["u-new"], "pipedrive_password": ["p-new", "p-old"]},
            "pipedrive_username and pipedrive_password list different numbers of values",
        ),
        (
            {"pipedrive_username": {"acme": ["u-new", "u-old"]}, "pipedrive_password": {"acme": ["p-new"]}},
            "pipedrive_username and pipedrive_password of acme list different numbers of values",
        ),
        # a value that can never verify (the verifier refuses it on every request), named by position
        (
            {"crm_webhook_secret": ["whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-", "whsec_" + IN_HOUSE_KEY]},
            "crm_webhook_secret[0] is not a Standard Webhooks secret (not base64)",
        ),
        ({"crm_webhook_secret": "whsec_"}, "crm_webhook_secret is not a Standard Webhooks secret (an empty key)"),
        (
            {"sendgrid_public_key": {"acme": [SENDGRID_KEY_NEW, "c2VuZGdyaWQta2V5"], "globex": SENDGRID_KEY}},
            "sendgrid_public_key[1] of acme is not a SendGrid verification key (not a DER",
        ),
        ({"sendgrid_public_key": "p-old"}, "sendgrid_public_key is not a SendGrid verification key (not base64)"),
        # one SendGrid key in two spellings (an uncompressed and a compressed point) is one key
        (
            {"sendgrid_public_key": {"acme": [SENDGRID_KEY_NEW, SENDGRID_KEY], "globex": compressed(SENDGRID_KEY)}},
            "sendgrid_public_key gives two organisations the same value",
        ),
        ({"sendgrid_public_key": [SENDGRID_KEY, compressed(SENDGRID_KEY)]}, "sendgrid_public_key lists the same value"),
        # an EC key on a curve cryptography cannot load (UnsupportedAlgorithm, no ValueError): the settings
        # failed to load with it (every route 500, the deep health check included)
        (
            {"sendgrid_public_key": [UNSUPPORTED_CURVE_KEYS["SM2"], SENDGRID_KEY]},
            "sendgrid_public_key[0] is not a SendGrid verification key (not an EC P-256 public key)",
        ),
        (
            {"sendgrid_public_key": {"acme": UNSUPPORTED_CURVE_KEYS["brainpoolP160r1"], "globex": SENDGRID_KEY}},
            "sendgrid_public_key of acme is not a SendGrid verification key (not an EC P-256 public key)",
        ),
        # a lone UTF-16 surrogate (JSON's "\ud83d" without its pair): no request can carry it, and every
        # verifier encodes the value as UTF-8 (UnicodeEncodeError: a 500 for every organisation's delivery)
        ({"salesforce_token": {"acme": "\ud83d", "globex": "sf-g"}}, "salesforce_token of acme is not valid text"),
        ({"calendly_signing_key": ["cal-new", "cal-\udc00"]}, "calendly_signing_key[1] is not valid text"),
        ({"hubspot_client_secret": "app-\ud83d"}, "hubspot_client_secret is not valid text"),
        ({"pipedrive_username": "u", "pipedrive_password": "p-\ud83d"}, "pipedrive_password is not valid text"),
    ],
)
def test_a_malformed_rotation_list_is_a_configuration_error(secrets: dict, why: str) -> None:
    error = refused({"PROVIDER_ORGS_JSON": json.dumps(TWO_ORGS), "WEBHOOK_SECRETS_JSON": json.dumps(secrets)})
    assert list(error.problems) == ["WEBHOOK_SECRETS_JSON"]
    assert why in error.problems["WEBHOOK_SECRETS_JSON"], error.problems
    for value in ("sf-new", "sf-old", "sf-g", "tok-new", "pat-new", "u-new", "p-new", "p-old", "p-same", IN_HOUSE_KEY):
        assert value not in str(error) and value not in error.message
    assert SENDGRID_KEY[30:60] not in str(error) and "whsec_-_-" not in str(error) and "c2VuZGdy" not in str(error)


def test_a_pipedrive_half_goes_with_every_value_of_the_other_only_as_a_plain_string() -> None:
    from flywheel.settings import pipedrive_logins

    assert pipedrive_logins("u", ["p-new", "p-old"]) == (("u", "p-new"), ("u", "p-old"))
    assert pipedrive_logins(["u-new"], ["p-new"]) == (("u-new", "p-new"),)
    for users, passwords in ((["u-new"], ["p-new", "p-old"]), (["u-new", "u-old"], ("p-new",))):
        with pytest.raises(ValueError, match="different numbers of values"):
            pipedrive_logins(users, passwords)


def test_a_credential_or_an_organisation_given_twice_is_refused_naming_it() -> None:
    """json.loads keeps the last copy of a key, silently: a rotation list added above the old line
    was dropped, and once the provider switched to the new value every delivery was refused. The
    credential (or the organisation in a per-org map) given twice is named, and only that credential
    is refused: the other providers' routes keep working (clients.secrets)."""
    from flywheel.domain.inputs import json_noting_repeated_keys
    from flywheel.settings import webhook_secret_problems_by_name

    twice = '{"salesforce_token": ["sf-new", "sf-old"], "calendly_signing_key": "cal", "salesforce_token": "sf-old"}'
    error = refused({"WEBHOOK_SECRETS_JSON": twice})
    assert error.problems == {
        "WEBHOOK_SECRETS_JSON": "salesforce_token is given twice in the secret (only the last copy would count): "
        "keep one line"
    }
    assert set(webhook_secret_problems_by_name(json_noting_repeated_keys(twice), {})) == {"salesforce_token"}
    per_org = '{"salesforce_token": {"acme": "sf-a", "globex": "sf-g", "acme": "sf-a2"}}'
    error = refused({"PROVIDER_ORGS_JSON": json.dumps(TWO_ORGS), "WEBHOOK_SECRETS_JSON": per_org})
    assert error.problems == {
        "WEBHOOK_SECRETS_JSON": "salesforce_token gives acme twice (only the last would count): keep one"
    }
    for text in (twice, per_org):
        assert "sf-" not in str(refused({"PROVIDER_ORGS_JSON": json.dumps(TWO_ORGS), "WEBHOOK_SECRETS_JSON": text}))
    assert refused({"WEBHOOK_SECRETS_JSON": '{"salesforce_token": '}).problems == {
        "WEBHOOK_SECRETS_JSON": "not valid JSON (Expecting value at character 21)"
    }


def test_a_key_named_the_empty_string_given_twice_is_that_key_s_problem_only() -> None:
    """The problems of the whole JSON were filed under the name "", which a JSON key can be: a key ""
    written twice read as the whole secret unusable, and every webhook route was refused."""
    from flywheel.domain.inputs import json_noting_repeated_keys
    from flywheel.settings import webhook_secret_problems_by_name

    problems = webhook_secret_problems_by_name(json_noting_repeated_keys('{"": 1, "": 2, "salesforce_token": "t"}'), {})
    assert problems == {"": ['"" is given twice in the secret (only the last copy would count): keep one line']}
    assert None not in problems  # (None: the whole JSON unusable)


def test_a_secret_nested_too_deeply_to_parse_is_a_configuration_error() -> None:
    """json.loads raises RecursionError (no ValueError) past ~1,000 levels: the settings failed to load
    with an exception no one catches (every route 500), and behind an ARN every webhook / IAM route
    answered 500. It is invalid JSON, said as such."""
    from flywheel.domain.callers import parse_caller_orgs
    from flywheel.domain.inputs import json_noting_repeated_keys, strict_json
    from flywheel.settings import parse_provider_orgs

    deep = '{"hubspot:1": ' + DEEPLY_NESTED + "}"
    for parse in (strict_json, json_noting_repeated_keys, parse_provider_orgs, parse_caller_orgs):
        with pytest.raises(ValueError, match=r"^not valid JSON \(nested too deeply\)$"):
            parse(deep)
    for variable in ("WEBHOOK_SECRETS_JSON", "PROVIDER_ORGS_JSON", "API_CALLER_ORGS_JSON"):
        assert variable in refused({variable: deep}).problems
        assert "nested too deeply" in refused({variable: deep}).problems[variable]


def test_repeated_keys_are_noted_in_one_pass() -> None:
    """Once one key was repeated, every key was looked up in a copy of the keys before it: a 59 KB
    secret of 6,000 keys each given twice took ~0.6 s to parse (quadratic); 20,000 would take ~7 s.
    Now one pass: the repeated keys, each once, in the order of their second copy."""
    import time

    from flywheel.domain.inputs import json_noting_repeated_keys

    assert json_noting_repeated_keys('{"b": 1, "a": 2, "a": 3, "b": 4, "a": 5}').repeated == ("a", "b")
    keys = ",".join(f'"k{number}": 1' for number in range(20_000))
    started = time.perf_counter()
    parsed = json_noting_repeated_keys("{" + keys + "," + keys + "}")
    assert time.perf_counter() - started < 1.0  # (~40 ms in one pass)
    assert len(parsed.repeated) == 20_000 and parsed.repeated[:2] == ("k0", "k1")


def test_rotation_lists_that_fit_load() -> None:
    """During a rotation each credential may list its new value first and the one it replaces; a
    Pipedrive login rotates as a pair (one half kept as a string goes with every value of the other)."""
    from flywheel.settings import pipedrive_logins, webhook_secret_problems

    rotating = {
        "salesforce_token": {"acme": ["sf-a-new", "sf-a-old"], "globex": "sf-g"},
        "crm_webhook_secret": ["whsec_" + IN_HOUSE_KEY, "whsec_c2VjcmV0"],
        # a SendGrid key pasted as PEM is the same key (flywheel.webhooks.signatures.sendgrid_public_key)
        "sendgrid_public_key": [
            SENDGRID_KEY_NEW,
            "-----BEGIN PUBLIC KEY-----\n" + SENDGRID_KEY + "\n-----END PUBLIC KEY-----",
        ],
        "hubspot_client_secret": ["app-new", "app-old"],
        "pipedrive_username": "pd",
        "pipedrive_password": ["pw-new", "pw-old"],
        "pipedrive_api_token": "pd-token",
    }
    env = {"PROVIDER_ORGS_JSON": json.dumps(TWO_ORGS), "WEBHOOK_SECRETS_JSON": json.dumps(rotating)}
    assert Settings.from_env(env).webhook_secrets_json == json.dumps(rotating)
    assert webhook_secret_problems(rotating, TWO_ORGS) == []
    assert pipedrive_logins("pd", ["pw-new", "pw-old"]) == (("pd", "pw-new"), ("pd", "pw-old"))
    assert pipedrive_logins(["u-new", "u-old"], ["p-new", "p-old"]) == (("u-new", "p-new"), ("u-old", "p-old"))
    assert pipedrive_logins(["u-new", "u-old"], "p") == (("u-new", "p"), ("u-old", "p"))

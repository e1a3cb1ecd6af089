"""Settings: an invalid variable is refused when the settings load, as a ConfigurationError naming
it and why (never its value); each thread of the local API can read its own function's settings."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from flywheel.errors import FlywheelError
from flywheel.local.seed import PROVIDER_ORGS
from flywheel.local.template import read_template
from flywheel.settings import ConfigurationError, Settings, get_settings, reset_settings, settings_environment


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

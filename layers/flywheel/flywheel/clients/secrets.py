"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from flywheel.domain.callers import parse_caller_orgs
from flywheel.domain.inputs import json_noting_repeated_keys
from flywheel.errors import DependencyUnavailable
from flywheel.settings import (
    ConfigurationError,
    credential_values,
    get_settings,
    parse_provider_orgs,
    pipedrive_logins,
    webhook_secret_problems_by_name,
)

CACHE_SECONDS = 300
M = TypeVar("M", bound=dict[str, Any])


class SecretNotText(ValueError):
    """A secret stored as binary (SecretBinary) that is not UTF-8 text: an operator's to fix."""


def get_secret(name_or_arn: str, *, fresh: bool = False) -> str:
    value = parameters.get_secret(name_or_arn, max_age=CACHE_SECONDS, force_fetch=fresh)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise SecretNotText("the secret is not UTF-8 text") from None
    return str(value)


def get_json_secret(name_or_arn: str, *, fresh: bool = False) -> dict[str, Any]:
    return dict(json.loads(get_secret(name_or_arn, fresh=fresh)))


def llm_secret(name: str) -> str | None:
    """One key from the LLM secret (`flywheel/<stage>/openai`: `openai_api_key`, `classifier_api_key`),
    which only the functions that call an LLM can read."""
    settings = get_settings()
    if not settings.openai_secret_arn:
        return None
    value = get_json_secret(settings.openai_secret_arn).get(name)
    return str(value) if value else None


def openai_api_key() -> str | None:
    """OPENAI_API_KEY (local), else `openai_api_key` in the LLM secret."""
    return get_settings().openai_api_key or llm_secret("openai_api_key")


class WebhookSecrets:
    """One request's view of the webhook secrets: ProviderOrgs read once, then (at the first use)
    the webhook secrets JSON read once and checked against that very map, so that everything a
    request uses (both halves of a Pipedrive login, a CRM API token, the organisations) comes from
    one version of each secret, even when the 5-minute cache refreshes in the middle of it."""

    def __init__(self, *, fresh: bool = False) -> None:
        self.fresh = fresh
        self.provider_orgs = provider_orgs(fresh=fresh)

    @cached_property
    def _checked(self) -> tuple[dict[str, Any], dict[str | None, list[str]], str]:
        """The webhook secrets JSON, the problems of each of its credentials (see
        flywheel.settings.webhook_secret_problems_by_name) and the variable that holds it. Inline
        JSON was checked when the settings loaded, unless ProviderOrgs is in a secret (then here)."""
        settings = get_settings()
        if not settings.webhook_secrets_arn:
            variable, text = "WEBHOOK_SECRETS_JSON", settings.webhook_secrets_json or "{}"
            checked = bool(settings.provider_orgs_arn)
        else:
            variable, checked = "WEBHOOK_SECRETS_ARN", True
            try:
                text = get_secret(settings.webhook_secrets_arn, fresh=self.fresh)
            except SecretNotText as exc:
                raise ConfigurationError({variable: str(exc)}) from None
        try:
            secrets, problems = _parsed_webhook_secrets(text, _Identity(self.provider_orgs) if checked else None)
        except ValueError as exc:
            raise ConfigurationError({variable: f"the secret is {exc}"}) from None
        if None in problems:  # the whole JSON is unusable (None: no key of it can collide)
            raise ConfigurationError({variable: "; ".join(problems[None])})
        return secrets, problems, variable

    def all(self) -> dict[str, Any]:
        """The whole webhook secrets JSON, checked as a whole (the deep health check):
        ConfigurationError naming the variable and every problem when any credential has one."""
        secrets, problems, variable = self._checked
        if problems:
            found: dict[str, None] = {}
            for reasons in problems.values():
                found.update(dict.fromkeys(reasons))
            raise ConfigurationError({variable: "; ".join(found)})
        return secrets

    def value(self, name: str) -> Any:
        """One field of the webhook secrets JSON. ConfigurationError (naming the variable) when that
        credential is refused (a value for several organisations is never used), and only then: one
        provider's credential left unsplit does not stop the other providers' routes."""
        secrets, problems, variable = self._checked
        if problems.get(name):
            raise ConfigurationError({variable: "; ".join(problems[name])})
        return secrets.get(name)

    def secret(self, name: str) -> str | None:
        """One provider secret sent as it is (e.g. `hubspot_access_token`)."""
        value = self.value(name)
        return str(value) if value and isinstance(value, str) else None

    def credentials(self, name: str) -> dict[str | None, tuple[str, ...]] | None:
        """A credential that may be one per organisation (flywheel.settings.ORG_CREDENTIALS) and,
        while it is rotated, several values (flywheel.settings.ROTATABLE): org_id -> its values,
        newest first, or {None: values} when it is one for every organisation; None when it is not
        configured."""
        value = self.value(name)
        if not value:
            return None
        if isinstance(value, dict):
            return {str(org): credential_values(item) for org, item in value.items()}
        return {None: credential_values(value)}

    def pipedrive_logins(self) -> dict[str | None, tuple[tuple[str, str], ...]] | None:
        """Pipedrive's Basic-auth logins by organisation (None: the one login), each newest first,
        paired from the secret's own values (a plain string half goes with every value of the
        other; a list pairs by position: flywheel.settings.pipedrive_logins); None when a half is
        not configured."""
        users, passwords = self.value("pipedrive_username"), self.value("pipedrive_password")
        if not users or not passwords:
            return None
        if isinstance(users, dict) and isinstance(passwords, dict):
            return {str(org): pipedrive_logins(users[org], passwords[org]) for org in users}
        return {None: pipedrive_logins(users, passwords)}


class _Identity:
    """A ProviderOrgs map as a cache key by identity: provider_orgs() returns the same parsed dict
    for as long as its text is unchanged (hashing 1,400 accounts would cost ~130 us a request). The
    cache holds the key, so the map is not freed and its id is never reused while it is cached."""

    def __init__(self, value: dict[str, str]) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value


@lru_cache(maxsize=4)
def _parsed_webhook_secrets(
    text: str, provider_orgs: _Identity | None
) -> tuple[dict[str, Any], dict[str | None, list[str]]]:
    """The webhook secrets JSON parsed (ValueError when it is not JSON) and, unless `provider_orgs`
    is None (checked when the settings loaded), its problems against that map: once per version of
    the secret and of the map, not on every request (300 organisations' rotating SendGrid keys take
    ~20 ms to check)."""
    secrets: Any = json_noting_repeated_keys(text)
    if not isinstance(secrets, dict):
        return {}, {None: ["must be a JSON object of secret name -> value"]}
    problems = {} if provider_orgs is None else webhook_secret_problems_by_name(secrets, provider_orgs.value)
    return dict(secrets), problems


def webhook_secrets(*, fresh: bool = False) -> dict[str, Any]:
    """The whole webhook secrets JSON, checked as a whole against ProviderOrgs (the deep health
    check): ConfigurationError naming WEBHOOK_SECRETS_ARN and every problem when any credential has one."""
    return WebhookSecrets(fresh=fresh).all()


# Secrets Manager answers that a retry will not change: the operator's to fix
_NOT_TRANSIENT = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure", "InvalidRequestException"}
)


def _mapping_secret(variable: str, arn: str, what: str, parse: Callable[[str], M], *, empty: str, fresh: bool) -> M:
    """A mapping kept in a Secrets Manager secret because Lambda's 4 KB environment cannot hold it
    (API_CALLER_ORGS_ARN, PROVIDER_ORGS_ARN), read through the 5-minute cache and parsed by `parse`
    (cached by the caller, once per value). It must be a non-empty valid mapping: ConfigurationError
    naming `variable` when the secret cannot be read or is not one (why, by key number: never a key
    or an organisation); DependencyUnavailable when Secrets Manager fails for now."""
    try:
        text = get_secret(arn, fresh=fresh)
    except SecretNotText as exc:
        raise ConfigurationError({variable: str(exc)}) from None
    except GetParameterError as exc:
        found = re.search(r"\((\w+)\)", str(exc))  # the error code only: AccessDenied's text names ARNs
        code = found[1] if found else type(exc).__name__
        if code in _NOT_TRANSIENT:
            raise ConfigurationError({variable: f"the secret cannot be read ({code})"}) from None
        raise DependencyUnavailable(f"{what} cannot be read now ({code})") from None
    try:
        mapping = parse(text)
    except ValueError as exc:
        raise ConfigurationError({variable: str(exc)}) from None
    if not mapping:
        raise ConfigurationError({variable: empty})
    return mapping


def api_caller_orgs(*, fresh: bool = False) -> dict[str, frozenset[str]]:
    """Which organisations each API caller may act for (README "Tenancy"): API_CALLER_ORGS_JSON, else
    the secret behind API_CALLER_ORGS_ARN, read through the 5-minute cache and parsed once per value.
    The secret must hold a non-empty mapping (an empty one would turn org scoping off unseen: unset
    the variable for that). ConfigurationError naming API_CALLER_ORGS_ARN when it cannot be read or
    is not a valid mapping (by key number, never a key or an organisation)."""
    settings = get_settings()
    if not settings.api_caller_orgs_arn:
        return settings.api_caller_orgs
    return _mapping_secret(
        "API_CALLER_ORGS_ARN",
        settings.api_caller_orgs_arn,
        "the API caller mapping",
        _caller_orgs,
        empty="the secret maps no caller (to turn org scoping off, unset the variable)",
        fresh=fresh,
    )


def provider_orgs(*, fresh: bool = False) -> dict[str, str]:
    """Which organisation each provider account is (README "Webhooks", ProviderOrgs): PROVIDER_ORGS_JSON,
    else the secret behind PROVIDER_ORGS_ARN, read and checked like the API caller mapping (a non-empty
    valid map, or ConfigurationError naming PROVIDER_ORGS_ARN)."""
    settings = get_settings()
    if not settings.provider_orgs_arn:
        return settings.provider_orgs
    return _mapping_secret(
        "PROVIDER_ORGS_ARN",
        settings.provider_orgs_arn,
        "the provider account map",
        _provider_orgs,
        empty="the secret maps no provider account (to map none, unset the variable)",
        fresh=fresh,
    )


@lru_cache(maxsize=2)
def _caller_orgs(text: str) -> dict[str, frozenset[str]]:
    return parse_caller_orgs(text)


@lru_cache(maxsize=2)
def _provider_orgs(text: str) -> dict[str, str]:
    return parse_provider_orgs(text)

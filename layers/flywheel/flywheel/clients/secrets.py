"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from flywheel.domain.callers import parse_caller_orgs
from flywheel.errors import DependencyUnavailable
from flywheel.settings import (
    ConfigurationError,
    credential_values,
    get_settings,
    parse_provider_orgs,
    webhook_secret_problems_by_name,
)

CACHE_SECONDS = 300
M = TypeVar("M", bound=dict[str, Any])


def get_secret(name_or_arn: str, *, fresh: bool = False) -> str:
    value = parameters.get_secret(name_or_arn, max_age=CACHE_SECONDS, force_fetch=fresh)
    return value.decode() if isinstance(value, bytes) else str(value)


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


def _webhook_secrets(fresh: bool) -> tuple[dict[str, Any], dict[str, list[str]], str]:
    """The webhook secrets JSON, the problems of each of its credentials (see
    flywheel.settings.webhook_secret_problems_by_name) and the variable that holds it. Inline JSON
    was checked when the settings loaded, unless ProviderOrgs is in a secret (then it is checked here)."""
    settings = get_settings()
    if not settings.webhook_secrets_arn:
        inline = dict(json.loads(settings.webhook_secrets_json or "{}"))
        if not settings.provider_orgs_arn:
            return inline, {}, "WEBHOOK_SECRETS_JSON"
        return inline, webhook_secret_problems_by_name(inline, provider_orgs()), "WEBHOOK_SECRETS_JSON"
    try:
        secrets: Any = json.loads(get_secret(settings.webhook_secrets_arn, fresh=fresh))
    except ValueError:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "the secret is not valid JSON"}) from None
    problems = webhook_secret_problems_by_name(secrets, provider_orgs(fresh=fresh))
    if "" in problems:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "; ".join(problems[""])})
    return dict(secrets), problems, "WEBHOOK_SECRETS_ARN"


def webhook_secrets(*, fresh: bool = False) -> dict[str, Any]:
    """The whole webhook secrets JSON, checked as a whole against ProviderOrgs (the deep health
    check): ConfigurationError naming WEBHOOK_SECRETS_ARN and every problem when any credential has one."""
    secrets, problems, variable = _webhook_secrets(fresh)
    if problems:
        found: dict[str, None] = {}
        for reasons in problems.values():
            found.update(dict.fromkeys(reasons))
        raise ConfigurationError({variable: "; ".join(found)})
    return secrets


def _webhook_value(name: str) -> Any:
    """One field of the webhook secrets JSON. ConfigurationError (naming WEBHOOK_SECRETS_ARN) when
    that credential is refused (a value for several organisations is never used), and only then:
    one provider's credential left unsplit does not stop the other providers' routes."""
    secrets, problems, variable = _webhook_secrets(False)
    if problems.get(name):
        raise ConfigurationError({variable: "; ".join(problems[name])})
    return secrets.get(name)


def webhook_secret(name: str) -> str | None:
    """One provider secret sent as it is (e.g. `hubspot_access_token`) from the webhook secrets JSON."""
    value = _webhook_value(name)
    return str(value) if value and isinstance(value, str) else None


def webhook_credentials(name: str) -> dict[str | None, tuple[str, ...]] | None:
    """A credential that may be one per organisation (flywheel.settings.ORG_CREDENTIALS) and, while
    it is rotated, several values (flywheel.settings.ROTATABLE): org_id -> its values, newest first, or
    {None: values} when it is one for every organisation; None when it is not configured."""
    value = _webhook_value(name)
    if not value:
        return None
    if isinstance(value, dict):
        return {str(org): credential_values(item) for org, item in value.items()}
    return {None: credential_values(value)}


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

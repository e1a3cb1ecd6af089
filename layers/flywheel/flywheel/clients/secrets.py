"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from flywheel.domain.callers import parse_caller_orgs
from flywheel.errors import DependencyUnavailable
from flywheel.settings import ConfigurationError, get_settings, webhook_secret_problems_by_name

CACHE_SECONDS = 300


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


def _webhook_secrets(fresh: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The webhook secrets JSON and the problems of each of its credentials (see
    flywheel.settings.webhook_secret_problems_by_name); inline JSON was checked when the settings loaded."""
    settings = get_settings()
    if not settings.webhook_secrets_arn:
        return dict(json.loads(settings.webhook_secrets_json or "{}")), {}
    try:
        secrets: Any = json.loads(get_secret(settings.webhook_secrets_arn, fresh=fresh))
    except ValueError:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "the secret is not valid JSON"}) from None
    problems = webhook_secret_problems_by_name(secrets, settings.provider_orgs)
    if "" in problems:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "; ".join(problems[""])})
    return dict(secrets), problems


def webhook_secrets(*, fresh: bool = False) -> dict[str, Any]:
    """The whole webhook secrets JSON, checked as a whole against ProviderOrgs (the deep health
    check): ConfigurationError naming WEBHOOK_SECRETS_ARN and every problem when any credential has one."""
    secrets, problems = _webhook_secrets(fresh)
    if problems:
        found: dict[str, None] = {}
        for reasons in problems.values():
            found.update(dict.fromkeys(reasons))
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "; ".join(found)})
    return secrets


def _webhook_value(name: str) -> Any:
    """One field of the webhook secrets JSON. ConfigurationError (naming WEBHOOK_SECRETS_ARN) when
    that credential is refused (a value for several organisations is never used), and only then:
    one provider's credential left unsplit does not stop the other providers' routes."""
    secrets, problems = _webhook_secrets(False)
    if problems.get(name):
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "; ".join(problems[name])})
    return secrets.get(name)


def webhook_secret(name: str) -> str | None:
    """One provider secret (e.g. `hubspot_client_secret`) from the webhook secrets JSON."""
    value = _webhook_value(name)
    return str(value) if value and not isinstance(value, dict) else None


def webhook_credentials(name: str) -> str | dict[str, str] | None:
    """A credential that may be one per organisation (flywheel.settings.ORG_CREDENTIALS): one value,
    or org_id -> value; None when it is not configured."""
    value = _webhook_value(name)
    if not value:
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else str(value)


# Secrets Manager answers that a retry will not change: the operator's to fix
_NOT_TRANSIENT = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure", "InvalidRequestException"}
)


def api_caller_orgs(*, fresh: bool = False) -> dict[str, frozenset[str]]:
    """Which organisations each API caller may act for (README "Tenancy"): API_CALLER_ORGS_JSON, else
    the secret behind API_CALLER_ORGS_ARN, read through the 5-minute cache and parsed once per value.
    The secret must hold a non-empty mapping (an empty one would turn org scoping off unseen: unset
    the variable for that). ConfigurationError naming API_CALLER_ORGS_ARN when it cannot be read or
    is not a valid mapping (by key number, never a key or an organisation)."""
    settings = get_settings()
    if not settings.api_caller_orgs_arn:
        return settings.api_caller_orgs
    try:
        text = get_secret(settings.api_caller_orgs_arn, fresh=fresh)
    except GetParameterError as exc:
        found = re.search(r"\((\w+)\)", str(exc))  # the error code only: AccessDenied's text names ARNs
        code = found[1] if found else type(exc).__name__
        if code in _NOT_TRANSIENT:
            raise ConfigurationError({"API_CALLER_ORGS_ARN": f"the secret cannot be read ({code})"}) from None
        raise DependencyUnavailable(f"the API caller mapping cannot be read now ({code})") from None
    try:
        mapping = _caller_orgs(text)
    except ValueError as exc:
        raise ConfigurationError({"API_CALLER_ORGS_ARN": str(exc)}) from None
    if not mapping:
        raise ConfigurationError(
            {"API_CALLER_ORGS_ARN": "the secret maps no caller (to turn org scoping off, unset the variable)"}
        )
    return mapping


@lru_cache(maxsize=2)
def _caller_orgs(text: str) -> dict[str, frozenset[str]]:
    return parse_caller_orgs(text)

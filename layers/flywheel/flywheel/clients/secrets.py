"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities import parameters

from flywheel.settings import ConfigurationError, get_settings, webhook_secret_problems

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


def webhook_secrets(*, fresh: bool = False) -> dict[str, Any]:
    """The webhook secrets JSON. The secret behind WEBHOOK_SECRETS_ARN is checked against ProviderOrgs
    each time it is read (ConfigurationError naming WEBHOOK_SECRETS_ARN: a credential that is one value
    for several organisations is refused, not used); inline JSON was checked when the settings loaded."""
    settings = get_settings()
    if not settings.webhook_secrets_arn:
        return dict(json.loads(settings.webhook_secrets_json or "{}"))
    try:
        secrets: Any = json.loads(get_secret(settings.webhook_secrets_arn, fresh=fresh))
    except ValueError:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "the secret is not valid JSON"}) from None
    problems = webhook_secret_problems(secrets, settings.provider_orgs)
    if problems:
        raise ConfigurationError({"WEBHOOK_SECRETS_ARN": "; ".join(problems)})
    return dict(secrets)


def webhook_secret(name: str) -> str | None:
    """One provider secret (e.g. `hubspot_client_secret`) from the webhook secrets JSON."""
    value = webhook_secrets().get(name)
    return str(value) if value and not isinstance(value, dict) else None


def webhook_credentials(name: str) -> str | dict[str, str] | None:
    """A credential that may be one per organisation (flywheel.settings.ORG_CREDENTIALS): one value,
    or org_id -> value; None when it is not configured."""
    value = webhook_secrets().get(name)
    if not value:
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else str(value)

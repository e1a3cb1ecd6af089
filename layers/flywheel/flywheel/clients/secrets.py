"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities import parameters

from flywheel.settings import get_settings

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


def webhook_secret(name: str) -> str | None:
    """One provider secret (e.g. `hubspot_client_secret`) from the webhook secrets JSON."""
    settings = get_settings()
    if settings.webhook_secrets_arn:
        secrets = get_json_secret(settings.webhook_secrets_arn)
    else:
        secrets = json.loads(settings.webhook_secrets_json or "{}")
    value = secrets.get(name)
    return str(value) if value else None

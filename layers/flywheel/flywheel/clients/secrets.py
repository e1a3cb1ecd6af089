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


def get_json_secret(name_or_arn: str) -> dict[str, Any]:
    return dict(json.loads(get_secret(name_or_arn)))


def openai_api_key() -> str | None:
    """OPENAI_API_KEY (local), else `openai_api_key` in the OpenAI secret (read only by the
    functions that call OpenAI)."""
    settings = get_settings()
    if settings.openai_api_key:
        return settings.openai_api_key
    if settings.openai_secret_arn:
        value = get_json_secret(settings.openai_secret_arn).get("openai_api_key")
        return str(value) if value else None
    return None


def webhook_secret(name: str) -> str | None:
    """One provider secret (e.g. `hubspot_client_secret`) from the webhook secrets JSON."""
    settings = get_settings()
    if settings.webhook_secrets_arn:
        secrets = get_json_secret(settings.webhook_secrets_arn)
    else:
        secrets = json.loads(settings.webhook_secrets_json or "{}")
    value = secrets.get(name)
    return str(value) if value else None

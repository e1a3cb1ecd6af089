"""Secrets through Powertools parameters (cached per execution environment)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities import parameters

CACHE_SECONDS = 300


def get_secret(name_or_arn: str) -> str:
    value = parameters.get_secret(name_or_arn, max_age=CACHE_SECONDS)
    return value.decode() if isinstance(value, bytes) else str(value)


def get_json_secret(name_or_arn: str) -> dict[str, Any]:
    return dict(json.loads(get_secret(name_or_arn)))


def get_parameter(name: str, *, decrypt: bool = True) -> str:
    return str(parameters.get_parameter(name, decrypt=decrypt, max_age=CACHE_SECONDS))

"""boto3 clients, one per service and execution environment, with standard retries."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=60)


@cache
def client(service: str, signature_version: str | None = None) -> Any:
    config = _CONFIG if signature_version is None else _CONFIG.merge(Config(signature_version=signature_version))
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime switch AWS emulation on and off)."""
    client.cache_clear()

"""boto3 clients, one per service and execution environment, with standard retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from flywheel.settings import get_settings


@cache
def client(service: str, signature_version: str | None = None) -> Any:
    # API functions get short timeouts and few attempts (AWS_*_TIMEOUT_S, AWS_MAX_ATTEMPTS in the
    # template) so that a slow AWS call still ends inside API Gateway's 29 s
    settings = get_settings()
    config = Config(
        retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=settings.aws_read_timeout_s,
        signature_version=signature_version,
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime switch AWS emulation on and off)."""
    client.cache_clear()


@dataclass
class Delivery:
    """What became of a list of messages sent in batches (by index): sent, refused for what they
    are (sending them again as they are cannot succeed), or neither: the service was unavailable
    (`unavailable` says why) and they may be sent later."""

    sent: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # not taken, through no fault of their own
    unavailable: str | None = None

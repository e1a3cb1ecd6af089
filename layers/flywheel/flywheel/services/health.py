"""Health: a shallow answer that proves the function's code path runs (public, no data), and a
deep check of what this function depends on (IAM): its settings, the database, the replies queue,
its secrets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flywheel.clients import queue
from flywheel.clients.secrets import api_caller_orgs, get_secret, provider_orgs, webhook_secrets
from flywheel.dal import migrations
from flywheel.dal.connection import transaction
from flywheel.observability import logger
from flywheel.settings import ConfigurationError, get_settings


def shallow() -> dict[str, str]:
    return {"status": "ok"}


def _timed(check: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check() or {}
        result: dict[str, Any] = {"ok": True, **detail}
    except ConfigurationError as exc:  # a secret that does not fit the settings: which, and why
        result = {"ok": False, "error": "ConfigurationError", "invalid": exc.problems}
    except Exception as exc:  # a health check reports failures, it does not raise them
        result = {"ok": False, "error": type(exc).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with transaction() as conn:
        return {"schema_version": migrations.schema_version(conn)}


def _readable(arn: str) -> None:
    get_secret(arn, fresh=True)  # not the 5-minute cache: is it readable now?


def deep(caller_scoped: bool = True) -> tuple[bool, dict[str, Any]]:
    """Every dependency this function is configured with; names and timings only, never values.
    Invalid settings fail the `settings` check (naming each variable and why) and nothing else is
    checked: every other check reads them. `caller_scoped`: an IAM API function, whose settings
    check says whether org scoping is on (not the webhooks', whose routes are public)."""
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        invalid = {"ok": False, "error": "ConfigurationError", "invalid": exc.problems}
        # the operator reads logs, not only the answer: each variable's name and why, never its value
        logger.error("deep health check failed: invalid settings", extra={"check": "settings", "invalid": exc.problems})
        return False, {"status": "unhealthy", "checks": {"settings": invalid}}
    # org scoping (API_CALLER_ORGS_JSON, README "Tenancy"): on, and for how many principals, or off
    # (every authenticated caller may pass any org_id); no principal or organisation is named
    scoping: dict[str, Any] = {}
    if caller_scoped and settings.api_caller_orgs_arn:
        scoping = {"org_scoping": "on", "api_callers_from": "API_CALLER_ORGS_ARN"}  # counted by its own check
    elif caller_scoped:
        mapped = len(settings.api_caller_orgs)
        scoping = {"org_scoping": "on", "api_callers": mapped} if mapped else {"org_scoping": "off"}
    checks: dict[str, Any] = {
        "settings": {"ok": True, **scoping},
        "database": _timed(_database),
    }
    if settings.replies_queue_url:
        url = settings.replies_queue_url
        checks["replies_queue"] = _timed(lambda: {"visible": queue.depth(url)})
    secrets = {"database": settings.database_secret_arn, "openai": settings.openai_secret_arn}
    for name, arn in secrets.items():
        if arn:
            checks[f"{name}_secret"] = _timed(lambda arn=arn: _readable(arn))  # type: ignore[misc]
    if caller_scoped and settings.api_caller_orgs_arn:
        # readable, and a valid non-empty mapping (else every IAM route answers 503 configuration_error)
        checks["api_callers_secret"] = _timed(lambda: {"api_callers": len(api_caller_orgs(fresh=True))})
    if settings.provider_orgs_arn:
        # readable, and a valid non-empty map (else every webhook route answers 503 configuration_error);
        # read fresh before the webhook secret's check, which checks its credentials against it
        checks["provider_orgs_secret"] = _timed(lambda: {"provider_accounts": len(provider_orgs(fresh=True))})
    if settings.webhook_secrets_arn:
        # readable, and its credentials fit ProviderOrgs (a single value serves one organisation at most)
        checks["webhooks_secret"] = _timed(lambda: webhook_secrets(fresh=True) and None)
    healthy = all(check["ok"] for check in checks.values())
    if not healthy:
        failing = {name: check.get("error") for name, check in checks.items() if not check["ok"]}
        logger.warning("deep health check failed", extra={"failing": failing})
    return healthy, {"status": "ok" if healthy else "unhealthy", "checks": checks}

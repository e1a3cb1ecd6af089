"""Receiving provider webhooks: verify on the raw bytes, normalise, store and apply.

Each `receive_*` returns the JSON answer for the provider; rejections raise typed errors that
the API glue maps to 400/401/403/413/422/503.
"""

from __future__ import annotations

from typing import Any

from flywheel.clients.secrets import webhook_secret
from flywheel.errors import DependencyUnavailable, Unauthorized
from flywheel.observability import logger, metrics
from flywheel.services.ingest import ingest_events
from flywheel.settings import get_settings
from flywheel.webhooks import sendgrid
from flywheel.webhooks.http import WebhookRequest
from flywheel.webhooks.signatures import SignatureInvalid, verify_sendgrid


def _required_secret(name: str) -> str:
    value = webhook_secret(name)
    if not value:
        # misconfiguration: refuse (and let the provider retry) rather than accept unverified data
        raise DependencyUnavailable(f"webhook secret {name!r} is not configured")
    return value


def _unauthorized(provider: str, exc: SignatureInvalid) -> Unauthorized:
    return Unauthorized(f"{provider}: {exc}", provider=provider)


def _count(provider: str, result: dict[str, Any]) -> None:
    for name in ("stored", "duplicates", "orphans", "ignored"):
        if result.get(name):
            metrics.add_metric(name=f"Webhook{name.capitalize()}", unit="Count", value=result[name])
    logger.info("webhook received", extra={"provider": provider, **result})


def receive_sendgrid(request: WebhookRequest) -> dict[str, Any]:
    settings = get_settings()
    if settings.sendgrid_verify_signature:
        try:
            verify_sendgrid(
                _required_secret("sendgrid_public_key"),
                request.header("X-Twilio-Email-Event-Webhook-Signature"),
                request.header("X-Twilio-Email-Event-Webhook-Timestamp"),
                request.body,
            )
        except SignatureInvalid as exc:
            raise _unauthorized("sendgrid", exc) from exc
    else:
        logger.warning("SendGrid signature verification is OFF (SENDGRID_VERIFY_SIGNATURE=false)")
    events = sendgrid.normalise(sendgrid.parse_body(request.body))
    result = ingest_events(events, window_days=settings.attribution_window_days).as_dict()
    _count("sendgrid", result)
    return result

"""Signing helpers for webhook tests: each provider's real scheme with test-only keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flywheel.local import signing
from flywheel.local.signing import SendGridSigner
from flywheel.settings import reset_settings

SIGNER = SendGridSigner()

SECRETS = {
    "sendgrid_public_key": SIGNER.public_key_b64,
    "inbound_parse_token": "inbound-token-123",
    "calendly_signing_key": "calendly-key-456",
    "hubspot_client_secret": "hubspot-secret-789",
    "hubspot_access_token": "pat-na1-test",
    "pipedrive_username": "pipedrive",
    "pipedrive_password": "pd-pass",
    "pipedrive_api_token": "pd-api-token",
    "salesforce_token": "sf-token-abc",
    "crm_webhook_secret": "whsec_" + base64.b64encode(b"generic-crm-secret-0123456789").decode(),
}
# EC public keys (base64 DER SubjectPublicKeyInfo, the shape SendGrid shows) on curves `cryptography`
# cannot load: it raises UnsupportedAlgorithm, which is no ValueError. An operator may paste one from
# another system; it must be refused as "not an EC P-256 public key", never answer 500.
UNSUPPORTED_CURVE_KEYS = {
    "SM2": "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEQDp5ciovY6vLDfH9iuyHMUosoqSRf5zZdfw40kC/kiF32jjLtTj0IdFwh3jcRMc13B2XXVu"
    "+vOjk4aVXgJOObg==",
    "brainpoolP160r1": "MEIwFAYHKoZIzj0CAQYJKyQDAwIIAQEBAyoABL12fMhMj71em64OdUHnAwBRvkU6G389By8jtsDipUuzkvouR9JjES4=",
}
# a secret nested deeper than json.loads can parse (it raises RecursionError, which is no ValueError)
DEEPLY_NESTED = "[" * 5000 + "]" * 5000
PROVIDER_ORGS = {
    "hubspot:5799819": "acme",
    "pipedrive:8087566": "acme",
    "salesforce:00D7F00000107Xs": "acme",
    "calendly:*": "acme",
    "sendgrid_inbound:reply.flywheel.example": "acme",
}


def configure(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    monkeypatch.setenv("WEBHOOK_SECRETS_JSON", json.dumps(SECRETS))
    monkeypatch.delenv("WEBHOOK_SECRETS_ARN", raising=False)
    monkeypatch.setenv("PROVIDER_ORGS_JSON", json.dumps(PROVIDER_ORGS))
    monkeypatch.setenv("INBOUND_PARSE_DOMAINS", "reply.flywheel.example")
    for key, value in overrides.items():
        monkeypatch.setenv(key.upper(), value)
    reset_settings()


def sendgrid_headers(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    return SIGNER.headers(body, timestamp)


def sendgrid_body(events: list[dict[str, Any]]) -> bytes:
    return (json.dumps(events) + "\r\n").encode()


def calendly_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    return signing.calendly_headers(SECRETS["calendly_signing_key"], body, timestamp)


def hubspot_headers(body: bytes, url: str, timestamp_ms: int | None = None) -> dict[str, str]:
    return signing.hubspot_headers(SECRETS["hubspot_client_secret"], body, url, timestamp_ms)


def standard_headers(body: bytes, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    return signing.standard_headers(SECRETS["crm_webhook_secret"], body, msg_id, timestamp)


def route_event(event: dict[str, Any], body: bytes | str | None = None, **headers: str) -> dict[str, Any]:
    """A sample API Gateway event with its body replaced (kept base64 when it was) and headers set."""
    event = json.loads(json.dumps(event))
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        event["body"] = base64.b64encode(raw).decode() if event.get("isBase64Encoded") else raw.decode()
    event["headers"].update(headers)
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def event_body(event: dict[str, Any]) -> bytes:
    body = event["body"] or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def public_url(event: dict[str, Any]) -> str:
    return f"https://{event['headers']['Host']}{event['requestContext']['path']}"

"""Signing helpers for webhook tests: each provider's real scheme with test-only keys."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flywheel.settings import reset_settings
from flywheel.webhooks import signatures

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

SECRETS = {
    "sendgrid_public_key": SENDGRID_PUBLIC,
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
PROVIDER_ORGS = {"hubspot:5799819": "acme", "pipedrive:8087566": "acme", "salesforce:00D7F00000107Xs": "acme"}


def configure(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    monkeypatch.setenv("WEBHOOK_SECRETS_JSON", json.dumps(SECRETS))
    monkeypatch.delenv("WEBHOOK_SECRETS_ARN", raising=False)
    monkeypatch.setenv("PROVIDER_ORGS_JSON", json.dumps(PROVIDER_ORGS))
    monkeypatch.setenv("INBOUND_PARSE_DOMAINS", "reply.flywheel.example")
    for key, value in overrides.items():
        monkeypatch.setenv(key.upper(), value)
    reset_settings()


def sendgrid_headers(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    signature = SENDGRID_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


def sendgrid_body(events: list[dict[str, Any]]) -> bytes:
    return (json.dumps(events) + "\r\n").encode()


def calendly_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {"Calendly-Webhook-Signature": f"t={t},v1={signatures.calendly_signature(SECRETS['calendly_signing_key'], t, body)}"}


def hubspot_headers(body: bytes, url: str, timestamp_ms: int | None = None) -> dict[str, str]:
    ts = str(timestamp_ms or int(time.time() * 1000))
    return {"X-HubSpot-Signature-v3": signatures.hubspot_v3(SECRETS["hubspot_client_secret"], "POST", url, body, ts),
            "X-HubSpot-Request-Timestamp": ts}


def standard_headers(body: bytes, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {"webhook-id": msg_id, "webhook-timestamp": t,
            "webhook-signature": signatures.standard_webhooks_signature(SECRETS["crm_webhook_secret"], msg_id, t, body)}


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

"""The sending side of each webhook scheme, for the demo and tests (never used by the handlers)."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flywheel.webhooks import signatures


class SendGridSigner:
    """A throwaway P-256 key pair standing in for SendGrid's."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key_b64 = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


def calendly_headers(signing_key: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {"Calendly-Webhook-Signature": f"t={t},v1={signatures.calendly_signature(signing_key, t, body)}"}


def hubspot_headers(client_secret: str, body: bytes, url: str, timestamp_ms: int | None = None) -> dict[str, str]:
    ts = str(timestamp_ms or int(time.time() * 1000))
    return {"X-HubSpot-Signature-v3": signatures.hubspot_v3(client_secret, "POST", url, body, ts),
            "X-HubSpot-Request-Timestamp": ts}


def standard_headers(secret: str, body: bytes, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {"webhook-id": msg_id, "webhook-timestamp": t,
            "webhook-signature": signatures.standard_webhooks_signature(secret, msg_id, t, body)}

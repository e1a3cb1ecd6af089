"""Local development secrets: created on first use in `<state>/secrets.json` (mode 0600).

They stand in for the stack's `flywheel/<stage>/webhooks` secret: the local stack serves them to
the functions, `flywheel invoke` signs the webhook samples with them and `flywheel sign` signs
your own bodies. They are random per checkout and mean nothing outside it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# What the functions read from the webhook secret (the same names as in AWS).
WEBHOOK_SECRET_NAMES = (
    "sendgrid_public_key",
    "inbound_parse_token",
    "calendly_signing_key",
    "hubspot_client_secret",
    "hubspot_access_token",
    "pipedrive_username",
    "pipedrive_password",
    "pipedrive_api_token",
    "salesforce_token",
    "crm_webhook_secret",
)


def _sendgrid_pair() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"sendgrid_public_key": base64.b64encode(public).decode(), "sendgrid_private_key": private.decode()}


def _generate(name: str) -> dict[str, str]:
    if name in ("sendgrid_public_key", "sendgrid_private_key"):
        return _sendgrid_pair()
    if name == "pipedrive_username":
        return {name: "flywheel-local"}
    if name == "crm_webhook_secret":  # Standard Webhooks: whsec_ + base64 of the key bytes
        return {name: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()}
    return {name: secrets.token_urlsafe(24)}


ALL_NAMES = (*WEBHOOK_SECRET_NAMES, "sendgrid_private_key", "database_password")


def _announce(message: str) -> None:
    print(message, file=sys.stderr)


def local_secrets(state: Path, announce: Callable[[str], None] = _announce) -> dict[str, str]:
    """The checkout's local secrets, creating (or completing) the file on first use."""
    path = state / "secrets.json"
    current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in ALL_NAMES if not current.get(name)]
    if not missing:
        return current
    for name in missing:
        if not current.get(name):
            current.update(_generate(name))
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(current, handle, indent=2)
    announce(f"local development secrets {'created' if len(missing) == len(ALL_NAMES) else 'completed'}: {path}")
    return current


def webhook_secrets_json(values: dict[str, str]) -> str:
    """The JSON the functions read (WEBHOOK_SECRETS_JSON / the webhook secret): no signing-only keys."""
    return json.dumps({name: values[name] for name in WEBHOOK_SECRET_NAMES})

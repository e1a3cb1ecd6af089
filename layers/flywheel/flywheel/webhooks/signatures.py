"""Webhook signature schemes, each exactly as its provider signs, always over the raw body bytes.

Every check raises `SignatureInvalid` with a short reason; comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


class SignatureInvalid(Exception):
    """The request is not provably from the provider."""


def _now() -> float:
    return time.time()


def _check_window(timestamp_s: float, tolerance_s: float, now: float | None) -> None:
    current = _now() if now is None else now
    if abs(current - timestamp_s) > tolerance_s:
        raise SignatureInvalid("timestamp outside the allowed window")


def _digits(value: str | None, most: int) -> bool:
    """A timestamp header as providers write it: 1 to `most` ASCII digits (`str.isdigit` alone
    takes "²" and other digits `int` refuses, and a number of thousands of digits is no time)."""
    return value is not None and 0 < len(value) <= most and value.isascii() and value.isdigit()


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison of a signature with a header's value, whatever characters that
    holds (`hmac.compare_digest` refuses two str unless both are ASCII)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("not base64") from exc


# --- SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + body --------------


def verify_sendgrid(
    public_key_b64: str,
    signature_b64: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    max_age_s: float | None = None,
    now: float | None = None,
) -> None:
    """`max_age_s`: refuse signatures older than this (SendGrid retries for 24 h and may reuse the
    timestamp, so it must stay above a day) or more than 5 minutes in the future."""
    if not signature_b64 or not timestamp:
        raise SignatureInvalid("missing signature headers")
    if not _digits(timestamp, 12):
        raise SignatureInvalid("bad X-Twilio-Email-Event-Webhook-Timestamp")
    if max_age_s is not None:
        age = (_now() if now is None else now) - int(timestamp)
        if age > max_age_s or age < -300:
            raise SignatureInvalid("timestamp outside the allowed window")
    # cryptography loads here, not at import (~15 ms): no handler pays for it at cold start (the first
    # read of a webhook secret holding a SendGrid key loads it to check the keys, once per environment)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = sendgrid_public_key(public_key_b64)
    except ValueError as exc:
        raise SignatureInvalid("unusable public key") from exc
    try:
        key.verify(_b64(signature_b64), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureInvalid("signature does not match") from exc


_PEM_LINES = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


@lru_cache(maxsize=2048)
def sendgrid_public_key(text: str) -> EllipticCurvePublicKey:
    """A SendGrid verification key as the secret holds it: the base64 SubjectPublicKeyInfo (DER)
    SendGrid shows, or the same as PEM (its BEGIN/END PUBLIC KEY lines and line breaks are dropped);
    it must be an EC P-256 key. Loaded once per text (lru_cache): a request tried against every
    organisation's keys pays for the verifications only. ValueError saying what it is not (never
    quoting it)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        der = base64.b64decode("".join(_PEM_LINES.sub("", text).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    try:
        key = load_der_public_key(der)
    except UnsupportedAlgorithm:  # not a ValueError: a key on a curve cryptography lacks (SM2, brainpoolP160r1)
        raise ValueError("not an EC P-256 public key") from None
    except ValueError:
        raise ValueError("not a DER SubjectPublicKeyInfo public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an EC P-256 public key")
    return key


def sendgrid_key_id(text: str) -> bytes:
    """One SendGrid key whatever its spelling (PEM or base64, a compressed or uncompressed point):
    its uncompressed SubjectPublicKeyInfo. ValueError as sendgrid_public_key."""
    from cryptography.hazmat.primitives import serialization

    return sendgrid_public_key(text).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def standard_webhooks_key(secret: str) -> bytes:
    """A Standard Webhooks secret's key: the base64 after an optional `whsec_` (ValueError when it is
    not base64 or holds no byte)."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not key:
        raise ValueError("an empty key")
    return key


# --- HubSpot v1 / v2 / v3 --------------------------------------------------------------------


def hubspot_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def hubspot_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def hubspot_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp_ms.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_hubspot(
    secret: str,
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: dict[str, str],
    tolerance_s: float = 300,
    allow_legacy: bool = False,
    now: float | None = None,
) -> None:
    v3 = headers.get("x-hubspot-signature-v3")
    if v3:
        timestamp = headers.get("x-hubspot-request-timestamp", "")
        if not _digits(timestamp, 15):  # milliseconds
            raise SignatureInvalid("missing or bad X-HubSpot-Request-Timestamp")
        _check_window(int(timestamp) / 1000, tolerance_s, now)
        if not _same(hubspot_v3(secret, method, uri, body, timestamp), v3):
            raise SignatureInvalid("signature does not match")
        return
    legacy = headers.get("x-hubspot-signature")
    if not legacy:
        raise SignatureInvalid("missing signature headers")
    if not allow_legacy:
        raise SignatureInvalid("v1/v2 signatures are not accepted (set HUBSPOT_ALLOW_LEGACY_SIGNATURES)")
    version = headers.get("x-hubspot-signature-version", "v1").lower()
    expected = hubspot_v2(secret, method, uri, body) if version == "v2" else hubspot_v1(secret, body)
    if not _same(expected, legacy.lower()):
        raise SignatureInvalid("signature does not match")


# --- Calendly: t=<unix>,v1=<hex HMAC-SHA256(key, t + "." + body)> -----------------------------


def calendly_signature(signing_key: str, timestamp: str, body: bytes) -> str:
    return hmac.new(signing_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_calendly(
    signing_key: str, header: str | None, body: bytes, *, tolerance_s: float = 180, now: float | None = None
) -> None:
    if not header:
        raise SignatureInvalid("missing Calendly-Webhook-Signature")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, signature = parts.get("t", "").strip(), parts.get("v1", "").strip()
    if not _digits(timestamp, 12) or not signature:
        raise SignatureInvalid("malformed Calendly-Webhook-Signature")
    _check_window(int(timestamp), tolerance_s, now)
    if not _same(calendly_signature(signing_key, timestamp, body), signature):
        raise SignatureInvalid("signature does not match")


# --- Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) ---------------------


def standard_webhooks_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = _b64(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhooks(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> None:
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    if not msg_id or not timestamp or not signatures:
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    if not _digits(timestamp, 12):
        raise SignatureInvalid("bad webhook-timestamp")
    _check_window(int(timestamp), tolerance_s, now)
    expected = standard_webhooks_signature(secret, msg_id, timestamp, body)
    if not any(_same(expected, candidate) for candidate in signatures):
        raise SignatureInvalid("signature does not match")


# --- shared secrets (HTTP Basic auth, secret path tokens) --------------------------------------


def verify_basic_auth(header: str | None, username: str, password: str) -> None:
    if not header or not header.lower().startswith("basic "):
        raise SignatureInvalid("missing basic credentials")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("malformed basic credentials") from exc
    if not hmac.compare_digest(given, f"{username}:{password}".encode()):
        raise SignatureInvalid("wrong credentials")


def verify_token(given: str | None, expected: str) -> None:
    if not given or not expected or not _same(expected, given):
        raise SignatureInvalid("wrong token")

"""Signature schemes checked against the providers' official vectors (skipped when absent)."""

from __future__ import annotations

import base64
import json

import pytest

from flywheel.webhooks import signatures as sig
from tests.conftest import SHARED_FIXTURES
from tests.webhook_helpers import UNSUPPORTED_CURVE_KEYS

needs_fixtures = pytest.mark.skipif(not SHARED_FIXTURES.exists(), reason="shared provider fixtures absent")


def fixture(name: str) -> dict:
    return json.loads((SHARED_FIXTURES / name).read_text())


@needs_fixtures
@pytest.mark.parametrize("name", ["sendgrid_single.json", "sendgrid_multi.json"])
def test_sendgrid_official_vector_verifies_and_negatives_fail(name: str) -> None:
    vector = fixture(name)
    body = (SHARED_FIXTURES / vector["payload_file"]).read_bytes()
    assert body == vector["payload_exact_string_json_escaped"].encode()
    key, signature = vector["public_key_base64_der_spki"], vector["header_X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = vector["header_X-Twilio-Email-Event-Webhook-Timestamp"]
    sig.verify_sendgrid(key, signature, timestamp, body)
    negatives = vector["negative_cases"]
    cases = [
        (negatives["bad_key"], signature, timestamp, body),
        (key, negatives["bad_signature"], timestamp, body),
        (key, signature, timestamp, negatives["bad_payload"].encode()),
        (key, signature, negatives["bad_timestamp"], body),
        (key, None, timestamp, body),
        (key, "%%%not-base64", timestamp, body),
        (key, signature, timestamp, body.rstrip(b"\r\n")),  # the trailing CRLF is signed too
    ]
    for case in cases:
        with pytest.raises(sig.SignatureInvalid):
            sig.verify_sendgrid(*case)
    # freshness: a genuine retry a day later still verifies; older, or from the future, does not
    signed_at = int(timestamp)
    day = 24 * 3600
    sig.verify_sendgrid(key, signature, timestamp, body, max_age_s=26 * 3600, now=signed_at + day)
    for now in (signed_at + 26 * 3600 + 1, signed_at - 301):
        with pytest.raises(sig.SignatureInvalid, match="window"):
            sig.verify_sendgrid(key, signature, timestamp, body, max_age_s=26 * 3600, now=now)


def test_sendgrid_window_cannot_be_set_below_a_day_of_retries() -> None:
    from flywheel.settings import ConfigurationError, Settings

    assert Settings.from_env({"SENDGRID_MAX_AGE_S": str(25 * 3600)}).sendgrid_max_age_s == 25 * 3600
    with pytest.raises(ConfigurationError, match="SENDGRID_MAX_AGE_S"):
        Settings.from_env({"SENDGRID_MAX_AGE_S": "3600"})


@needs_fixtures
def test_hubspot_official_vectors() -> None:
    for v in fixture("hubspot_signature_vectors.json")["vectors"]:
        body = v["request_body"].encode()
        if v["version"] == "v1":
            assert sig.hubspot_v1(v["client_secret"], body) == v["expected"], v["id"]
        elif v["version"] == "v2":
            assert sig.hubspot_v2(v["client_secret"], v["method"], v["uri"], body) == v["expected"], v["id"]
        else:
            assert sig.hubspot_v3(v["client_secret"], v["method"], v["uri"], body, v["timestamp"]) == v["expected"]
            headers = {"x-hubspot-signature-v3": v["expected"], "x-hubspot-request-timestamp": v["timestamp"]}
            now = int(v["timestamp"]) / 1000 + 60
            sig.verify_hubspot(
                v["client_secret"], method=v["method"], uri=v["uri"], body=body, headers=headers, now=now
            )
            with pytest.raises(sig.SignatureInvalid, match="window"):
                sig.verify_hubspot(
                    v["client_secret"], method=v["method"], uri=v["uri"], body=body, headers=headers, now=now + 300
                )
            with pytest.raises(sig.SignatureInvalid, match="does not match"):
                sig.verify_hubspot(
                    v["client_secret"], method=v["method"], uri=v["uri"] + "x", body=body, headers=headers, now=now
                )


def test_hubspot_legacy_signatures_only_when_allowed() -> None:
    body = b'[{"eventId":1}]'
    headers = {"x-hubspot-signature": sig.hubspot_v1("s3cret", body), "x-hubspot-signature-version": "v1"}
    with pytest.raises(sig.SignatureInvalid, match="not accepted"):
        sig.verify_hubspot("s3cret", method="POST", uri="https://x/y", body=body, headers=headers)
    sig.verify_hubspot("s3cret", method="POST", uri="https://x/y", body=body, headers=headers, allow_legacy=True)
    v2 = {
        "x-hubspot-signature": sig.hubspot_v2("s3cret", "POST", "https://x/y", body),
        "x-hubspot-signature-version": "v2",
    }
    sig.verify_hubspot("s3cret", method="POST", uri="https://x/y", body=body, headers=v2, allow_legacy=True)
    with pytest.raises(sig.SignatureInvalid):
        sig.verify_hubspot("s3cret", method="POST", uri="https://x/z", body=body, headers=v2, allow_legacy=True)


@needs_fixtures
def test_calendly_vector_and_window() -> None:
    vector = fixture("calendly_synthetic_vector.json")
    body = (SHARED_FIXTURES / "calendly_invitee_created_realworld_pii_redacted.json").read_bytes()
    header = vector["header_Calendly-Webhook-Signature"]
    now = int(vector["t"]) + 10
    sig.verify_calendly(vector["signing_key"], header, body, now=now)
    with pytest.raises(sig.SignatureInvalid, match="window"):
        sig.verify_calendly(vector["signing_key"], header, body, now=now + 181)
    with pytest.raises(sig.SignatureInvalid, match="does not match"):
        sig.verify_calendly("another-key", header, body, now=now)
    with pytest.raises(sig.SignatureInvalid):
        sig.verify_calendly(vector["signing_key"], "v1=abc", body, now=now)


@needs_fixtures
def test_standard_webhooks_vector() -> None:
    vector = fixture("standardwebhooks_vector.json")
    body = vector["payload_exact"].encode()
    headers = dict(vector["headers"])
    now = int(headers["webhook-timestamp"]) + 5
    assert (
        sig.standard_webhooks_signature(vector["secret"], headers["webhook-id"], headers["webhook-timestamp"], body)
        == headers["webhook-signature"]
    )
    sig.verify_standard_webhooks(vector["secret"], headers, body, now=now)
    several = {**headers, "webhook-signature": f"{vector['negative']['bad_signature']} {headers['webhook-signature']}"}
    sig.verify_standard_webhooks(vector["secret"], several, body, now=now)
    with pytest.raises(sig.SignatureInvalid):
        sig.verify_standard_webhooks(
            vector["secret"], {**headers, "webhook-signature": vector["negative"]["bad_signature"]}, body, now=now
        )
    with pytest.raises(sig.SignatureInvalid, match="window"):
        sig.verify_standard_webhooks(vector["secret"], headers, body, now=now + 400)


def test_basic_auth_and_tokens() -> None:
    good = "Basic " + base64.b64encode(b"pipedrive:pa55").decode()
    sig.verify_basic_auth(good, "pipedrive", "pa55")
    for header in (None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"pipedrive:nope").decode()):
        with pytest.raises(sig.SignatureInvalid):
            sig.verify_basic_auth(header, "pipedrive", "pa55")
    sig.verify_token("abc", "abc")
    for given, expected in (("abd", "abc"), (None, "abc"), ("", "")):
        with pytest.raises(sig.SignatureInvalid):
            sig.verify_token(given, expected)


# --- SendGrid keys: the spellings an operator may paste, loaded once ----------------------------


def _spellings(signer: object) -> dict[str, str]:
    """One P-256 public key as SendGrid shows it (base64 DER), as PEM (what Twilio's helpers and most
    tutorials print), as PEM on one line, and as a SubjectPublicKeyInfo with a compressed point."""
    from cryptography.hazmat.primitives import serialization

    public = signer.key.public_key()  # type: ignore[attr-defined]
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    algorithm = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")  # id-ecPublicKey, prime256v1
    inner = algorithm + b"\x03" + bytes([len(point) + 1]) + b"\x00" + point
    return {
        "base64": signer.public_key_b64,  # type: ignore[attr-defined]
        "pem": pem,
        "pem on one line": pem.replace("\n", ""),
        "compressed point": base64.b64encode(b"\x30" + bytes([len(inner)]) + inner).decode(),
    }


def test_a_sendgrid_key_verifies_in_every_spelling_and_is_one_key() -> None:
    """Before, a PEM key was 'not base64' on every request, and the compressed-point spelling of a
    key was another organisation's key to the duplicate check (it compared the DER bytes)."""
    from flywheel.local.signing import SendGridSigner

    signer = SendGridSigner()
    body = b'[{"event": "delivered"}]\r\n'
    headers = signer.headers(body)
    signature, timestamp = (
        headers["X-Twilio-Email-Event-Webhook-Signature"],
        headers["X-Twilio-Email-Event-Webhook-Timestamp"],
    )
    spellings = _spellings(signer)
    for spelling, key in spellings.items():
        sig.verify_sendgrid(key, signature, timestamp, body)  # (raises SignatureInvalid if not)
        assert sig.sendgrid_key_id(key) == base64.b64decode(signer.public_key_b64), spelling
    with pytest.raises(sig.SignatureInvalid):
        sig.verify_sendgrid(spellings["pem"], signature, timestamp, body + b" ")


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("c2VuZGdyaWQta2V5", "not a DER SubjectPublicKeyInfo public key"),
        ("MFkw-_not_base64", "not base64"),
        ("rsa", "not an EC P-256 public key"),
        ("p384", "not an EC P-256 public key"),
        # a curve cryptography cannot load: UnsupportedAlgorithm (no ValueError) escaped, a 500
        *((key, "not an EC P-256 public key") for key in UNSUPPORTED_CURVE_KEYS.values()),
    ],
)
def test_a_value_that_is_no_sendgrid_key_is_refused_saying_why(key: str, why: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key in ("rsa", "p384"):
        private = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if key == "rsa"
            else ec.generate_private_key(ec.SECP384R1())
        )
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key = base64.b64encode(der).decode()
    with pytest.raises(ValueError, match=why):
        sig.sendgrid_public_key(key)
    with pytest.raises(sig.SignatureInvalid, match="unusable public key"):
        sig.verify_sendgrid(key, "c2ln", "1795600000", b"[]")


def test_a_sendgrid_key_is_loaded_once_whatever_the_requests() -> None:
    """A request is tried against every organisation's keys (300 organisations rotating: 600): each
    key text is loaded once per execution environment, so a request pays only for the verifications."""
    from flywheel.local.signing import SendGridSigner

    signer, other = SendGridSigner(), SendGridSigner()
    body = b"[]\r\n"
    headers = other.headers(body)  # signed by another key: every request is refused
    sig.sendgrid_public_key.cache_clear()
    for _ in range(3):
        with pytest.raises(sig.SignatureInvalid, match="does not match"):
            sig.verify_sendgrid(
                signer.public_key_b64,
                headers["X-Twilio-Email-Event-Webhook-Signature"],
                headers["X-Twilio-Email-Event-Webhook-Timestamp"],
                body,
            )
    info = sig.sendgrid_public_key.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_a_standard_webhooks_secret_must_be_base64_with_a_key() -> None:
    assert sig.standard_webhooks_key("whsec_" + base64.b64encode(b"k" * 24).decode()) == b"k" * 24
    assert sig.standard_webhooks_key(base64.b64encode(b"k" * 24).decode()) == b"k" * 24
    for secret, why in (("whsec_-_-_-_-_-_-_-_", "not base64"), ("whsec_", "an empty key")):
        with pytest.raises(ValueError, match=why):
            sig.standard_webhooks_key(secret)

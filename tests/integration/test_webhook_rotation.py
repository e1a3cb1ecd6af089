"""Rotating a webhook credential without a gap (README "Rotating a webhook credential").

A provider's credential changes at the provider at one moment and in our secret at another, and
deliveries already in flight (or retried for hours) still carry the old value: with one value only,
every delivery in between was refused (and Salesforce's, Pipedrive's, the in-house systems' lost after
their retries). A credential may now be a list of values, the new one first, all accepted; the value
that matched still decides the organisation, and a match on an older value is logged and counted
(WebhookCredentialPrevious), so the operator sees when the old value can go. Once removed it is refused.
Through the local API with the real PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flywheel.clients.aws import reset_clients
from flywheel.local import signing
from flywheel.local.signing import SendGridSigner
from flywheel.settings import reset_settings
from tests.conftest import ApiClient, count, load_event
from tests.integration.test_webhook_credentials import (
    GLOBEX_SF,
    ORGS,
    PER_ORG,
    calendly_body,
    parse_form,
    pipedrive_delivery,
    post_reply,
    reply_mail,
    salesforce_body,
)
from tests.webhook_helpers import DEEPLY_NESTED, SECRETS, SIGNER, UNSUPPORTED_CURVE_KEYS, configure, sendgrid_body

ACME_SF = "00D7F00000107Xs"
HUBSPOT_URL = "https://hooks.flywheel.example/webhooks/crm/hubspot"
NEW_SIGNER = SendGridSigner()
NEW_CRM = "whsec_" + base64.b64encode(b"new-in-house-secret-98765432").decode()

# provider -> (the secret names it reads, its new value(s), the status a refused value answers)
NEW: dict[str, dict[str, str]] = {
    "sendgrid": {"sendgrid_public_key": NEW_SIGNER.public_key_b64},
    "sendgrid_inbound": {"inbound_parse_token": "inbound-token-new"},
    "calendly": {"calendly_signing_key": "calendly-key-new"},
    "hubspot": {"hubspot_client_secret": "hubspot-secret-new"},
    "pipedrive": {"pipedrive_password": "pd-pass-new"},  # the login's password rotates, the user stays
    "salesforce": {"salesforce_token": "sf-token-new"},
    "crm": {"crm_webhook_secret": NEW_CRM},
}
REFUSED = {"sendgrid_inbound": 403, "salesforce": 403}
PIPEDRIVE_LOGIN = "pipedrive_username/pipedrive_password"  # how the signal names the login (a pair)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[None]:
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replies")["QueueUrl"]
        configure(monkeypatch, REPLIES_QUEUE_URL=url, HUBSPOT_WEBHOOK_URL=HUBSPOT_URL)
        yield
        reset_clients()


def use_secrets(monkeypatch: pytest.MonkeyPatch, secrets: dict[str, Any], orgs: dict[str, str] | None = None) -> None:
    monkeypatch.setenv("WEBHOOK_SECRETS_JSON", json.dumps(secrets))
    if orgs is not None:
        monkeypatch.setenv("PROVIDER_ORGS_JSON", json.dumps(orgs))
    reset_settings()


def deliver(api: ApiClient, provider: str, held: dict[str, str]) -> tuple[int, Any]:
    """One new delivery of `provider`, authenticated with the credential values `held` (as the
    provider's side holds them: one value each)."""
    unique = uuid.uuid4().hex[:12]
    if provider == "sendgrid":
        signer = NEW_SIGNER if held["sendgrid_public_key"] == NEW_SIGNER.public_key_b64 else SIGNER
        body = sendgrid_body(
            [{"email": "a@example.com", "timestamp": 1795600000, "event": "delivered", "sg_event_id": unique}]
        )
        return api.post("/webhooks/sendgrid", body=body, headers=signer.headers(body))
    if provider == "sendgrid_inbound":
        inbox = "sales@reply.flywheel.example"
        form = parse_form(reply_mail(inbox, inbox).replace("Message-ID: <", f"Message-ID: <{unique}"), [inbox])
        return post_reply(api, held["inbound_parse_token"], form)
    if provider == "calendly":
        body = calendly_body(f"https://api.calendly.com/users/{unique}")
        return api.post(
            "/webhooks/calendly", body=body, headers=signing.calendly_headers(held["calendly_signing_key"], body)
        )
    if provider == "hubspot":
        event = {
            "eventId": unique,
            "portalId": 5799819,
            "occurredAt": 1795600000000,
            "subscriptionType": "deal.creation",
        }
        body = json.dumps([event]).encode()
        headers = signing.hubspot_headers(held["hubspot_client_secret"], body, HUBSPOT_URL)
        return api.post("/webhooks/crm/hubspot", body=body, headers=headers)
    if provider == "pipedrive":
        auth = signing.basic_auth_header(held["pipedrive_username"], held["pipedrive_password"])
        return api.post("/webhooks/crm/pipedrive", pipedrive_delivery("123", unique), headers=auth)
    if provider == "salesforce":
        status, answer, _ = api.request(
            "POST",
            f"/webhooks/crm/salesforce/{held['salesforce_token']}",
            body=salesforce_body(ACME_SF, f"04l{unique}"),
            headers={"Content-Type": "text/xml"},
        )
        return status, answer
    body = load_event("webhooks_crm_deal_won.json")["body"].encode()
    headers = signing.standard_headers(held["crm_webhook_secret"], body, f"msg_{unique}", int(time.time()))
    return api.post("/webhooks/crm/deals", body=body, headers=headers)


def previous_value_signals(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> list[dict[str, Any]]:
    """What the requests since the last call said about a previous credential value: the
    WebhookCredentialPrevious metric (EMF, printed) and the log line's fields."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "WebhookCredentialPrevious" in record:
            found.append(record)
    fields = ("provider", "credential", "credential_index", "org_id")
    found += [
        {name: getattr(r, name) for name in fields if hasattr(r, name)}
        for r in caplog.records
        if r.getMessage() == "webhook verified with a previous credential value"
    ]
    caplog.clear()
    return found


@pytest.mark.parametrize("provider", sorted(NEW))
def test_every_provider_accepts_the_old_and_the_new_value_during_a_rotation(
    api: ApiClient,
    db,
    stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    provider: str,
) -> None:
    old = {name: SECRETS[name] for name in (*NEW[provider], "pipedrive_username") if name in SECRETS}
    new = {**old, **NEW[provider]}
    # 1. before: only the old value; a delivery signed with the new one (changed at the provider
    # first) is refused - the gap the rotation list closes
    status, answer = deliver(api, provider, new)
    assert status == REFUSED.get(provider, 401), answer
    # 2. the new value added in front of the old: both accepted
    use_secrets(monkeypatch, {**SECRETS, **{name: [new[name], old[name]] for name in NEW[provider]}})
    previous_value_signals(capsys, caplog)
    status, answer = deliver(api, provider, new)
    assert status == 200, answer
    assert previous_value_signals(capsys, caplog) == []  # the newest value: nothing to say
    status, answer = deliver(api, provider, old)
    assert status == 200, answer
    signals = previous_value_signals(capsys, caplog)
    metric = next(s for s in signals if "WebhookCredentialPrevious" in s)
    assert metric["WebhookCredentialPrevious"] == [1.0] and metric["provider"] == provider
    log = next(s for s in signals if "credential_index" in s)
    assert log["credential_index"] == 1 and log["provider"] == provider
    assert log["credential"] == PIPEDRIVE_LOGIN if provider == "pipedrive" else next(iter(NEW[provider]))
    assert not any(old[name] in json.dumps(signals) for name in NEW[provider])  # names and indexes only
    # 3. the old value removed: refused again, the new one still accepted
    use_secrets(monkeypatch, {**SECRETS, **{name: [new[name]] for name in NEW[provider]}})
    stored = count(db, "outcome_events")
    status, answer = deliver(api, provider, old)
    assert status == REFUSED.get(provider, 401), answer
    assert count(db, "outcome_events") == stored
    status, answer = deliver(api, provider, new)
    assert status == 200, answer


def test_a_pipedrive_login_rotates_as_a_pair(api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user and password replace the old pair: the halves pair by position, so the new user
    with the old password (or the reverse) is no login."""
    use_secrets(
        monkeypatch,
        {
            **SECRETS,
            "pipedrive_username": ["pd-user-new", "pipedrive"],
            "pipedrive_password": ["pd-pass-new", "pd-pass"],
        },
    )
    for user, password, status in (
        ("pd-user-new", "pd-pass-new", 200),
        ("pipedrive", "pd-pass", 200),
        ("pd-user-new", "pd-pass", 401),
        ("pipedrive", "pd-pass-new", 401),
    ):
        got, answer = deliver(api, "pipedrive", {"pipedrive_username": user, "pipedrive_password": password})
        assert got == status, (user, password, answer)
    assert count(db, "outcome_events") == 2


def test_the_matched_value_still_decides_the_organisation(
    api: ApiClient,
    db,
    stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Per organisation, globex's old token is still globex's during its rotation: its deliveries
    are globex's, acme's token still cannot write into globex, and the signal names globex."""
    rotating = {
        **PER_ORG,
        "salesforce_token": {"acme": "sf-token-acme", "globex": ["sf-globex-new", "sf-token-globex"]},
    }
    use_secrets(monkeypatch, rotating, ORGS)
    previous_value_signals(capsys, caplog)
    for token, notification in (("sf-globex-new", "04lGLOBEXNEW0001"), ("sf-token-globex", "04lGLOBEXOLD0001")):
        status, answer, _ = api.request(
            "POST",
            f"/webhooks/crm/salesforce/{token}",
            body=salesforce_body(GLOBEX_SF, notification),
            headers={"Content-Type": "text/xml"},
        )
        assert status == 200, answer
    rows = db.execute("SELECT org_id FROM outcome_events WHERE provider = 'salesforce'").fetchall()
    assert [r["org_id"] for r in rows] == ["globex", "globex"]
    log = next(s for s in previous_value_signals(capsys, caplog) if "credential_index" in s)
    assert (log["org_id"], log["credential"], log["credential_index"]) == ("globex", "salesforce_token", 1)
    status, answer, _ = api.request(
        "POST",
        "/webhooks/crm/salesforce/sf-token-acme",
        body=salesforce_body(GLOBEX_SF, "04lFORGED0000009"),
        headers={"Content-Type": "text/xml"},
    )
    assert status == 403 and "not an account of this credential's organisation" in answer["message"], answer
    assert count(db, "outcome_events") == 2


def test_flywheel_sign_signs_with_the_first_value(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "salesforce_token": {"acme": ["sf-new", "sf-old"]},
        "calendly_signing_key": ["cal-new", "cal-old"],
        "pipedrive_username": "pd",
        "pipedrive_password": ["pw-new", "pw-old"],
    }
    url, _ = signing.sign_body(signing.PROVIDERS["salesforce"], secrets, b"<x/>", "http://127.0.0.1:8081", org="acme")
    assert url.endswith("/webhooks/crm/salesforce/sf-new")
    body = b'{"event": "invitee.created"}'
    _, headers = signing.sign_body(signing.PROVIDERS["calendly"], secrets, body, "http://127.0.0.1:8081")
    timestamp = headers["Calendly-Webhook-Signature"].split(",")[0].removeprefix("t=")
    assert headers["Calendly-Webhook-Signature"].endswith(
        signing.signatures.calendly_signature("cal-new", timestamp, body)
    )
    _, headers = signing.sign_body(signing.PROVIDERS["pipedrive"], secrets, b"{}", "http://127.0.0.1:8081")
    assert headers["Authorization"] == signing.basic_auth_header("pd", "pw-new")["Authorization"]


# --- a malformed list: a configuration error naming the credential, never its value -----------


def test_a_malformed_rotation_list_is_named_by_the_deep_health_check(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="flywheel/test/webhooks-rotation",
        SecretString=json.dumps({**SECRETS, "calendly_signing_key": ["calendly-key-456", "calendly-key-456"]}),
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", secret)
    monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
    reset_settings()
    status, answer = deliver(api, "calendly", SECRETS)
    assert status == 503 and answer["error"] == "configuration_error", answer
    assert answer["message"] == "invalid configuration: WEBHOOK_SECRETS_ARN"
    status, answer = deliver(api, "salesforce", SECRETS)  # the other providers keep working
    assert status == 200, answer
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["message"] == "failing: webhooks_secret (WEBHOOK_SECRETS_ARN)", health
    why = health["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"]
    assert why == "calendly_signing_key lists the same value twice"
    assert "calendly-key-456" not in json.dumps(health)
    # inline (local runs): the settings refuse it when they load, naming the variable and the key
    use_secrets(monkeypatch, {**SECRETS, "salesforce_token": []})
    monkeypatch.delenv("WEBHOOK_SECRETS_ARN")
    reset_settings()
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["checks"]["settings"]["invalid"] == {
        "WEBHOOK_SECRETS_JSON": "salesforce_token is an empty list: give at least one value"
    }, health


# --- review fixes: what a rotation must not let through, or lose -------------------------------


def webhook_secret_arn(monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    """The webhook secrets behind WEBHOOK_SECRETS_ARN (a new name each: the secrets client caches by
    name), holding `text` as it is written (not re-serialised: a key given twice stays twice)."""
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"flywheel/test/webhooks-{uuid.uuid4().hex[:8]}", SecretString=text
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", arn)
    monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
    reset_settings()
    return arn


def test_a_one_value_pipedrive_list_is_no_half_kept_for_every_value(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 4 done half-way (the old user removed, the old password not yet): `["<new user>"]` is a
    list, and two lists pair by position. Before, a one-value list went with every password like a
    plain string, so the new user logged in with the old password (200, stored)."""
    use_secrets(
        monkeypatch,
        {**SECRETS, "pipedrive_username": ["pd-user-new"], "pipedrive_password": ["pd-pass-new", "pd-pass"]},
    )
    for password in ("pd-pass", "pd-pass-new"):
        status, answer = deliver(
            api, "pipedrive", {"pipedrive_username": "pd-user-new", "pipedrive_password": password}
        )
        assert status == 503 and answer["error"] == "configuration_error", answer
    assert count(db, "outcome_events") == 0
    status, health = api.get("/health/webhooks/deep")
    assert "pipedrive_username and pipedrive_password list different numbers of values" in json.dumps(health)


def test_a_credential_given_twice_in_the_secret_is_refused_not_silently_dropped(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 1 done by adding the list above the line already there: json.loads kept the last copy,
    so the new token was silently not accepted, and every delivery refused (403) once Salesforce
    used it. Now that credential is refused (503, the provider retries) naming it, never a value,
    and the other providers keep working."""
    text = '{"salesforce_token": ["sf-token-new", "sf-token-abc"], ' + json.dumps(SECRETS)[1:]
    webhook_secret_arn(monkeypatch, text)
    for token in ("sf-token-new", "sf-token-abc"):
        status, answer = deliver(api, "salesforce", {"salesforce_token": token})
        assert status == 503 and answer["message"] == "invalid configuration: WEBHOOK_SECRETS_ARN", answer
    status, answer = deliver(api, "calendly", SECRETS)
    assert status == 200, answer
    status, health = api.get("/health/webhooks/deep")
    assert status == 503, health
    assert health["checks"]["webhooks_secret"]["invalid"] == {
        "WEBHOOK_SECRETS_ARN": "salesforce_token is given twice in the secret (only the last copy would count): "
        "keep one line"
    }
    assert "sf-token" not in json.dumps(health)
    assert count(db, "outcome_events") == 1  # calendly's


def test_a_request_reads_one_version_of_the_secret(api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two halves of a Pipedrive login were read in two calls, each through the 5-minute cache:
    a refresh between them (put-secret-value during step 4) paired the old user with the new password,
    a login neither version holds. Now a request reads the secret once. Simulated deterministically:
    each read returns the next version."""
    from flywheel.clients import secrets as secrets_client

    before = {
        **SECRETS,
        "pipedrive_username": ["pd-user-new", "pipedrive"],
        "pipedrive_password": ["pd-pass-new", "pd-pass"],
    }
    after = {**SECRETS, "pipedrive_username": "pd-user-new", "pipedrive_password": "pd-pass-new"}
    arn = webhook_secret_arn(monkeypatch, json.dumps(before))
    versions = [json.dumps(before), *[json.dumps(after)] * 5]
    reads: list[str] = []
    real = secrets_client.get_secret

    def next_version(name: str, *, fresh: bool = False) -> str:
        if name != arn:
            return real(name, fresh=fresh)
        reads.append(name)
        return versions[len(reads) - 1]

    monkeypatch.setattr(secrets_client, "get_secret", next_version)
    status, answer = deliver(api, "pipedrive", {"pipedrive_username": "pipedrive", "pipedrive_password": "pd-pass-new"})
    assert status == 401, answer
    assert len(reads) == 1
    status, answer = deliver(
        api, "pipedrive", {"pipedrive_username": "pd-user-new", "pipedrive_password": "pd-pass-new"}
    )
    assert status == 200, answer
    assert len(reads) == 2 and count(db, "outcome_events") == 1


def test_a_sendgrid_key_pasted_as_pem_verifies(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog
) -> None:
    """The new SendGrid key pasted as PEM (as Twilio's helpers print it) passed validation and
    refused every delivery signed with it ('not base64'); during a rotation the old key kept
    working until SendGrid switched, then WebhookCredentialPrevious fell to zero and every batch
    was a 401. A PEM key is now the same key."""
    from cryptography.hazmat.primitives import serialization

    pem = (
        NEW_SIGNER.key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    use_secrets(monkeypatch, {**SECRETS, "sendgrid_public_key": [pem, SECRETS["sendgrid_public_key"]]})
    previous_value_signals(capsys, caplog)
    status, answer = deliver(api, "sendgrid", {"sendgrid_public_key": NEW_SIGNER.public_key_b64})
    assert status == 200, answer
    assert not previous_value_signals(capsys, caplog)  # verified by the first (new) value
    assert count(db, "outcome_events") == 1


def test_an_in_house_secret_that_can_never_verify_is_refused(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-house secret in URL-safe base64 passed validation and could never verify a request: it
    is refused when the secret is read (naming the credential and its position, never the value),
    before the in-house system switches to it; the other providers keep working."""
    secret = "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode()
    webhook_secret_arn(
        monkeypatch, json.dumps({**SECRETS, "crm_webhook_secret": [secret, SECRETS["crm_webhook_secret"]]})
    )
    status, answer = deliver(api, "crm", SECRETS)
    assert status == 503 and answer["message"] == "invalid configuration: WEBHOOK_SECRETS_ARN", answer
    status, answer = deliver(api, "salesforce", SECRETS)
    assert status == 200, answer
    status, health = api.get("/health/webhooks/deep")
    why = health["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"]
    assert why.startswith("crm_webhook_secret[0] is not a Standard Webhooks secret (not base64)"), why
    assert secret[6:] not in json.dumps(health)


# --- re-review: operators' values that answered 500 rather than 503 naming the credential ---------


def test_a_sendgrid_key_on_a_curve_cryptography_cannot_load_is_refused_naming_it(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EC key on a curve `cryptography` lacks (SM2, pasted from another system) raised
    UnsupportedAlgorithm, which is no ValueError: behind WEBHOOK_SECRETS_ARN every webhook route
    answered 500 (the check of the whole secret raised), inline the settings did not load (every route
    500, the deep health check too). Now it is a SendGrid key that is not EC P-256: SendGrid's route
    is refused (503 configuration_error), the other providers' keep working."""
    webhook_secret_arn(
        monkeypatch,
        json.dumps({**SECRETS, "sendgrid_public_key": [UNSUPPORTED_CURVE_KEYS["SM2"], SECRETS["sendgrid_public_key"]]}),
    )
    status, answer = deliver(api, "salesforce", SECRETS)
    assert status == 200, answer
    status, answer = deliver(api, "sendgrid", SECRETS)
    assert (status, answer) == (
        503,
        {"error": "configuration_error", "message": "invalid configuration: WEBHOOK_SECRETS_ARN"},
    ), answer
    status, health = api.get("/health/webhooks/deep")
    assert status == 503, health
    assert health["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"].startswith(
        "sendgrid_public_key[0] is not a SendGrid verification key (not an EC P-256 public key)"
    ), health
    assert count(db, "outcome_events") == 1  # salesforce's

    monkeypatch.delenv("WEBHOOK_SECRETS_ARN")
    use_secrets(monkeypatch, {**SECRETS, "sendgrid_public_key": UNSUPPORTED_CURVE_KEYS["brainpoolP160r1"]})
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["message"] == "failing: settings (WEBHOOK_SECRETS_JSON)", health
    assert "sendgrid_public_key is not a SendGrid verification key (not an EC P-256" in json.dumps(health), health
    assert UNSUPPORTED_CURVE_KEYS["brainpoolP160r1"][20:50] not in json.dumps(health)


def test_a_value_holding_a_lone_surrogate_is_refused_not_a_500_for_every_organisation(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON's "\\ud83d" without its pair (half an escaped emoji) passed as a non-empty string; every
    verifier encodes the value as UTF-8, so acme's value, tried first, raised UnicodeEncodeError: a
    500 for globex's deliveries too. It is refused when the secret is read, naming the credential and
    the organisation; the other providers keep working."""
    monkeypatch.setenv("PROVIDER_ORGS_JSON", json.dumps(ORGS))
    text = json.dumps({**PER_ORG, "salesforce_token": {"acme": "\ud83d", "globex": "sf-token-globex"}})
    assert "\\ud83d" in text  # (the secret holds the escape, as JSON writes it)
    webhook_secret_arn(monkeypatch, text)
    status, answer = deliver(api, "salesforce", {"salesforce_token": "sf-token-globex"})
    assert status == 503 and answer["error"] == "configuration_error", answer
    status, answer = deliver(api, "calendly", {"calendly_signing_key": "calendly-acme-3"})
    assert status == 200, answer
    status, health = api.get("/health/webhooks/deep")
    why = health["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"]
    assert why.startswith("salesforce_token of acme is not valid text"), why
    assert count(db, "outcome_events") == 1  # calendly's


def test_a_secret_nested_too_deeply_is_a_configuration_error(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """json.loads raises RecursionError (no ValueError) past ~1,000 levels: a note nested that deep
    in the webhook secret answered 500 on every webhook route. It is a secret that is not JSON."""
    webhook_secret_arn(monkeypatch, json.dumps(SECRETS)[:-1] + ', "notes": ' + DEEPLY_NESTED + "}")
    status, answer = deliver(api, "salesforce", SECRETS)
    assert (status, answer) == (
        503,
        {"error": "configuration_error", "message": "invalid configuration: WEBHOOK_SECRETS_ARN"},
    ), answer
    status, health = api.get("/health/webhooks/deep")
    assert health["checks"]["webhooks_secret"]["invalid"] == {
        "WEBHOOK_SECRETS_ARN": "the secret is not valid JSON (nested too deeply)"
    }, health
    assert count(db, "outcome_events") == 0


def test_a_key_named_the_empty_string_given_twice_refuses_no_route(
    api: ApiClient, db, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole JSON's problems were filed under the name "", which a key can be: a key "" written
    twice (a stray line) refused every webhook route. Now only that key is named (the deep check)."""
    webhook_secret_arn(monkeypatch, '{"": 1, "": 2, ' + json.dumps(SECRETS)[1:])
    for provider in ("salesforce", "calendly"):
        status, answer = deliver(api, provider, SECRETS)
        assert status == 200, (provider, answer)
    status, health = api.get("/health/webhooks/deep")
    assert health["checks"]["webhooks_secret"]["invalid"] == {
        "WEBHOOK_SECRETS_ARN": '"" is given twice in the secret (only the last copy would count): keep one line'
    }, health

"""The provider account map kept in Secrets Manager (PROVIDER_ORGS_ARN, README "Webhooks").

Inline, PROVIDER_ORGS_JSON shares Lambda's 4 KB environment with every other variable of the function
(and CloudFormation caps a parameter at 4096 bytes): a few dozen organisations' accounts and the
deploy fails. The secret (up to 64 KB) holds the same JSON; WebhooksFunction reads it through the
secrets client's cache, as the API caller mapping is read (API_CALLER_ORGS_ARN), refuses a map it
cannot read or use (503 configuration_error naming PROVIDER_ORGS_ARN, never an account), checks the
webhook credentials against it, and the deep health check says so. Through the local API with moto's
Secrets Manager and the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flywheel.clients.aws import reset_clients
from flywheel.local import signing
from flywheel.settings import ConfigurationError, Settings, reset_settings
from tests.conftest import ROOT, ApiClient, count
from tests.integration.test_caller_orgs_secret import LAMBDA_ENVIRONMENT_LIMIT
from tests.integration.test_webhook_credentials import GLOBEX_SF, ORGS, PER_ORG, pipedrive_delivery, salesforce_body
from tests.webhook_helpers import DEEPLY_NESTED, configure


def many_organisations(customers: int) -> dict[str, str]:
    """acme's and globex's accounts, and a Salesforce org of each of `customers` more organisations."""
    return {**ORGS, **{f"salesforce:00DCUST{i:08d}": f"customer-{i:03d}" for i in range(customers)}}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[Any]:
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        yield boto3.client("secretsmanager", region_name="us-east-1")
    reset_clients()


def use_secret(
    monkeypatch: pytest.MonkeyPatch, client: Any, value: str | None, webhook_secrets: dict[str, Any] = PER_ORG
) -> str:
    """A new secret (a new name: the secrets client caches by name) holding `value`, or none; the
    inline map unset, the webhook credentials one per organisation."""
    name = f"flywheel/test/provider-orgs-{uuid.uuid4().hex[:8]}"
    arn = (
        client.create_secret(Name=name, SecretString=value)["ARN"]
        if value is not None
        else f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"
    )
    configure(monkeypatch, PROVIDER_ORGS_ARN=arn, WEBHOOK_SECRETS_JSON=json.dumps(webhook_secrets))
    monkeypatch.delenv("PROVIDER_ORGS_JSON", raising=False)
    return arn


def post_salesforce(api: ApiClient, token: str, organization_id: str) -> tuple[int, Any]:
    status, answer, _ = api.request(
        "POST",
        f"/webhooks/crm/salesforce/{token}",
        body=salesforce_body(organization_id, f"04l{uuid.uuid4().hex[:12]}"),
        headers={"Content-Type": "text/xml"},
    )
    return status, answer


def test_a_map_too_large_for_the_environment_works_from_the_secret(
    secrets: Any, db, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = many_organisations(300)
    assert len(json.dumps(mapping).encode()) > 3 * LAMBDA_ENVIRONMENT_LIMIT  # could never be inline
    use_secret(monkeypatch, secrets, json.dumps(mapping))
    status, answer = post_salesforce(api, "sf-token-globex", GLOBEX_SF)
    assert status == 200 and "<Ack>true</Ack>" in answer, answer
    rows = db.execute("SELECT org_id FROM outcome_events").fetchall()
    assert [r["org_id"] for r in rows] == ["globex"]
    # the allow-list is the secret's: an org id it does not list is refused
    status, answer = post_salesforce(api, "sf-token-globex", "00DNOTLISTED0001")
    assert status == 403 and "is not allowed" in answer["message"], answer
    # and so is the per-credential check: acme's token naming globex's Salesforce org
    status, answer = post_salesforce(api, "sf-token-acme", GLOBEX_SF)
    assert status == 403 and "not an account of this credential's organisation" in answer["message"], answer
    assert count(db, "outcome_events") == 1
    status, health = api.get("/health/webhooks/deep")
    assert status == 200, health
    assert health["checks"]["provider_orgs_secret"]["ok"]
    assert health["checks"]["provider_orgs_secret"]["provider_accounts"] == len(mapping)


def test_the_credentials_are_checked_against_the_secrets_map(
    secrets: Any, db, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Salesforce token while the secret maps Salesforce to 301 organisations: that token is
    refused (whoever holds it could write into every one of them), the other providers keep working."""
    use_secret(
        monkeypatch,
        secrets,
        json.dumps(many_organisations(300)),
        {**PER_ORG, "salesforce_token": "sf-token-shared"},
    )
    status, answer = post_salesforce(api, "sf-token-shared", GLOBEX_SF)
    assert status == 503 and answer == {
        "error": "configuration_error",
        "message": "invalid configuration: WEBHOOK_SECRETS_JSON",
    }, answer
    assert count(db, "outcome_events") == 0
    acme = signing.basic_auth_header("pd-acme", "pd-pass-acme")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery("8087566", "pd-1"), headers=acme)
    assert status == 200, answer
    assert [r["org_id"] for r in db.execute("SELECT org_id FROM outcome_events").fetchall()] == ["acme"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "the secret cannot be read (ResourceNotFoundException)"),
        ("{not json", "not valid JSON"),
        ("{}", "the secret maps no provider account"),
        ('{"salesforce:00D1": "acme", "salesforce:00D1": "globex"}', "keys 1 and 2 are the same key"),
        (json.dumps({"zoom:1": "acme"}), 'key 1 is not "<provider>:<account id>"'),
        (json.dumps({"hubspot:1": "a c m e"}), "the organisation of key 1"),
        # json.loads raises RecursionError (no ValueError) that deep: it answered 500
        ('{"hubspot:1": ' + DEEPLY_NESTED + "}", "not valid JSON (nested too deeply)"),
    ],
)
def test_a_secret_that_cannot_be_read_or_used_is_a_configuration_error(
    secrets: Any, db, api: ApiClient, monkeypatch: pytest.MonkeyPatch, value: str | None, why: str
) -> None:
    """Never an organisation guessed from a map that is not there: every webhook route answers 503
    configuration_error naming the variable (never an account), writes nothing (the provider retries),
    and the deep health check names it and why."""
    use_secret(monkeypatch, secrets, value)
    status, answer = post_salesforce(api, "sf-token-globex", GLOBEX_SF)
    assert status == 503 and answer == {
        "error": "configuration_error",
        "message": "invalid configuration: PROVIDER_ORGS_ARN",
    }, answer
    assert count(db, "outcome_events") == 0
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["message"] == "failing: provider_orgs_secret (PROVIDER_ORGS_ARN)", health
    assert why in health["checks"]["provider_orgs_secret"]["invalid"]["PROVIDER_ORGS_ARN"]
    assert "00D1" not in json.dumps(health) and "acme" not in json.dumps(health)


def test_a_changed_secret_applies_without_a_deploy(
    secrets: Any, db, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = use_secret(monkeypatch, secrets, json.dumps({k: v for k, v in ORGS.items() if v == "acme"}))
    status, answer = post_salesforce(api, "sf-token-globex", GLOBEX_SF)
    assert status == 403 and "is not allowed" in answer["message"], answer
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(ORGS))
    api.get("/health/webhooks/deep")  # reads it fresh (as the secrets cache does after its 5 minutes)
    status, answer = post_salesforce(api, "sf-token-globex", GLOBEX_SF)
    assert status == 200, answer


def test_one_source_only() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"PROVIDER_ORGS_JSON": json.dumps({"hubspot:1": "acme"}), "PROVIDER_ORGS_ARN": "arn:x"})
    assert refused.value.problems == {
        "PROVIDER_ORGS_ARN": "Value error, set PROVIDER_ORGS_ARN or PROVIDER_ORGS_JSON, not both"
    }
    # the template's default ({}) is no inline map
    assert Settings.from_env({"PROVIDER_ORGS_JSON": "{}", "PROVIDER_ORGS_ARN": "arn:x"}).provider_orgs_arn == "arn:x"


def test_the_template_gives_the_webhooks_the_secret_and_forbids_both_sources() -> None:
    from flywheel.local.template import read_template

    template = read_template(ROOT / "template.yaml")
    readers = {name for name, spec in template.functions().items() if "PROVIDER_ORGS_ARN" in spec.raw_environment}
    assert readers == {"WebhooksFunction"}  # the only code that reads the map
    assert template.functions()["WebhooksFunction"].raw_environment["PROVIDER_ORGS_ARN"] == {
        "Ref": "ProviderOrgsSecretArn"
    }
    rule = template.body["Rules"]["OneProviderOrgsSource"]["Assertions"][0]["Assert"]
    assert rule["Fn::Or"] == [
        {"Fn::Equals": [{"Ref": "ProviderOrgs"}, "{}"]},
        {"Fn::Equals": [{"Ref": "ProviderOrgs"}, ""]},  # (the settings read an empty ProviderOrgs as {})
        {"Fn::Equals": [{"Ref": "ProviderOrgsSecretArn"}, ""]},
    ]


@pytest.mark.parametrize("variable", ["PROVIDER_ORGS_ARN", "WEBHOOK_SECRETS_ARN"])
def test_a_binary_secret_that_is_not_utf8_is_a_configuration_error(
    secrets: Any, db, api: ApiClient, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A SecretBinary value that is not UTF-8 text (the map gzip'ed to fit 64 KB, or written with
    --secret-binary in UTF-16) answered 500 internal_error and the deep check said only
    `UnicodeDecodeError`: it is the operator's to fix, like a secret holding invalid JSON."""
    name = f"flywheel/test/binary-{uuid.uuid4().hex[:8]}"
    content = ORGS if variable == "PROVIDER_ORGS_ARN" else PER_ORG
    arn = secrets.create_secret(Name=name, SecretBinary=json.dumps(content).encode("utf-16"))["ARN"]
    if variable == "PROVIDER_ORGS_ARN":
        configure(monkeypatch, PROVIDER_ORGS_ARN=arn, WEBHOOK_SECRETS_JSON=json.dumps(PER_ORG))
        monkeypatch.delenv("PROVIDER_ORGS_JSON")
        check = "provider_orgs_secret"
    else:
        configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps(ORGS), WEBHOOK_SECRETS_ARN=arn)
        monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
        check = "webhooks_secret"
    reset_settings()
    status, answer = post_salesforce(api, "sf-token-globex", GLOBEX_SF)
    assert (status, answer) == (503, {"error": "configuration_error", "message": f"invalid configuration: {variable}"})
    assert count(db, "outcome_events") == 0
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["checks"][check]["invalid"] == {variable: "the secret is not UTF-8 text"}, health

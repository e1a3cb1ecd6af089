"""The API caller mapping kept in Secrets Manager (API_CALLER_ORGS_ARN, README "Tenancy").

Inline, API_CALLER_ORGS_JSON sits in the environment of five functions, which Lambda caps at 4 KB
for all variables together (and CloudFormation a parameter at 4096 bytes): one sender role per
customer stops deploying at a few dozen customers. The secret (up to 64 KB) holds the same JSON;
the functions read it through the secrets client's cache, refuse a mapping they cannot read or use
(503 configuration_error naming API_CALLER_ORGS_ARN, never a key), and the deep health check says so.
Through the handlers with moto's Secrets Manager and the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from flywheel.clients.aws import reset_clients
from flywheel.local.invoke import invoke
from flywheel.settings import ConfigurationError, Settings
from tests.conftest import ROOT, count, load_event
from tests.webhook_helpers import DEEPLY_NESTED, configure

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/"
LAMBDA_ENVIRONMENT_LIMIT = 4096  # bytes, every variable's name and value of one function (Lambda quotas)


def one_role_per_customer(customers: int) -> dict[str, list[str]]:
    """README "Several organisations' callers": a sender role per customer, plus the platform backend;
    the sample events' caller (assumed-role/sender) is customer acme's."""
    mapping = {f"{ROLE}customer-{i:03d}-sender": [f"customer-{i:03d}"] for i in range(customers)}
    mapping[f"{ROLE}sender"] = ["acme"]
    mapping[f"{ROLE}platform-backend"] = ["*"]
    return mapping


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[Any]:
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        yield boto3.client("secretsmanager", region_name="us-east-1")
    reset_clients()


def use_secret(monkeypatch: pytest.MonkeyPatch, client: Any, value: str | None) -> str:
    """A new secret (a new name: the secrets client caches by name) holding `value`, or none."""
    name = f"flywheel/test/api-callers-{uuid.uuid4().hex[:8]}"
    arn = (
        client.create_secret(Name=name, SecretString=value)["ARN"]
        if value is not None
        else f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{name}-AbCdEf"
    )
    configure(monkeypatch, API_CALLER_ORGS_ARN=arn)
    monkeypatch.delenv("API_CALLER_ORGS_JSON", raising=False)
    return arn


def register_batch(org: str) -> dict[str, Any]:
    batch = load_event("messages_register_batch.json")
    body = json.loads(batch["body"])
    for message in body["messages"]:
        message["org_id"] = org
    batch["body"] = json.dumps(body)
    return invoke("MessagesFunction", batch, ROOT / "template.yaml")


def deep_health() -> tuple[int, dict[str, Any]]:
    event = load_event("route_get.json")
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = "/health/routing/deep"
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    answer = invoke("RoutingFunction", event, ROOT / "template.yaml")
    return answer["statusCode"], json.loads(answer["body"])


def test_a_mapping_too_large_for_the_environment_works_from_the_secret(
    secrets: Any, db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = one_role_per_customer(300)
    assert len(json.dumps(mapping).encode()) > 4 * LAMBDA_ENVIRONMENT_LIMIT  # could never be inline
    use_secret(monkeypatch, secrets, json.dumps(mapping))
    answer = register_batch("acme")
    assert answer["statusCode"] == 201, answer
    answer = register_batch("customer-007")  # acme's sender acting for another customer
    assert answer["statusCode"] == 403 and json.loads(answer["body"])["error"] == "forbidden", answer
    assert count(db, "outcome_labels") == len(
        json.loads(load_event("messages_register_batch.json")["body"])["messages"]
    )
    status, body = deep_health()
    assert status == 200, body
    assert body["checks"]["settings"]["org_scoping"] == "on"
    assert body["checks"]["api_callers_secret"]["ok"] and body["checks"]["api_callers_secret"]["api_callers"] == 302


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "the secret cannot be read (ResourceNotFoundException)"),
        ("{not json", "not valid JSON"),
        ("{}", "the secret maps no caller"),
        (json.dumps({f"{ROLE}sender": ["acme"], f"{ROLE}Sender": ["*"]}), "keys 1 and 2 name the same principal"),
        (json.dumps({f"{ROLE}sender": "acme"}), "the value of key 1"),
        # json.loads raises RecursionError (no ValueError) that deep: it answered 500
        (f'{{"{ROLE}sender": {DEEPLY_NESTED}}}', "not valid JSON (nested too deeply)"),
    ],
)
def test_a_secret_that_cannot_be_read_or_used_is_a_configuration_error(
    secrets: Any, db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, value: str | None, why: str
) -> None:
    """Never org scoping turned off unseen: every IAM route answers 503 configuration_error naming
    the variable (never a key), writes nothing, and the deep health check names it and why."""
    use_secret(monkeypatch, secrets, value)
    answer = register_batch("acme")
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 503 and answer["multiValueHeaders"]["Retry-After"] == ["30"], answer
    assert body == {"error": "configuration_error", "message": "invalid configuration: API_CALLER_ORGS_ARN"}
    assert count(db, "outcome_labels") == 0
    status, health = deep_health()
    assert status == 503 and health["message"] == "failing: api_callers_secret (API_CALLER_ORGS_ARN)", health
    assert why in health["checks"]["api_callers_secret"]["invalid"]["API_CALLER_ORGS_ARN"]
    assert "sender" not in json.dumps(health).replace("same principal", "")


def test_a_changed_secret_applies_without_a_deploy(
    secrets: Any, db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = use_secret(monkeypatch, secrets, json.dumps({f"{ROLE}sender": ["globex"]}))
    assert register_batch("acme")["statusCode"] == 403
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({f"{ROLE}sender": ["acme"]}))
    deep_health()  # reads it fresh (as the secrets cache does after its 5 minutes)
    assert register_batch("acme")["statusCode"] == 201


def test_one_source_only() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(
            {"API_CALLER_ORGS_JSON": json.dumps({f"{ROLE}sender": ["acme"]}), "API_CALLER_ORGS_ARN": "arn:x"}
        )
    assert list(refused.value.problems) == ["API_CALLER_ORGS_ARN"]
    assert (
        Settings.from_env({"API_CALLER_ORGS_JSON": "", "API_CALLER_ORGS_ARN": "arn:x"}).api_caller_orgs_arn == "arn:x"
    )


def test_the_template_passes_the_secret_to_the_iam_functions_and_forbids_both_sources() -> None:
    from flywheel.local.template import read_template

    template = read_template(ROOT / "template.yaml")
    for spec in template.functions().values():
        if spec.raw_environment.get("API_CALLER_ORGS_JSON"):
            assert spec.raw_environment.get("API_CALLER_ORGS_ARN") == {"Ref": "ApiCallerOrgsSecretArn"}
    rule = template.body["Rules"]["OneApiCallerOrgsSource"]["Assertions"][0]["Assert"]
    assert {"Fn::Equals": [{"Ref": "ApiCallerOrgsSecretArn"}, ""]} in rule["Fn::Or"]

"""Webhook credentials decide the organisation: one organisation's credential never writes into another.

A Salesforce Outbound Message URL, a Pipedrive webhook's Basic auth, a Calendly subscription's signing
key, a SendGrid account's verification key and Inbound Parse URL, and an in-house system's secret are
each seen by the admin of the customer account that holds them. Each may be given one value per
organisation (`{"<org_id>": value}`): the value that verified a request is its organisation, and a body
naming an account ProviderOrgs maps to another organisation is refused with 403 and writes nothing (an
account id - a Salesforce org id, a Pipedrive company id - is no secret). One value for a provider that
ProviderOrgs maps to several organisations is a configuration error, never used.
"""

from __future__ import annotations

import base64
import json
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
from tests.webhook_helpers import PROVIDER_ORGS, SECRETS, SIGNER, configure, sendgrid_body

GLOBEX_SF = "00DGL0BEX000001"  # globex's Salesforce org id (public: the `oid` of its Web-to-Lead form)
GLOBEX_PD = "99001122"
GLOBEX_CALENDLY = "https://api.calendly.com/users/GLOBEX-host"
GLOBEX_PARSE = "globex-reply.example"
GLOBEX_SIGNER = SendGridSigner()

ORGS = {
    **PROVIDER_ORGS,
    "sendgrid:*": "acme",
    f"salesforce:{GLOBEX_SF}": "globex",
    f"pipedrive:{GLOBEX_PD}": "globex",
    f"calendly:{GLOBEX_CALENDLY}": "globex",
    f"sendgrid_inbound:{GLOBEX_PARSE}": "globex",
}
PER_ORG: dict[str, Any] = {
    **SECRETS,
    "sendgrid_public_key": {"acme": SIGNER.public_key_b64, "globex": GLOBEX_SIGNER.public_key_b64},
    "inbound_parse_token": {"acme": "inbound-acme-1", "globex": "inbound-globex-2"},
    "calendly_signing_key": {"acme": "calendly-acme-3", "globex": "calendly-globex-4"},
    "pipedrive_username": {"acme": "pd-acme", "globex": "pd-globex"},
    "pipedrive_password": {"acme": "pd-pass-acme", "globex": "pd-pass-globex"},
    "pipedrive_api_token": {"acme": "pd-api-acme", "globex": "pd-api-globex"},
    "salesforce_token": {"acme": "sf-token-acme", "globex": "sf-token-globex"},
    "crm_webhook_secret": {
        "acme": "whsec_" + base64.b64encode(b"acme-in-house-secret-0123456").decode(),
        "globex": "whsec_" + base64.b64encode(b"globex-in-house-secret-01234").decode(),
    },
}


@pytest.fixture
def tenants(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    """acme and globex, each with its own credential of every provider; yields the replies queue."""
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replies")["QueueUrl"]
        configure(
            monkeypatch,
            REPLIES_QUEUE_URL=url,
            WEBHOOK_SECRETS_JSON=json.dumps(PER_ORG),
            PROVIDER_ORGS_JSON=json.dumps(ORGS),
            INBOUND_PARSE_DOMAINS=f"reply.flywheel.example,{GLOBEX_PARSE}",
        )
        yield url
        reset_clients()


def register(api: ApiClient, org: str, lead: str, email: str) -> str:
    status, body = api.post(
        "/messages",
        {
            "org_id": org,
            "campaign_id": f"{org}-c",
            "lead_id": lead,
            "lead_email": email,
            "body": f"{org} pitch",
            "sent_at": "2026-11-20T09:00:00Z",
            "idempotency_key": f"{org}-{lead}",
        },
    )
    assert status == 201, body
    return body["outcomes"][0]["outcome_id"]


def deal(db, outcome_id: str) -> tuple:
    row = db.execute(
        "SELECT deal_status, deal_value FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)
    ).fetchone()
    return row["deal_status"], row["deal_value"]


def events(db) -> list[tuple]:
    rows = db.execute("SELECT provider, org_id, status, outcome_id FROM outcome_events ORDER BY provider").fetchall()
    return [(r["provider"], r["org_id"], r["status"], str(r["outcome_id"]) if r["outcome_id"] else None) for r in rows]


def refused(status: int, answer: Any, db) -> None:
    assert status == 403, answer
    assert answer["error"] == "forbidden" and "not an account of this credential's organisation" in answer["message"]
    assert count(db, "outcome_events") == 0 and count(db, "quarantined_events") == 0


# --- Salesforce: the path token, not the OrganizationId, is the organisation -------------------


def salesforce_body(organization_id: str, notification: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{organization_id}</OrganizationId><Notification><Id>{notification}</Id><sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>006FORGED</sf:Id><sf:Amount>1.0</sf:Amount><sf:CloseDate>2026-11-26</sf:CloseDate><sf:IsClosed>true</sf:IsClosed><sf:IsWon>false</sf:IsWon><sf:Contact_Email__c>priya@fabrikam.example</sf:Contact_Email__c></sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>""".encode()  # noqa: E501


def post_salesforce(api: ApiClient, token: str, body: bytes) -> tuple[int, Any]:
    status, answer, _ = api.request(
        "POST", f"/webhooks/crm/salesforce/{token}", body=body, headers={"Content-Type": "text/xml"}
    )
    return status, answer


def test_acmes_salesforce_token_cannot_write_a_deal_into_globex(api: ApiClient, db, tenants) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    status, answer = post_salesforce(api, "sf-token-acme", salesforce_body(GLOBEX_SF, "04lFORGED0000001"))
    refused(status, answer, db)
    assert deal(db, oid) == (None, None)
    # globex's own token: the same delivery is globex's
    status, answer = post_salesforce(api, "sf-token-globex", salesforce_body(GLOBEX_SF, "04lGLOBEX0000001"))
    assert status == 200 and "<Ack>true</Ack>" in answer
    assert deal(db, oid)[0] == "lost"
    assert events(db) == [("salesforce", "globex", "applied", oid)]


# --- Pipedrive: the Basic-auth pair, not meta.company_id --------------------------------------


def pipedrive_delivery(company_id: str, event_id: str) -> dict[str, Any]:
    return {
        "data": {
            "id": 77,
            "status": "won",
            "value": 999999,
            "currency": "USD",
            "won_time": "2026-11-26T16:00:00Z",
            "person_id": {"value": 5, "email": [{"value": "priya@fabrikam.example"}]},
            "custom_fields": {},
        },
        "previous": {"status": "open"},
        "meta": {
            "action": "change",
            "entity": "deal",
            "entity_id": "77",
            "company_id": company_id,
            "id": event_id,
            "timestamp": "2026-11-26T16:00:01Z",
            "version": "2.0",
        },
    }


def test_acmes_pipedrive_login_cannot_write_a_deal_into_globex(api: ApiClient, db, tenants) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    acme = signing.basic_auth_header("pd-acme", "pd-pass-acme")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery(GLOBEX_PD, "forged-1"), headers=acme)
    refused(status, answer, db)
    assert deal(db, oid) == (None, None)
    # one organisation's user name with another's password is no login
    mixed = signing.basic_auth_header("pd-acme", "pd-pass-globex")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery(GLOBEX_PD, "forged-2"), headers=mixed)
    assert status == 401, answer
    globex = signing.basic_auth_header("pd-globex", "pd-pass-globex")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery(GLOBEX_PD, "real-1"), headers=globex)
    assert status == 200, answer
    assert deal(db, oid)[0] == "won"
    assert events(db) == [("pipedrive", "globex", "applied", oid)]


def test_a_delivery_naming_no_mapped_company_is_the_credentials_organisation(api: ApiClient, db, tenants) -> None:
    """acme's login with a company id nobody mapped: acme's event, attributed within acme only."""
    register(api, "globex", "priya", "priya@fabrikam.example")
    acme = signing.basic_auth_header("pd-acme", "pd-pass-acme")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery("123", "acme-1"), headers=acme)
    assert status == 200, answer
    assert events(db) == [("pipedrive", "acme", "orphan", None)]


# --- Calendly: the subscription's signing key, not created_by ----------------------------------


def calendly_body(created_by: str) -> bytes:
    raw = json.loads(load_event("webhooks_calendly_invitee_created.json")["body"])
    raw["created_by"] = created_by
    return json.dumps(raw).encode()


def test_calendly_signing_key_decides_the_organisation(api: ApiClient, db, tenants) -> None:
    body = calendly_body(GLOBEX_CALENDLY)
    status, answer = api.post(
        "/webhooks/calendly", body=body, headers=signing.calendly_headers("calendly-acme-3", body)
    )
    refused(status, answer, db)
    # a user nobody mapped, signed with acme's key: acme's (not the `calendly:*` guess, not globex)
    body = calendly_body("https://api.calendly.com/users/SOMEONE")
    status, answer = api.post(
        "/webhooks/calendly", body=body, headers=signing.calendly_headers("calendly-acme-3", body)
    )
    assert status == 200, answer
    assert [e[:2] for e in events(db)] == [("calendly", "acme")]


# --- SendGrid: the account whose key verified the batch ----------------------------------------


def test_sendgrid_events_are_the_organisation_of_the_key_that_verified_them(api: ApiClient, db, tenants) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    event = {
        "email": "priya@fabrikam.example",
        "timestamp": 1795600000,
        "event": "delivered",
        "sg_event_id": "forged-delivered",
        "sg_message_id": "x.filter",
        "outcome_id": oid,
    }
    body = sendgrid_body([event])
    # acme's SendGrid account sent a mail whose custom args name globex's outcome: kept, never applied
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=SIGNER.headers(body))
    assert status == 200, answer
    assert events(db) == [("sendgrid", "acme", "orphan", None)]
    body = sendgrid_body([{**event, "sg_event_id": "real-delivered"}])
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=GLOBEX_SIGNER.headers(body))
    assert status == 200 and answer["applied"] == 1, answer
    row = db.execute("SELECT org_id, status FROM outcome_events WHERE event_key = 'real-delivered'").fetchone()
    assert (row["org_id"], row["status"]) == ("globex", "applied")


def quarantined(db) -> list[tuple]:
    rows = db.execute("SELECT org_id, reason, field FROM quarantined_events ORDER BY field, reason").fetchall()
    return [(r["org_id"], r["reason"], r["field"]) for r in rows]


OTHER_ORG = "org_id names another organisation than the one whose key verified the batch"


def test_an_org_id_custom_arg_never_takes_an_event_out_of_the_verifying_keys_organisation(
    api: ApiClient, db, tenants
) -> None:
    """The `org_id` custom arg is written by whoever sends through the SendGrid account (acme's admin
    here): with acme's key, events naming globex are quarantined as acme's, and the batch's other
    events are stored as usual. Before, the custom arg won: globex's lead was suppressed, a spam report
    attributed by e-mail to globex's message, a malformed event put in globex's quarantine."""
    globex_oid = register(api, "globex", "priya", "priya@fabrikam.example")
    acme_oid = register(api, "acme", "lee", "lee@contoso.example")
    base = {"timestamp": 1795600000, "sg_message_id": "x.filter"}
    batch = [
        # globex's outcome id and org_id: would unsubscribe globex's lead
        {
            **base,
            "email": "priya@fabrikam.example",
            "event": "unsubscribe",
            "sg_event_id": "u-1",
            "outcome_id": globex_oid,
            "org_id": "globex",
        },
        # no ids: would be attributed by e-mail within globex
        {
            "email": "priya@fabrikam.example",
            "timestamp": 1795600000,
            "event": "spamreport",
            "sg_event_id": "s-1",
            "org_id": "globex",
        },
        # malformed, naming globex: would sit in globex's quarantine
        {"email": "not an address", "timestamp": 1795600000, "event": "open", "org_id": "globex"},
        # acme's own events, with and without its org_id: stored and applied as ever
        {
            "email": "lee@contoso.example",
            "timestamp": 1795600000,
            "event": "open",
            "sg_event_id": "o-1",
            "outcome_id": acme_oid,
            "org_id": "acme",
        },
        {
            "email": "lee@contoso.example",
            "timestamp": 1795600001,
            "event": "click",
            "sg_event_id": "c-1",
            "url": "https://contoso.example/",
        },
    ]
    body = sendgrid_body(batch)
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=SIGNER.headers(body))  # acme's key
    assert status == 200, answer
    assert (answer["stored"], answer["quarantined"]) == (2, 3), answer
    assert events(db) == [("sendgrid", "acme", "applied", acme_oid), ("sendgrid", "acme", "applied", acme_oid)]
    assert quarantined(db) == [
        ("acme", OTHER_ORG, "0.org_id"),
        ("acme", OTHER_ORG, "1.org_id"),
        ("acme", OTHER_ORG, "2.org_id"),
    ]
    assert count(db, "suppressions") == 0
    globex = db.execute(
        "SELECT unsubscribed_at, spam_reported_at FROM outcome_labels WHERE outcome_id = %s", (globex_oid,)
    ).fetchone()
    assert globex["unsubscribed_at"] is None and globex["spam_reported_at"] is None
    status, listed = api.get("/quarantine?org_id=globex")
    assert status == 200 and listed["events"] == [], listed
    # globex's own key: the same unsubscribe is globex's
    body = sendgrid_body(batch[:1])
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=GLOBEX_SIGNER.headers(body))
    assert status == 200 and answer["applied"] == 1, answer
    assert db.execute("SELECT org_id FROM suppressions").fetchall() == [{"org_id": "globex"}]


def test_with_one_sendgrid_key_the_org_id_custom_arg_names_the_organisation(
    api: ApiClient, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One key (a platform sending for its organisations through its own SendGrid account): the
    custom arg is the platform's own word and still decides, quarantine included."""
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({**PROVIDER_ORGS, "sendgrid:*": "acme"}))
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    batch = [
        {
            "email": "priya@fabrikam.example",
            "timestamp": 1795600000,
            "event": "delivered",
            "sg_event_id": "d-1",
            "org_id": "globex",
        },
        {"email": "not an address", "timestamp": 1795600000, "event": "open", "org_id": "globex"},
    ]
    body = sendgrid_body(batch)
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=SIGNER.headers(body))
    assert status == 200, answer
    assert events(db) == [("sendgrid", "globex", "applied", oid)]
    assert [org for org, _, _ in quarantined(db)] == ["globex"]


# --- in-house systems: the secret, not the body's org_id ---------------------------------------


def test_in_house_secret_decides_the_organisation(api: ApiClient, db, tenants) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    acme_secret = PER_ORG["crm_webhook_secret"]["acme"]
    forged = {"event": "deal_won", "outcome_id": oid, "org_id": "globex", "deal_id": "D-1", "value": "5"}
    body = json.dumps(forged).encode()
    status, answer = api.post(
        "/webhooks/crm/deals", body=body, headers=signing.standard_headers(acme_secret, body, "msg_forged")
    )
    refused(status, answer, db)
    # no org_id: acme's, so globex's outcome it names is not acme's to change
    body = json.dumps({k: v for k, v in forged.items() if k != "org_id"}).encode()
    status, answer = api.post(
        "/webhooks/crm/deals", body=body, headers=signing.standard_headers(acme_secret, body, "msg_acme")
    )
    assert status == 200, answer
    assert events(db) == [("crm", "acme", "orphan", None)] and deal(db, oid) == (None, None)


# --- Inbound Parse: the path token; the org of the reply+ address, never a Cc ------------------


def parse_form(mail: str, envelope_to: list[str]) -> bytes:
    return (
        '--zz\r\nContent-Disposition: form-data; name="email"\r\n\r\n' + mail + "\r\n"
        '--zz\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n'
        + json.dumps({"to": envelope_to, "from": "lee@contoso.example"})
        + "\r\n--zz--\r\n"
    ).encode()


def reply_mail(to: str, cc: str) -> str:
    return (
        "From: Lee Park <lee@contoso.example>\r\n"
        f"To: {to}\r\nCc: {cc}\r\n"
        "Subject: Re: a quick idea\r\nDate: Wed, 25 Nov 2026 08:30:00 +0000\r\n"
        "Message-ID: <lee.reply.99@contoso.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease unsubscribe me, not interested.\r\n"
    )


def post_reply(api: ApiClient, token: str, form: bytes) -> tuple[int, Any]:
    return api.post(
        f"/webhooks/sendgrid/inbound/{token}", body=form, headers={"Content-Type": "multipart/form-data; boundary=zz"}
    )


def test_a_reply_copying_another_organisations_parse_domain_reaches_its_own_message(
    api: ApiClient, db, tenants
) -> None:
    oid = register(api, "acme", "lee", "lee@contoso.example")
    address = f"reply+{oid}@reply.flywheel.example"
    form = parse_form(reply_mail(address, f"sales+thread@{GLOBEX_PARSE}"), [address])
    status, answer = post_reply(api, "inbound-acme-1", form)
    assert status == 200, answer
    assert answer["outcome_id"] == oid
    assert events(db) == [("sendgrid_inbound", "acme", "applied", oid)]
    assert db.execute("SELECT replied_at FROM outcome_labels WHERE outcome_id = %s", (oid,)).fetchone()["replied_at"]


def test_acmes_parse_token_cannot_post_a_reply_to_globex(api: ApiClient, db, tenants) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    address = f"reply+{oid}@{GLOBEX_PARSE}"
    form = parse_form(reply_mail(address, "nobody@example.com"), [address])
    status, answer = post_reply(api, "inbound-acme-1", form)
    refused(status, answer, db)
    status, answer = post_reply(api, "inbound-globex-2", form)
    assert status == 200 and answer["outcome_id"] == oid, answer


def test_a_reply_to_acme_that_ccs_a_globex_reply_address_is_acmes(api: ApiClient, db, tenants) -> None:
    """The SMTP envelope says this delivery went to acme's parse domain; the only reply+ address is a
    Cc of globex's domain, which the sender wrote. It names neither the organisation nor the message:
    the reply is acme's, attributed by its sender. Before, acme's own token was refused with 403."""
    acme_oid = register(api, "acme", "lee", "lee@contoso.example")
    globex_oid = register(api, "globex", "lee", "lee@contoso.example")
    inbox = "sales@reply.flywheel.example"
    form = parse_form(reply_mail(inbox, f"reply+{globex_oid}@{GLOBEX_PARSE}"), [inbox])
    status, answer = post_reply(api, "inbound-acme-1", form)
    assert status == 200 and answer["outcome_id"] == acme_oid, answer
    assert events(db) == [("sendgrid_inbound", "acme", "applied", acme_oid)]
    # globex's own token for a delivery that went to acme's domain is still refused
    status, answer = post_reply(api, "inbound-globex-2", form)
    assert status == 403, answer


def test_with_one_parse_token_a_ccd_reply_address_of_another_domain_links_nothing(
    api: ApiClient, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One token (ProviderOrgs maps only acme's parse domain): the Cc'd globex reply+ address used to
    link the reply to globex's message id under organisation acme, an orphan nobody could claim."""
    configure(monkeypatch, INBOUND_PARSE_DOMAINS=f"reply.flywheel.example,{GLOBEX_PARSE}")
    acme_oid = register(api, "acme", "lee", "lee@contoso.example")
    globex_oid = register(api, "globex", "lee", "lee@contoso.example")
    inbox = "sales@reply.flywheel.example"
    form = parse_form(reply_mail(inbox, f"reply+{globex_oid}@{GLOBEX_PARSE}"), [inbox])
    status, answer = post_reply(api, "inbound-token-123", form)
    assert status == 200 and answer["outcome_id"] == acme_oid, answer
    assert events(db) == [("sendgrid_inbound", "acme", "applied", acme_oid)]


# --- one value for several organisations is refused, never used --------------------------------


def test_one_credential_for_several_organisations_is_a_configuration_error(
    api: ApiClient, db, tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="flywheel/test/webhooks", SecretString=json.dumps({**PER_ORG, "salesforce_token": "sf-token-shared"})
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", secret)
    monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
    reset_settings()
    status, answer = post_salesforce(api, "sf-token-shared", salesforce_body(GLOBEX_SF, "04lFORGED0000002"))
    assert status == 503, answer
    assert answer["error"] == "configuration_error" and "WEBHOOK_SECRETS_ARN" in answer["message"]
    assert count(db, "outcome_events") == 0
    status, body = api.get("/health/webhooks/deep")
    assert status == 503 and body["message"] == "failing: webhooks_secret (WEBHOOK_SECRETS_ARN)", body
    why = body["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"]
    assert "salesforce_token" in why and "(acme, globex)" in why and "sf-token-shared" not in json.dumps(body)
    # inline (local runs), the settings themselves refuse it
    monkeypatch.setenv("WEBHOOK_SECRETS_JSON", json.dumps({**PER_ORG, "salesforce_token": "sf-token-shared"}))
    monkeypatch.delenv("WEBHOOK_SECRETS_ARN")
    reset_settings()
    status, answer = post_salesforce(api, "sf-token-shared", salesforce_body(GLOBEX_SF, "04lFORGED0000003"))
    assert status == 503 and answer["message"] == "invalid configuration: WEBHOOK_SECRETS_JSON", answer
    assert count(db, "outcome_events") == 0


def test_one_providers_unsplit_credential_refuses_only_that_providers_routes(
    api: ApiClient, db, tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Salesforce's token left as one value while ProviderOrgs maps Salesforce to two organisations:
    Salesforce is refused (503 configuration_error, the deep health check names it), but SendGrid,
    Calendly, Pipedrive and the in-house route keep working with their own per-org credentials. Before,
    every webhook route answered 500 (Pipedrive bans a webhook after 10 failures and loses what it
    sends during the ban)."""
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="flywheel/test/webhooks", SecretString=json.dumps({**PER_ORG, "salesforce_token": "sf-token-shared"})
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", secret)
    monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
    reset_settings()
    status, answer = post_salesforce(api, "sf-token-shared", salesforce_body(GLOBEX_SF, "04lFORGED0000004"))
    assert status == 503 and answer["error"] == "configuration_error", answer
    body = sendgrid_body(
        [{"email": "a@example.com", "timestamp": 1795600000, "event": "delivered", "sg_event_id": "ok-1"}]
    )
    status, answer = api.post("/webhooks/sendgrid", body=body, headers=SIGNER.headers(body))
    assert status == 200 and answer["stored"] == 1, answer
    body = calendly_body("https://api.calendly.com/users/SOMEONE")
    status, answer = api.post(
        "/webhooks/calendly", body=body, headers=signing.calendly_headers("calendly-acme-3", body)
    )
    assert status == 200, answer
    acme = signing.basic_auth_header("pd-acme", "pd-pass-acme")
    status, answer = api.post("/webhooks/crm/pipedrive", pipedrive_delivery("123", "pd-ok-1"), headers=acme)
    assert status == 200, answer
    assert sorted(e[:2] for e in events(db)) == [("calendly", "acme"), ("pipedrive", "acme"), ("sendgrid", "acme")]
    # the deep health check still reports the whole secret, naming the one credential
    status, health = api.get("/health/webhooks/deep")
    assert status == 503 and health["message"] == "failing: webhooks_secret (WEBHOOK_SECRETS_ARN)", health
    why = health["checks"]["webhooks_secret"]["invalid"]["WEBHOOK_SECRETS_ARN"]
    assert why.startswith("salesforce_token: one value") and "sf-token-shared" not in json.dumps(health)

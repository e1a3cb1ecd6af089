"""Receiving provider webhooks: verify on the raw bytes, normalise, store and apply.

Each `receive_*` returns what the provider should be answered; rejections raise typed errors
that the API glue maps to 400/401/403/413/422/503. Verification and parsing come first and the
events of a request are stored in one transaction, so a rejected request writes nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from flywheel.clients import queue
from flywheel.clients.crm import HubSpotClient, PipedriveClient
from flywheel.clients.secrets import webhook_secret
from flywheel.dal import events as events_dal
from flywheel.dal import suppressions as suppressions_dal
from flywheel.dal.connection import transaction
from flywheel.domain.ingest import IncomingEvent
from flywheel.errors import DependencyUnavailable, Forbidden, Unauthorized
from flywheel.observability import logger, metrics
from flywheel.services.ingest import ingest_events, linked_outcome
from flywheel.settings import Settings, get_settings
from flywheel.webhooks import calendly, generic, hubspot, inbound, pipedrive, salesforce, sendgrid
from flywheel.webhooks.http import WebhookRequest
from flywheel.webhooks.signatures import (
    SignatureInvalid,
    verify_basic_auth,
    verify_calendly,
    verify_hubspot,
    verify_sendgrid,
    verify_standard_webhooks,
    verify_token,
)


def _secret(name: str) -> str:
    value = webhook_secret(name)
    if not value:
        # misconfiguration: refuse (the provider retries) rather than accept unverified data
        raise DependencyUnavailable(f"webhook secret {name!r} is not configured")
    return value


def _verified(provider: str, check: Any, *args: Any, forbidden: bool = False, **kwargs: Any) -> None:
    try:
        check(*args, **kwargs)
    except SignatureInvalid as exc:
        error = Forbidden if forbidden else Unauthorized
        raise error(f"{provider}: {exc}", provider=provider) from exc


def _store(provider: str, events: list[IncomingEvent], window_days: int) -> dict[str, Any]:
    result = ingest_events(events, window_days=window_days)
    summary = result.as_dict()
    for name in ("stored", "duplicates", "orphans", "ignored"):
        if summary[name]:
            metrics.add_metric(name=f"Webhook{name.capitalize()}", unit="Count", value=summary[name])
    logger.info("webhook received", extra={"provider": provider, **summary})
    return summary


def _now() -> datetime:
    return datetime.now(UTC)


# --- SendGrid ---------------------------------------------------------------------------------

def receive_sendgrid(request: WebhookRequest) -> dict[str, Any]:
    settings = get_settings()
    if settings.sendgrid_verify_signature:
        _verified("sendgrid", verify_sendgrid, _secret("sendgrid_public_key"),
                  request.header("X-Twilio-Email-Event-Webhook-Signature"),
                  request.header("X-Twilio-Email-Event-Webhook-Timestamp"), request.body)
    else:
        logger.warning("SendGrid signature verification is OFF (SENDGRID_VERIFY_SIGNATURE=false)")
    events = sendgrid.normalise(sendgrid.parse_body(request.body))
    summary = _store("sendgrid", events, settings.attribution_window_days)
    suppress_opt_outs([e.event_key for e in events if e.event_type in OPT_OUTS])
    return summary


# a global unsubscribe or a spam complaint means: never email this lead again
OPT_OUTS = {"unsubscribe": "sendgrid_unsubscribe", "spamreport": "sendgrid_spam_report"}


def suppress_opt_outs(event_keys: list[str]) -> None:
    with transaction() as conn:
        for row in events_dal.applied_of_types(conn, "sendgrid", event_keys, list(OPT_OUTS)):
            if row["lead_email"]:
                suppressions_dal.suppress(conn, row["org_id"], row["lead_email"], OPT_OUTS[row["event_type"]],
                                          row["outcome_id"])


def receive_inbound_reply(request: WebhookRequest, token: str) -> dict[str, Any]:
    settings = get_settings()
    _verified("sendgrid_inbound", verify_token, token, _secret("inbound_parse_token"), forbidden=True)
    mail = inbound.parse_mail(request.header("content-type") or "", request.body)
    domains = settings.split(settings.inbound_parse_domains)
    if domains and not inbound.recipient_domains(mail) & set(domains):
        raise Forbidden("sendgrid_inbound: reply is not addressed to a configured parse domain")
    events = inbound.to_events(mail, domains, _now())
    summary = _store("sendgrid_inbound", events, settings.reply_window_days)
    # only a person's reply goes to the classifier: automatic replies and bounces are already known.
    # The reply is stored (a retry is a no-op there); queueing it again on a retry is harmless
    # because the classifier stores one classification per reply
    event = events[0] if len(events) == 1 and events[0].event_type == "reply" else None
    outcome_id = linked_outcome(event.provider, event.event_key) if event else None
    if event and outcome_id and settings.replies_queue_url and not event.data.get("automated"):
        queue.send_messages(settings.replies_queue_url, [{
            "outcome_id": outcome_id, "reply_key": f"{event.provider}:{event.event_key}",
            "text": event.data["text"], "subject": mail.subject, "from": mail.sender,
            "received_at": event.occurred_at.isoformat(),
        }])
    kind = "bounce" if mail.report else ("auto_reply" if event and event.data.get("automated") else "reply")
    return {**summary, "outcome_id": outcome_id, "kind": kind}


# --- Calendly ---------------------------------------------------------------------------------

def receive_calendly(request: WebhookRequest) -> dict[str, Any]:
    settings = get_settings()
    _verified("calendly", verify_calendly, _secret("calendly_signing_key"),
              request.header("Calendly-Webhook-Signature"), request.body, tolerance_s=settings.calendly_tolerance_s)
    raw, envelope = calendly.parse(request.body)
    event = calendly.to_event(raw, envelope, settings.provider_org("calendly", envelope.created_by))
    return _store("calendly", [event], settings.attribution_window_days)


# --- HubSpot ----------------------------------------------------------------------------------

def receive_hubspot(request: WebhookRequest) -> dict[str, Any]:
    settings = get_settings()
    _verified("hubspot", verify_hubspot, _secret("hubspot_client_secret"), method=request.method,
              uri=settings.hubspot_webhook_url or request.url, body=request.body, headers=request.headers,
              tolerance_s=settings.hubspot_tolerance_s, allow_legacy=settings.hubspot_allow_legacy_signatures)
    parsed = hubspot.parse(request.body)
    stage_changes = [e for _, e in parsed if e.is_deal_stage_change]
    deals: dict[str, tuple[dict[str, Any] | None, list[str]]] = {}
    if stage_changes:
        client = HubSpotClient(settings.hubspot_api_base, _secret("hubspot_access_token"), settings.http_timeout_s)
        outcome_field = settings.hubspot_outcome_property

        def fetch(deal_id: str) -> tuple[str, tuple[dict[str, Any] | None, list[str]]]:
            deal = client.deal(deal_id, [outcome_field] if outcome_field else [])
            emails = client.contact_emails(hubspot.hubspot_contact_ids(deal)) if deal else []
            return deal_id, (deal, emails)

        # HubSpot expects an answer within 5 s: fetch the batch's deals side by side
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                deals = dict(pool.map(fetch, sorted({str(e.objectId) for e in stage_changes})))
        finally:
            client.http.close()
    won, lost = settings.split(settings.hubspot_won_stages), settings.split(settings.hubspot_lost_stages)
    events = []
    for raw, event in parsed:
        deal, emails = deals.get(str(event.objectId), (None, []))
        events += hubspot.to_events(raw, event, deal, emails, settings.hubspot_outcome_property, won, lost,
                                    settings.provider_org("hubspot", event.portalId))
    return _store("hubspot", events, settings.attribution_window_days)


# --- Pipedrive --------------------------------------------------------------------------------

def receive_pipedrive(request: WebhookRequest) -> dict[str, Any]:
    settings = get_settings()
    _verified("pipedrive", verify_basic_auth, request.header("Authorization"), _secret("pipedrive_username"),
              _secret("pipedrive_password"))
    delivery = pipedrive.parse(request.body)
    emails: list[str] = []
    if delivery.status in ("won", "lost"):
        emails = delivery.embedded_emails
        if not emails and delivery.person_id:
            client = PipedriveClient(settings.pipedrive_api_base, _secret("pipedrive_api_token"),
                                     settings.http_timeout_s)
            try:
                emails = client.person_emails(delivery.person_id)[:1]
            finally:
                client.http.close()
    org_id = settings.provider_org("pipedrive", delivery.meta.get("company_id"))
    events = pipedrive.to_events(delivery, emails[:1], settings.pipedrive_outcome_field, org_id)
    return _store("pipedrive", events, settings.attribution_window_days)


# --- Salesforce -------------------------------------------------------------------------------

def receive_salesforce(request: WebhookRequest, token: str) -> str:
    settings = get_settings()
    _verified("salesforce", verify_token, token, _secret("salesforce_token"), forbidden=True)
    message = salesforce.parse(request.body)
    org_id = next((org for key, org in settings.provider_orgs.items() if key.startswith("salesforce:")
                   and salesforce.allowed(message.organization_id, [key.split(":", 1)[1]])), None)
    if org_id is None:
        raise Forbidden(f"salesforce: organization {message.organization_id} is not allowed")
    received = _now()
    events = [salesforce.to_event(message, note, settings.salesforce_outcome_field, settings.salesforce_email_field,
                                  org_id, received) for note in message.notifications]
    _store("salesforce", events, settings.attribution_window_days)
    return salesforce.ACK


# --- in-house CRM (Standard Webhooks) ---------------------------------------------------------

def receive_generic(request: WebhookRequest, kind: str) -> dict[str, Any]:
    settings: Settings = get_settings()
    _verified("crm", verify_standard_webhooks, _secret("crm_webhook_secret"), request.headers, request.body,
              tolerance_s=settings.standard_webhooks_tolerance_s)
    allowed = generic.DEAL_EVENTS if kind == "deals" else generic.MEETING_EVENTS
    raw, event = generic.parse(request.body, allowed)
    incoming = generic.to_event(raw, event, str(request.header("webhook-id")), _now())
    return _store("crm", [incoming], settings.attribution_window_days)

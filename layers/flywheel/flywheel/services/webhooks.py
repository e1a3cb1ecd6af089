"""Receiving provider webhooks: verify on the raw bytes, normalise, store and apply.

Each `receive_*` returns what the provider should be answered; rejections raise typed errors
that the API glue maps to 400/401/403/413/422/503. Verification and parsing come first and the
events of a request are stored in one transaction, so a rejected request writes nothing.

Each `receive_*` imports its provider's parser (pydantic models, the mail parser, the XML parser)
itself: WebhooksFunction serves every provider's route, and a cold start needs one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flywheel.clients.secrets import WebhookSecrets
from flywheel.domain.ingest import IncomingEvent, Quarantined, storable_problem
from flywheel.domain.inputs import IDENTIFIER, UNSTORABLE_ESCAPE, BadValue
from flywheel.errors import DependencyUnavailable, Forbidden, InvalidInput, Unauthorized
from flywheel.observability import count, logger
from flywheel.services.ingest import ingest_events, known_keys, linked_outcome
from flywheel.services.outbox import flush_after_commit
from flywheel.settings import Settings, get_settings, org_of
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


def _secret(secrets: WebhookSecrets, name: str) -> str:
    value = secrets.secret(name)
    if not value:
        # misconfiguration: refuse (the provider retries) rather than accept unverified data
        raise DependencyUnavailable(f"webhook secret {name!r} is not configured")
    return value


@dataclass(frozen=True)
class _Caller:
    """Whose credential a verified request carried: `org_id` when the credential is one per
    organisation (flywheel.settings.ORG_CREDENTIALS), else nobody's in particular."""

    provider: str
    per_org: bool
    org_id: str | None = None

    def org(self, named: str | None, account_org: str | None, what: str) -> str | None:
        """The request's organisation. A per-organisation credential decides it, and a body whose
        account (`what`) ProviderOrgs maps to another organisation (`named`) is refused: an account id is
        no secret, and one organisation's credential must not write into another. A single credential
        (allowed only while ProviderOrgs maps the provider to at most one organisation) keeps the
        organisation of the body's account (`account_org`, the provider's `*` default included)."""
        if not self.per_org:
            return account_org
        if named is not None and named != self.org_id:
            raise Forbidden(
                f"{self.provider}: the {what} is not an account of this credential's organisation",
                provider=self.provider,
            )
        return self.org_id


def _authenticated(
    secrets: WebhookSecrets, provider: str, name: str, check: Callable[[Any], None], *, forbidden: bool = False
) -> _Caller:
    """Verify a request with the credential `name` (`check(value)` raises SignatureInvalid): with
    each organisation's values in turn when there is one per organisation, the first that verifies
    naming the organisation; with each value of a credential being rotated (the newest first)."""
    credentials = secrets.credentials(name)
    if not credentials:
        raise DependencyUnavailable(f"webhook secret {name!r} is not configured")
    return _matched(provider, name, credentials, check, forbidden=forbidden)


def _matched(
    provider: str,
    name: str,
    candidates: Mapping[str | None, tuple[Any, ...]],
    check: Callable[[Any], None],
    *,
    forbidden: bool = False,
) -> _Caller:
    """The caller whose value verifies the request: every organisation's newest value first, then
    the values a rotation keeps (each compared in constant time; no value is two organisations', so
    the order never changes which organisation matches, only how soon). A match on a value other than
    the newest is logged and counted (WebhookCredentialPrevious), so an operator sees when the old
    value stops being used and can remove it; by name, organisation and position, never the value."""
    failure: SignatureInvalid | None = None
    for index in range(max(len(values) for values in candidates.values())):
        for org, values in candidates.items():
            if index >= len(values):
                continue
            try:
                check(values[index])
            except SignatureInvalid as exc:
                failure = exc
                continue
            if index:
                count("WebhookCredentialPrevious", provider=provider)
                logger.info(
                    "webhook verified with a previous credential value",
                    extra={"provider": provider, "credential": name, "credential_index": index, "org_id": org},
                )
            return _Caller(provider, per_org=org is not None, org_id=org)
    error = Forbidden if forbidden else Unauthorized
    raise error(f"{provider}: {failure}", provider=provider) from failure


def _org_secret(secrets: WebhookSecrets, name: str, caller: _Caller) -> str:
    """A credential the service uses on the caller's behalf (a CRM API token): the caller's
    organisation's when there is one per organisation."""
    value = secrets.credentials(name) or {}
    values = value.get(caller.org_id) if caller.per_org else value.get(None)
    if not values:
        raise DependencyUnavailable(f"webhook secret {name!r} is not configured")
    return values[0]


def _mapped(orgs: Mapping[str, str], provider: str, account: object) -> str | None:
    """The organisation ProviderOrgs maps this very account to (not the provider's `*` default)."""
    return orgs.get(f"{provider}:{account}") if account not in (None, "") else None


def _store(
    provider: str,
    events: list[IncomingEvent],
    window_days: int,
    quarantined: list[Quarantined] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """Store a request's events. `quarantined` is given for batch providers: an event the store
    cannot hold joins it; for a single-event request the same problem is a 422 and nothing is written."""
    good = []
    # a JSON body without NUL or surrogate escapes cannot carry them: skip scanning every string
    scan = body is None or UNSTORABLE_ESCAPE.search(body) is not None
    for event in events:
        problem = storable_problem(event, scan_strings=scan)
        if problem is None:
            good.append(event)
        elif quarantined is None:
            raise InvalidInput(f"{provider}: {problem}")
        else:
            quarantined.append(
                Quarantined(
                    provider,
                    problem,
                    event.payload,
                    None,
                    event.org_id if event.org_id and IDENTIFIER.fullmatch(event.org_id) else None,
                )
            )
    events = good
    result = ingest_events(events, window_days=window_days, quarantined=quarantined)
    summary = result.as_dict()
    for name in ("stored", "duplicates", "orphans", "ignored", "quarantined"):
        if summary[name]:
            count(f"Webhook{name.capitalize()}", summary[name], provider=provider)
    if quarantined:
        # the reasons name fields, never values: no personal data in the log
        logger.warning(
            "malformed events quarantined",
            extra={
                "provider": provider,
                "count": len(quarantined),
                "reasons": sorted({q.reason for q in quarantined})[:10],
            },
        )
    logger.info("webhook received", extra={"provider": provider, **summary})
    if result.outbox:
        flush_after_commit(["replies"])
    return summary


def _now() -> datetime:
    return datetime.now(UTC)


# --- SendGrid ---------------------------------------------------------------------------------


def receive_sendgrid(request: WebhookRequest) -> dict[str, Any]:
    from flywheel.webhooks import sendgrid

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    org_id = org_of(orgs, "sendgrid", "*")
    credential_org = None
    if settings.sendgrid_verify_signature:
        signature = request.header("X-Twilio-Email-Event-Webhook-Signature")
        timestamp = request.header("X-Twilio-Email-Event-Webhook-Timestamp")
        caller = _authenticated(
            secrets,
            "sendgrid",
            "sendgrid_public_key",
            lambda key: verify_sendgrid(key, signature, timestamp, request.body, max_age_s=settings.sendgrid_max_age_s),
        )
        # events name no SendGrid account: the account whose key verified them is the organisation,
        # whatever `org_id` custom arg (chosen by that account's sender) an event carries
        org_id = caller.org(None, org_id, "SendGrid account")
        credential_org = caller.org_id
    else:
        logger.warning("SendGrid signature verification is OFF (SENDGRID_VERIFY_SIGNATURE=false)")
    events, quarantined = sendgrid.normalise(sendgrid.parse_body(request.body), org_id, credential_org=credential_org)
    return _store("sendgrid", events, settings.attribution_window_days, quarantined, request.body)


def receive_inbound_reply(request: WebhookRequest, token: str) -> dict[str, Any]:
    from flywheel.webhooks import inbound

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    caller = _authenticated(
        secrets,
        "sendgrid_inbound",
        "inbound_parse_token",
        lambda expected: verify_token(token, expected),
        forbidden=True,
    )
    mail = inbound.parse_mail(request.header("content-type") or "", request.body)
    domains = settings.split(settings.inbound_parse_domains)
    if domains and not inbound.recipient_domains(mail) & set(domains):
        raise Forbidden("sendgrid_inbound: reply is not addressed to a configured parse domain")
    # the organisation of the parse domain the mail was sent to (for replies known only by sender):
    # the token's when there is one per organisation, else that of the reply+ address or the envelope
    org_id = caller.org(
        inbound.addressed_org(mail, domains, lambda d: _mapped(orgs, "sendgrid_inbound", d)),
        inbound.addressed_org(mail, domains, lambda d: org_of(orgs, "sendgrid_inbound", d)),
        "parse domain the reply is addressed to",
    )
    # the mail's events are that organisation's, keyed within it: the same mail at another
    # organisation's parse address is that organisation's event, never a duplicate of this one
    events = inbound.to_events(mail, domains, _now(), org_id)
    # a person's reply is queued for the classifier in the same transaction (outbox) when it is
    # applied; automatic replies and bounces are not (flywheel.domain.effects)
    summary = _store("sendgrid_inbound", events, settings.reply_window_days)
    reply = next((e for e in events if e.event_type == "reply"), None) if not mail.report else None
    outcome_id = linked_outcome(reply.provider, reply.event_key, reply.legacy_key, org_id) if reply else None
    return {**summary, "outcome_id": outcome_id, "kind": inbound.kind(mail, events)}


# --- Calendly ---------------------------------------------------------------------------------


def receive_calendly(request: WebhookRequest) -> dict[str, Any]:
    from flywheel.webhooks import calendly

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    header = request.header("Calendly-Webhook-Signature")
    caller = _authenticated(
        secrets,
        "calendly",
        "calendly_signing_key",
        lambda key: verify_calendly(key, header, request.body, tolerance_s=settings.calendly_tolerance_s),
    )
    raw, envelope = calendly.parse(request.body)
    org_id = caller.org(
        _mapped(orgs, "calendly", envelope.created_by),
        org_of(orgs, "calendly", envelope.created_by),
        "created_by user",
    )
    try:
        event = calendly.to_event(raw, envelope, org_id)
    except BadValue as exc:
        raise InvalidInput(f"calendly: {exc}") from exc
    return _store("calendly", [event], settings.attribution_window_days)


# --- HubSpot ----------------------------------------------------------------------------------


def receive_hubspot(request: WebhookRequest) -> dict[str, Any]:
    from flywheel.webhooks import hubspot

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    # the app's client secret: one for every portal (a list while it is rotated), so it names no organisation
    _authenticated(
        secrets,
        "hubspot",
        "hubspot_client_secret",
        lambda secret: verify_hubspot(
            secret,
            method=request.method,
            uri=settings.hubspot_webhook_url or request.url,
            body=request.body,
            headers=request.headers,
            tolerance_s=settings.hubspot_tolerance_s,
            allow_legacy=settings.hubspot_allow_legacy_signatures,
        ),
    )
    parsed, quarantined = hubspot.parse(request.body, lambda portal: org_of(orgs, "hubspot", portal))
    stage_changes = [e for _, e in parsed if e.is_deal_stage_change]
    deals: dict[str, tuple[dict[str, Any] | None, list[str]]] = {}
    if stage_changes:
        from flywheel.clients.crm import HubSpotClient  # the HTTP client: only the CRM routes load it

        client = HubSpotClient(
            settings.hubspot_api_base,
            _secret(secrets, "hubspot_access_token"),
            settings.http_timeout_s,
            settings.crm_budget_s,
        )
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
    events, legacy = [], []
    for raw, event in parsed:
        deal, emails = deals.get(str(event.objectId), (None, []))
        org_id = org_of(orgs, "hubspot", event.portalId)
        try:
            made = hubspot.to_events(raw, event, deal, emails, settings.hubspot_outcome_property, won, lost, org_id)
        except BadValue as exc:  # the deal the API returned has an amount or date we cannot store
            quarantined.append(Quarantined("hubspot", f"deal {exc}", raw, None, org_id))
            continue
        events += made
        legacy += [event.legacy_key(e.event_key) for e in made]
    # an event stored under its key of the release before (no portal) is a duplicate, not a new one
    stored_before = known_keys("hubspot", [old for old, e in zip(legacy, events, strict=True) if old != e.event_key])
    kept = [e for old, e in zip(legacy, events, strict=True) if old == e.event_key or old not in stored_before]
    summary = _store("hubspot", kept, settings.attribution_window_days, quarantined)
    if len(kept) < len(events):
        summary["received"] += len(events) - len(kept)
        summary["duplicates"] += len(events) - len(kept)
    return summary


# --- Pipedrive --------------------------------------------------------------------------------


def receive_pipedrive(request: WebhookRequest) -> dict[str, Any]:
    from flywheel.webhooks import pipedrive

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    # the logins of each organisation (or the one login), a pair each: both halves of a login are one
    # credential, rotated together, read from one version of the secret (a mix of forms is refused
    # with the secrets and never gets here)
    logins = secrets.pipedrive_logins()
    if not logins:
        raise DependencyUnavailable("webhook secret 'pipedrive_username' or 'pipedrive_password' is not configured")
    authorization = request.header("Authorization")
    caller = _matched(
        "pipedrive",
        "pipedrive_username/pipedrive_password",
        logins,
        lambda login: verify_basic_auth(authorization, login[0], login[1]),
    )
    delivery = pipedrive.parse(request.body)
    company = delivery.meta.get("company_id")
    org_id = caller.org(_mapped(orgs, "pipedrive", company), org_of(orgs, "pipedrive", company), "company_id")
    try:
        emails: list[str] = []
        if delivery.kind is not None:  # a deal closed, or reopened after it closed
            emails = delivery.embedded_emails
            person_id = delivery.person_id  # checked before it goes into the API path
            if not emails and person_id:
                from flywheel.clients.crm import PipedriveClient

                client = PipedriveClient(
                    settings.pipedrive_api_base,
                    _org_secret(secrets, "pipedrive_api_token", caller),
                    settings.http_timeout_s,
                    settings.crm_budget_s,
                )
                try:
                    emails = client.person_emails(person_id)[:1]
                finally:
                    client.http.close()
        events = pipedrive.to_events(delivery, emails[:1], settings.pipedrive_outcome_field, org_id)
    except BadValue as exc:
        raise InvalidInput(f"pipedrive: {exc}") from exc
    return _store("pipedrive", events, settings.attribution_window_days)


# --- Salesforce -------------------------------------------------------------------------------


def receive_salesforce(request: WebhookRequest, token: str) -> str:
    from flywheel.webhooks import salesforce

    settings = get_settings()
    secrets = WebhookSecrets()  # one version of the secrets for the whole request
    orgs = secrets.provider_orgs
    caller = _authenticated(
        secrets, "salesforce", "salesforce_token", lambda expected: verify_token(token, expected), forbidden=True
    )
    message = salesforce.parse(request.body)
    allowed = next(
        (
            org
            for key, org in orgs.items()
            if key.startswith("salesforce:") and salesforce.allowed(message.organization_id, [key.split(":", 1)[1]])
        ),
        None,
    )
    if allowed is None:
        raise Forbidden(f"salesforce: organization {message.organization_id} is not allowed")
    # a Salesforce org id is no secret (a Web-to-Lead form shows it): the token decides
    org_id = caller.org(allowed, allowed, "OrganizationId")
    received = _now()
    events = []
    quarantined = [
        Quarantined("salesforce", "Notification needs an Id and an sObject", {"Notification": xml}, None, org_id)
        for xml in message.malformed
    ]
    for note in message.notifications:
        try:
            events.append(
                salesforce.to_event(
                    message, note, settings.salesforce_outcome_field, settings.salesforce_email_field, org_id, received
                )
            )
        except BadValue as exc:  # one bad Opportunity must not make Salesforce retry the other 99
            quarantined.append(
                Quarantined(
                    "salesforce",
                    str(exc),
                    {"NotificationId": note.notification_id, "fields": note.fields},
                    None,
                    org_id,
                )
            )
    _store("salesforce", events, settings.attribution_window_days, quarantined)
    return salesforce.ACK


# --- in-house CRM (Standard Webhooks) ---------------------------------------------------------


def receive_generic(request: WebhookRequest, kind: str) -> dict[str, Any]:
    from flywheel.webhooks import generic

    settings: Settings = get_settings()
    secrets = WebhookSecrets()
    caller = _authenticated(
        secrets,
        "crm",
        "crm_webhook_secret",
        lambda secret: verify_standard_webhooks(
            secret, request.headers, request.body, tolerance_s=settings.standard_webhooks_tolerance_s
        ),
    )
    allowed = generic.DEAL_EVENTS if kind == "deals" else generic.MEETING_EVENTS
    raw, event = generic.parse(request.body, allowed)
    # one secret per organisation: the secret's organisation, and a body naming another is refused;
    # one secret: the system speaks for every organisation and names it in the body
    org_id = caller.org(event.org_id, event.org_id, "org_id")
    incoming = generic.to_event(raw, event, str(request.header("webhook-id")), _now(), org_id)
    return _store("crm", [incoming], settings.attribution_window_days)

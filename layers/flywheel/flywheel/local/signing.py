"""The sending side of each webhook scheme: the demo, the tests, `flywheel sign` and the local
invoker sign with it (never used by the handlers, which only verify)."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flywheel.webhooks import signatures
from flywheel.webhooks.http import WebhookRequest


class SendGridSigner:
    """A P-256 key pair standing in for SendGrid's (a throwaway one unless a PEM key is given)."""

    def __init__(self, private_key_pem: str | None = None) -> None:
        if private_key_pem:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("the SendGrid signing key must be an EC (P-256) key")
            self.key = key
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_b64 = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def calendly_headers(signing_key: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {"Calendly-Webhook-Signature": f"t={t},v1={signatures.calendly_signature(signing_key, t, body)}"}


def hubspot_headers(client_secret: str, body: bytes, url: str, timestamp_ms: int | None = None) -> dict[str, str]:
    ts = str(timestamp_ms or int(time.time() * 1000))
    return {
        "X-HubSpot-Signature-v3": signatures.hubspot_v3(client_secret, "POST", url, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
    }


def standard_headers(secret: str, body: bytes, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    t = str(timestamp or int(time.time()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": t,
        "webhook-signature": signatures.standard_webhooks_signature(secret, msg_id, t, body),
    }


def basic_auth_header(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


# --- one entry per webhook route: how its provider authenticates a request -------------------

HeadersFn = Callable[[dict[str, str], bytes, str, dict[str, str]], dict[str, str]]


@dataclass(frozen=True)
class Provider:
    name: str
    route: str  # the template's path, `{token}` where a secret path token goes
    content_type: str
    scheme: str  # how it is authenticated, for help texts
    headers: HeadersFn | None = None  # (secrets, body, verifier URL, the request's headers) -> headers to add
    token_secret: str | None = None  # the secret that goes in the path

    def token(self, secrets: dict[str, str]) -> str | None:
        return secrets[self.token_secret] if self.token_secret else None

    def sign(self, secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
        return self.headers(secrets, body, url, given) if self.headers else {}


def _sendgrid(secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
    return SendGridSigner(secrets["sendgrid_private_key"]).headers(body)


def _calendly(secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
    return calendly_headers(secrets["calendly_signing_key"], body)


def _hubspot(secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
    return hubspot_headers(secrets["hubspot_client_secret"], body, url)


def _pipedrive(secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
    return basic_auth_header(secrets["pipedrive_username"], secrets["pipedrive_password"])


def _standard(secrets: dict[str, str], body: bytes, url: str, given: dict[str, str]) -> dict[str, str]:
    # keep the request's message id: it is the event's idempotency key
    msg_id = {k.lower(): v for k, v in given.items()}.get("webhook-id") or f"msg_{uuid.uuid4().hex}"
    return standard_headers(secrets["crm_webhook_secret"], body, msg_id)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("sendgrid", "/webhooks/sendgrid", "application/json", "ECDSA signature headers", _sendgrid),
        Provider(
            "sendgrid-inbound",
            "/webhooks/sendgrid/inbound/{token}",
            "multipart/form-data",
            "secret path token",
            token_secret="inbound_parse_token",  # noqa: S106
        ),  # noqa: S106 - a secret's name
        Provider("calendly", "/webhooks/calendly", "application/json", "Calendly-Webhook-Signature", _calendly),
        Provider("hubspot", "/webhooks/crm/hubspot", "application/json", "X-HubSpot-Signature-v3", _hubspot),
        Provider("pipedrive", "/webhooks/crm/pipedrive", "application/json", "HTTP Basic auth", _pipedrive),
        Provider(
            "salesforce",
            "/webhooks/crm/salesforce/{token}",
            "text/xml; charset=utf-8",
            "secret path token",
            token_secret="salesforce_token",  # noqa: S106
        ),  # noqa: S106 - a secret's name
        Provider("crm-deals", "/webhooks/crm/deals", "application/json", "Standard Webhooks signature", _standard),
        Provider(
            "crm-meetings", "/webhooks/crm/meetings", "application/json", "Standard Webhooks signature", _standard
        ),
    )
}


def for_org(secrets: dict[str, Any], org: str | None) -> dict[str, str]:
    """The secrets as one organisation's system holds them. A credential may be one value per
    organisation (a JSON object org_id -> value, README "Webhooks"): `org` picks its value; one
    without a value for `org` (any, when no org is named) is left out. A credential being rotated
    is a list, the new value first: the provider signs with that one (Pipedrive's two halves pair
    by position, so the first of each is the new login)."""
    resolved: dict[str, str] = {}
    for name, value in secrets.items():
        if not isinstance(value, dict):
            resolved[name] = _newest(value)
        elif org in value:
            resolved[name] = _newest(value[org])
    return resolved


def _newest(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


@contextmanager
def _org_credentials(secrets: dict[str, Any], org: str | None) -> Iterator[None]:
    """A per-organisation credential the signing needs but `org` does not pick is a ValueError
    naming the secret and its organisations (never a value)."""
    try:
        yield
    except KeyError as exc:
        name = str(exc.args[0]) if exc.args else ""
        value = secrets.get(name)
        if not isinstance(value, dict):
            raise
        orgs = sorted(value)
        wanted = f"has no value for organisation {org!r}" if org else "holds one value per organisation"
        raise ValueError(f"the secret {name} {wanted} ({', '.join(orgs)}): name one with --org ORG") from None


def provider_for_route(resource: str) -> Provider | None:
    return next((p for p in PROVIDERS.values() if p.route == resource), None)


def verifier_url(base_url: str, provider: Provider, token: str | None) -> str:
    """The public URL the verifier reconstructs (API Gateway is HTTPS only: `https://Host/path`)."""
    split = urlsplit(base_url.rstrip("/"))
    return f"https://{split.netloc}{split.path}{provider.route.replace('{token}', token or '')}"


def request_url(base_url: str, provider: Provider, token: str | None) -> str:
    return base_url.rstrip("/") + provider.route.replace("{token}", token or "")


def multipart_content_type(body: bytes) -> str:
    """A multipart body starts with `--<boundary>`: the Content-Type it must be sent with."""
    first = body.split(b"\r\n", 1)[0].split(b"\n", 1)[0].strip()
    if not first.startswith(b"--") or len(first) < 3:
        raise ValueError("not a multipart/form-data body (it must start with --<boundary>)")
    return f"multipart/form-data; boundary={first[2:].decode()}"


def sign_body(
    provider: Provider,
    secrets: dict[str, Any],
    body: bytes,
    base_url: str,
    given: dict[str, str] | None = None,
    org: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(URL to POST to, headers to send) for a body, authenticated with these secrets (`org`'s
    credential where there is one per organisation)."""
    given = given or {}
    content_type = (
        multipart_content_type(body) if provider.content_type.startswith("multipart/") else provider.content_type
    )
    with _org_credentials(secrets, org):
        own = for_org(secrets, org)
        token = provider.token(own)
        headers = provider.sign(own, body, verifier_url(base_url, provider, token), given)
    return request_url(base_url, provider, token), {"Content-Type": content_type, **headers}


def event_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")


def sign_event(
    event: dict[str, Any], secrets: dict[str, Any], org: str | None = None
) -> tuple[dict[str, Any], Provider | None]:
    """An API Gateway event on a webhook route, authenticated as its provider would send it
    (new signature headers, or the local path token; `org`'s credential where there is one per
    organisation); other events are returned unchanged."""
    provider = provider_for_route(str(event.get("resource") or ""))
    if provider is None:
        return event, None
    with _org_credentials(secrets, org):
        return _signed_event(event, provider, for_org(secrets, org)), provider


def _signed_event(event: dict[str, Any], provider: Provider, secrets: dict[str, str]) -> dict[str, Any]:
    signed_event = copy.deepcopy(event)
    body = event_body(event)
    token = provider.token(secrets)
    if token is not None:
        old = (event.get("pathParameters") or {}).get("token", "")
        signed_event["pathParameters"] = {**(event.get("pathParameters") or {}), "token": token}
        context = signed_event.setdefault("requestContext", {})
        for holder, key in ((signed_event, "path"), (context, "path")):
            if isinstance(holder.get(key), str) and old:
                holder[key] = holder[key].removesuffix(old) + token
    url = WebhookRequest.from_event(signed_event, max(len(body), 1)).url
    given = {k: str(v) for k, v in (event.get("headers") or {}).items()}
    headers = provider.sign(secrets, body, url, given)
    lowered = {k.lower() for k in headers}
    merged = {k: v for k, v in given.items() if k.lower() not in lowered} | headers
    signed_event["headers"] = merged
    signed_event["multiValueHeaders"] = {k: [v] for k, v in merged.items()}
    return signed_event


def curl_command(url: str, headers: dict[str, str], data_file: str) -> str:
    parts = ["curl", "-sS", "-X", "POST", _quote(url)]
    for name, value in headers.items():
        parts += ["-H", _quote(f"{name}: {value}")]
    parts += ["--data-binary", _quote("@" + data_file)]
    return " ".join(parts)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def headers_text(headers: dict[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


def dumps_event(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)

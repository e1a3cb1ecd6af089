"""The parts of an API Gateway proxy event a webhook needs, with the body as its exact bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flywheel.errors import PayloadTooLarge


@dataclass
class WebhookRequest:
    method: str
    url: str  # the public URL the provider called (HubSpot signs it)
    headers: dict[str, str]  # lower-cased names
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @classmethod
    def from_event(cls, event: dict[str, Any], max_body_bytes: int) -> WebhookRequest:
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
        if len(body) > max_body_bytes:
            raise PayloadTooLarge(f"body of {len(body)} bytes is over the limit of {max_body_bytes}")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if v is not None}
        context = event.get("requestContext") or {}
        host = headers.get("host", "localhost")
        path = context.get("path") or event.get("path") or "/"
        query = event.get("queryStringParameters") or {}
        url = f"https://{host}{path}" + (f"?{urlencode(query)}" if query else "")
        return cls(
            method=str(event.get("httpMethod", "POST")).upper(),
            url=url,
            headers=headers,
            body=body,
            path_params=dict(event.get("pathParameters") or {}),
        )

"""HubSpot's and Pipedrive's APIs on localhost: the few calls the CRM webhooks make, answered from
records the local stack knows (the webhook samples' deal and person, plus any the demo adds).
Requests without the right token are refused, as the real APIs do."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class CrmRecords:
    hubspot_token: str
    pipedrive_token: str
    # deal id -> (deal properties, associated contact id -> email)
    hubspot_deals: dict[str, tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)
    pipedrive_persons: dict[str, list[str]] = field(default_factory=dict)  # person id -> emails, primary first

    def contact_email(self, contact_id: str) -> str | None:
        return next((c[contact_id] for _, c in self.hubspot_deals.values() if contact_id in c), None)


class LocalCrm:
    """The server, on a free port of 127.0.0.1; `base_url` goes in HUBSPOT_API_BASE / PIPEDRIVE_API_BASE."""

    def __init__(self, records: CrmRecords) -> None:
        self.records = records
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(records))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalCrm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(records: CrmRecords) -> type[BaseHTTPRequestHandler]:
    class Api(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = urlsplit(self.path).path
            if path.startswith("/crm/v3/objects/deals/"):
                if self.headers.get("Authorization") != f"Bearer {records.hubspot_token}":
                    return self._send(401, {"status": "error", "category": "INVALID_AUTHENTICATION"})
                deal = records.hubspot_deals.get(path.rsplit("/", 1)[1])
                if deal is None:
                    return self._send(404, {"status": "error", "category": "OBJECT_NOT_FOUND"})
                properties, contacts = deal
                return self._send(
                    200,
                    {
                        "id": path.rsplit("/", 1)[1],
                        "properties": properties,
                        "associations": {
                            "contacts": {"results": [{"id": c, "type": "deal_to_contact"} for c in contacts]}
                        },
                    },
                )
            if path.startswith("/api/v2/persons/"):
                if self.headers.get("x-api-token") != records.pipedrive_token:
                    return self._send(401, {"success": False, "error": "unauthorized access"})
                emails = records.pipedrive_persons.get(path.rsplit("/", 1)[1])
                if emails is None:
                    return self._send(404, {"success": False, "error": "Person not found"})
                return self._send(
                    200,
                    {
                        "success": True,
                        "data": {
                            "id": int(path.rsplit("/", 1)[1]),
                            "emails": [{"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)],
                        },
                    },
                )
            return self._send(404, {"message": "not emulated locally"})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if urlsplit(self.path).path != "/crm/v3/objects/contacts/batch/read":
                return self._send(404, {"message": "not emulated locally"})
            if self.headers.get("Authorization") != f"Bearer {records.hubspot_token}":
                return self._send(401, {"status": "error", "category": "INVALID_AUTHENTICATION"})
            ids = [str(item.get("id")) for item in body.get("inputs", [])]
            return self._send(
                200,
                {
                    "status": "COMPLETE",
                    "results": [
                        {"id": i, "properties": {"email": records.contact_email(i)}}
                        for i in ids
                        if records.contact_email(i)
                    ],
                },
            )

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    return Api

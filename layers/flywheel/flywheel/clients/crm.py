"""HubSpot and Pipedrive API calls the CRM webhooks need (deal details, contact emails)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

HUBSPOT_DEAL_PROPERTIES = "amount,dealstage,closedate,hs_is_closed_won,hs_is_closed,deal_currency_code"


class HubSpotClient:
    def __init__(self, base_url: str, access_token: str, timeout_s: float, budget_s: float | None = None) -> None:
        from flywheel.clients.http import HttpJsonClient  # built here: webhooks/hubspot imports this module

        self.http = HttpJsonClient(
            "HubSpot", base_url, {"Authorization": f"Bearer {access_token}"}, timeout_s, budget_s=budget_s
        )

    def deal(self, deal_id: str, extra_properties: list[str]) -> dict[str, Any] | None:
        props = ",".join([HUBSPOT_DEAL_PROPERTIES, *extra_properties])
        # ids are checked as digits by the webhook adapter; escaped here all the same, so a signed
        # body can never steer our token to another path of the API
        return self.http.request(
            "GET",
            f"/crm/v3/objects/deals/{quote(str(deal_id), safe='')}",
            params={"properties": props, "associations": "contacts"},
        )

    def contact_emails(self, contact_ids: list[str]) -> list[str]:
        if not contact_ids:
            return []
        body = self.http.request(
            "POST",
            "/crm/v3/objects/contacts/batch/read",
            json={"properties": ["email"], "inputs": [{"id": c} for c in contact_ids]},
        )
        results = (body or {}).get("results", [])
        emails = [str(r.get("properties", {}).get("email") or "").strip().lower() for r in results]
        return sorted({e for e in emails if e})


def hubspot_contact_ids(deal: dict[str, Any]) -> list[str]:
    results = deal.get("associations", {}).get("contacts", {}).get("results", [])
    return sorted({str(r["id"]) for r in results if r.get("id") is not None})


class PipedriveClient:
    def __init__(self, base_url: str, api_token: str, timeout_s: float, budget_s: float | None = None) -> None:
        from flywheel.clients.http import HttpJsonClient  # built here: webhooks/hubspot imports this module

        self.http = HttpJsonClient("Pipedrive", base_url, {"x-api-token": api_token}, timeout_s, budget_s=budget_s)

    def person_emails(self, person_id: int | str) -> list[str]:
        body = self.http.request("GET", f"/api/v2/persons/{quote(str(person_id), safe='')}")
        data = (body or {}).get("data") or {}
        emails = data.get("emails") or data.get("email") or []
        ordered = sorted(emails, key=lambda e: not e.get("primary")) if isinstance(emails, list) else []
        return [str(e["value"]).strip().lower() for e in ordered if e.get("value")]

"""Review (hub9b): a HubSpot deal whose contact list changes between events.

Contacts 5, 6, 7 are on deal 5; lead 5 was e-mailed first. The CRM's later word about the deal
reaches only the contacts still on the deal (HubSpot's deal fetch lists the contacts *now*). The
deal is credited to the first-sent message whose latest word is a close - lead 5's, with a stale
word - so the current status of the deal is never what is counted.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, rolled_deals, run
from tests.integration.test_shared_deals import (  # noqa: F401 - crm is a fixture
    CONTACTS,
    contact_message,
    crm,
    deals,
    won_and_revenue,
)


def hubspot_deal(object_id: int, event_id: int, days: int) -> dict[str, Any]:
    from tests.conftest import load_event
    from tests.webhook_helpers import hubspot_headers, public_url, route_event

    body = json.loads(race.hubspot(5)["event"]["body"])
    at = int((SENT + timedelta(days=days)).timestamp() * 1000)
    body[0].update(objectId=object_id, eventId=event_id, occurredAt=at)
    template = load_event("webhooks_hubspot_deal_won.json")
    raw = json.dumps(body)
    return race.webhook(route_event(template, raw, **hubspot_headers(raw.encode(), public_url(template))))


def _register() -> None:
    # lead 5 sent first, then 6, then 7
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in CONTACTS]))


def test_lost_then_contact_removed_then_won_is_one_won_deal(db, crm) -> None:  # noqa: F811
    _register()
    crm.won = False
    run(hubspot_deal(5, 1, 3))  # lost, all three contacts
    assert won_and_revenue(db) == (0, 0)
    crm.contacts, crm.won = (6, 7), True  # contact 5 removed from the deal, deal won
    run(hubspot_deal(5, 2, 4))
    # the deal is won ($50,000) now: one deal won, $50,000
    assert won_and_revenue(db) == (1, Decimal("50000.00")), deals(db)
    assert rolled_deals(db) == (1, 50000)


def test_won_then_contact_removed_then_lost_is_no_won_deal(db, crm) -> None:  # noqa: F811
    _register()
    run(hubspot_deal(5, 1, 3))  # won, all three contacts
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    crm.contacts, crm.won = (6, 7), False  # contact 5 removed, deal lost
    run(hubspot_deal(5, 2, 4))
    # the deal is lost now: nothing won
    assert won_and_revenue(db) == (0, 0), deals(db)
    assert rolled_deals(db) == (0, 0)

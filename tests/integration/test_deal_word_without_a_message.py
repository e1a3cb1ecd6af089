"""Review hub9c-3: the CRM's latest word reaches only a contact that was never e-mailed.

HubSpot deal 5 has contacts 5 (e-mailed: a message is registered) and 6 (a colleague nobody
e-mailed: no message). Won on day 3 ($50,000): counted once, on 5's message. Then contact 5 is
removed from the deal and the deal is lost (day 4): the lost word is for contact 6 only, who has no
message, so it is stored as an orphan and no holder's word changes. Expected (the brief's invariant:
deals won = deals whose latest word is won; README: "when only some contacts get the CRM's later
word ... that word is the deal's"): 0 won. Observed: 1 won / $50,000 until (if ever) a message to
contact 6 is registered.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, rolled_deals, run
from tests.integration.test_deal_contact_list_changes import hubspot_deal
from tests.integration.test_shared_deals import (  # noqa: F401 - crm is a fixture
    contact_message,
    crm,
    deals,
    won_and_revenue,
)


def test_lost_word_to_an_unmailed_contact_only(db, crm) -> None:  # noqa: F811
    run(race.registration([contact_message(5, SENT)]))  # only lead 5 was e-mailed
    crm.contacts = (5, 6)
    run(hubspot_deal(5, 1, 3))  # won: applied to 5, orphan for 6
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    crm.contacts, crm.won = (6,), False  # 5 removed from the deal, deal lost
    run(hubspot_deal(5, 2, 4))
    assert won_and_revenue(db) == (0, 0), deals(db)
    assert rolled_deals(db) == (0, 0)


def test_a_win_known_only_through_an_unmailed_lead_counts_once_its_message_registers(db, crm) -> None:  # noqa: F811
    """In-house deal D-7 lost for lead 5 (e-mailed), then won naming lead 6 (nobody e-mailed: an
    orphan). The deal's word is the win, which no message holds: it counts for nobody (README). A
    message to lead 6 registered later claims the win and the deal's holders are re-derived: 1 won,
    on 6's message."""
    from tests.integration.test_shared_deals import lead_deal

    run(race.registration([contact_message(5, SENT)]))
    run(lead_deal("deal_lost", 5, "D-7", "700.00", 3, "d7-5"))
    run(lead_deal("deal_won", 6, "D-7", "700.00", 4, "d7-6"))
    assert won_and_revenue(db) == (0, 0), deals(db)
    run(race.registration([contact_message(6, SENT + timedelta(hours=1))]))
    assert won_and_revenue(db) == (1, Decimal("700.00")), deals(db)
    assert rolled_deals(db) == (1, 700)

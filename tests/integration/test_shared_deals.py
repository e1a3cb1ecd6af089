"""A deal several messages led to is counted once (outside review): a HubSpot deal with three
e-mailed contacts went to each contact's message, and every report counted each message's deal: a
$50,000 deal was 3 deals won and $150,000 of revenue (the rollup, the funnel, the leaderboard, the
experiments' close metric and revenue). Now the deal is counted on one message (the first sent) and
each contact's message keeps the positive label (shared_deal_status), whatever order the contacts'
events and messages arrive in, and when several processes apply them at once."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from flywheel.clients import http as http_client
from flywheel.dal import insights
from flywheel.dal import models as models_dal
from flywheel.dal.connection import close_connection, transaction
from flywheel.dal.experiments import segment_counts
from flywheel.dal.outcomes import won_deals_sql, won_revenue_sql
from flywheel.services import experiments
from tests.conftest import ROOT
from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, hubspot_change, in_house_deal, rolled_deals, run
from tests.integration.test_experiments import models  # noqa: F401 - a fixture
from tests.webhook_helpers import configure

CONTACTS = (5, 6, 7)


class ThreeContacts(race.Crm):
    """HubSpot deal 5: $50,000, contacts 5, 6 and 7 (leads 5, 6 and 7), won until `won` is False."""

    def __init__(self) -> None:
        self.won, self.contacts = True, CONTACTS

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        response = super().__call__(request)
        if request.url.path.startswith("/crm/v3/objects/deals/"):
            body = response.json()
            body["properties"]["amount"] = "50000"
            if not self.won:
                body["properties"].update(dealstage="closedlost", hs_is_closed_won="false", hs_is_closed="true")
            body["associations"]["contacts"]["results"] = [
                {"id": str(i), "type": "deal_to_contact"} for i in self.contacts
            ]
            return httpx2.Response(200, json=body)
        return response


@pytest.fixture
def crm(db_url, monkeypatch) -> ThreeContacts:
    crm = ThreeContacts()
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(crm))
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"hubspot:5799819": "acme", "pipedrive:8087566": "acme"}))
    return crm


def contact_message(i: int, sent: datetime, route: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "org_id": "acme",
        "campaign_id": "deal",
        "lead_id": f"lead-{i}",
        "lead_email": race.lead(i),
        "body": f"to {i}",
        "framework": "AIDA",
        "tone": "casual",
        "lead": {"industry": "saas", "role": "cfo"},
        "sent_at": sent.isoformat(),
        "idempotency_key": f"c{i}",
        **({"route": route} if route else {}),
    }


def deals(db) -> list[tuple[str, Any, Any, Any, str, float]]:
    """(body, deal_status, deal_value, shared_deal_status, training_label, weight) of each message."""
    return [
        (
            r["body"],
            r["deal_status"],
            r["deal_value"],
            r["shared_deal_status"],
            r["training_label"],
            r["training_weight"],
        )
        for r in db.execute(
            "SELECT body, deal_status, deal_value, shared_deal_status, training_label, training_weight"
            " FROM outcome_labels ORDER BY body"
        ).fetchall()
    ]


def lead_deal(event: str, lead: int, deal: str, value: str, days: int, webhook_id: str) -> dict[str, Any]:
    """An in-house deal event of one lead (by its email), `days` after SENT."""
    body = {
        "event": event,
        "lead_email": race.lead(lead),
        "org_id": "acme",
        "deal_id": deal,
        "value": value,
        "currency": "USD",
        "occurred_at": (SENT + timedelta(days=days)).isoformat(),
    }
    return race.crm_request("webhooks_crm_deal_won.json", body, webhook_id)


def won_and_revenue(db) -> tuple[int, Any]:
    """Deals won and revenue as every count reads them (dal.outcomes.won_deals_sql)."""
    row = db.execute(
        f"SELECT coalesce(sum({won_deals_sql()}), 0) AS won, coalesce(sum({won_revenue_sql()}), 0) AS revenue"
        " FROM outcome_labels"
    ).fetchone()
    return int(row["won"]), row["revenue"]


WON_ON_6 = [
    ("to 5", None, None, "won", "positive", 10.0),
    ("to 6", "won", Decimal("50000.00"), None, "positive", 10.0),
    ("to 7", None, None, "won", "positive", 10.0),
]


def test_a_deal_of_three_contacts_is_counted_once_in_every_report(db, crm, models) -> None:  # noqa: F811
    """Through the real webhook path (a v3-signed HubSpot delivery, the deal and its contacts read
    from the HubSpot API). Lead 6 was e-mailed first: the deal is counted there."""
    routed = {i: experiments.route("acme", f"lead-{i}") for i in CONTACTS}
    messages = [
        contact_message(
            i,
            SENT + timedelta(hours={5: 2, 6: 0, 7: 1}[i]),
            {
                "model_registry_id": routed[i]["model"]["model_registry_id"],
                "experiment_id": routed[i]["experiment_id"],
                "arm": routed[i]["arm"],
            },
        )
        for i in CONTACTS
    ]
    db.execute("UPDATE experiments SET started_at = %s, stage_started_at = %s", (SENT - timedelta(days=1),) * 2)
    run(race.registration(messages))
    out = run(hubspot_change(1, SENT + timedelta(days=3)))
    assert out["applied"] == 3, out
    # each contact's message led to the deal: the same label and weight; one counts it
    assert deals(db) == WON_ON_6
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    assert rolled_deals(db) == (1, 50000)  # report_daily_counts, after a refresh
    with transaction() as conn:
        assert insights.funnel_counts(conn, "acme")[0]["won"] == 1  # the report's funnel
        board = models_dal.leaderboard(conn, "acme")
        assert (sum(r["deals_won"] for r in board), sum(r["revenue"] for r in board)) == (1, 50000)
        view = conn.execute("SELECT sum(deals_won) AS won, sum(revenue) AS revenue FROM model_leaderboard").fetchone()
        assert view is not None and (view["won"], view["revenue"]) == (1, 50000)
        # the experiment evaluator's close metric and revenue: one lead converted, $50,000
        counted = segment_counts(conn, routed[5]["experiment_id"], {"close": ("close", 30)}, SENT + timedelta(days=90))
        assert sum(r["close__conversions"] for r in counted) == 1
        assert sum(r["revenue"] for r in counted) == 50000


def test_a_deal_lost_reopened_and_won_again_stays_counted_once(db, crm) -> None:
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in CONTACTS]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    assert won_and_revenue(db) == (1, Decimal("50000.00")) and rolled_deals(db) == (1, 50000)
    crm.won = False  # the CRM's later word: lost
    run(hubspot_change(2, SENT + timedelta(days=4)))
    assert [d[1:5] for d in deals(db)] == [
        ("lost", Decimal("50000.00"), None, "negative"),
        (None, None, "lost", "negative"),
        (None, None, "lost", "negative"),
    ]
    assert rolled_deals(db) == (0, 0)
    crm.won = True  # and won again
    run(hubspot_change(3, SENT + timedelta(days=5)))
    assert won_and_revenue(db) == (1, Decimal("50000.00")) and rolled_deals(db) == (1, 50000)
    assert [d[4] for d in deals(db)] == ["positive"] * 3


def test_a_contact_whose_message_registers_later_takes_the_count_when_it_was_sent_first(db, crm) -> None:
    """Lead 7's event waits as an orphan; its message, sent before lead 6's, registers: the deal moves
    to it (counted once throughout, never on both)."""
    run(race.registration([contact_message(6, SENT + timedelta(hours=5))]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    run(race.registration([contact_message(7, SENT)]))
    assert deals(db) == [
        ("to 6", None, None, "won", "positive", 10.0),
        ("to 7", "won", Decimal("50000.00"), None, "positive", 10.0),
    ]
    assert rolled_deals(db) == (1, 50000)


def test_a_contact_removed_from_the_deal_keeps_its_word_and_the_others_count_it(db, crm) -> None:
    """Lead 5's message (first sent) got the won; the deal then lost contacts 5 and 6 and was lost:
    the deal's word is its latest across its messages (lost), counted on the first-sent message whose
    own latest word is that one (lead 7); the stale wins of 5 and 6 count nothing."""
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in CONTACTS]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    crm.won, crm.contacts = False, (7,)
    run(hubspot_change(2, SENT + timedelta(days=4)))  # lost, now with contact 7 only
    # 5 and 6 still say won (the CRM said nothing more to them; their label keeps it), 7 says lost
    assert [d[:4] for d in deals(db)] == [
        ("to 5", None, None, "won"),
        ("to 6", None, None, "won"),
        ("to 7", "lost", Decimal("50000.00"), None),
    ]
    assert won_and_revenue(db) == (0, 0)
    assert rolled_deals(db) == (0, 0)


def test_in_house_deals_still_live_on_their_first_close(db, crm) -> None:
    """One lead's deal stays on the message of its first close (a follow-up never gets it), and an
    in-house deal id sent for two leads is counted once too."""
    run(race.registration([contact_message(5, SENT), contact_message(6, SENT + timedelta(hours=1))]))
    body = json.loads(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m1")["event"]["body"])
    for i, webhook_id in ((5, "m-5"), (6, "m-6")):
        run(race.crm_request("webhooks_crm_deal_won.json", {**body, "lead_email": race.lead(i)}, webhook_id))
    assert [d[:4] for d in deals(db)] == [
        ("to 5", "won", Decimal("1000.00"), None),
        ("to 6", None, None, "won"),
    ]
    run(race.registration([{**contact_message(5, SENT + timedelta(days=5)), "idempotency_key": "f5", "body": "f5"}]))
    run(
        race.crm_request(
            "webhooks_crm_deal_won.json",
            {
                **body,
                "lead_email": race.lead(5),
                "value": "1200.00",
                "occurred_at": (SENT + timedelta(days=6)).isoformat(),
            },
            "m-5b",
        )
    )
    assert won_and_revenue(db) == (1, Decimal("1200.00"))
    assert db.execute("SELECT deal_status FROM outcome_labels WHERE body = 'f5'").fetchone()["deal_status"] is None


@pytest.mark.parametrize("own_deal", [False, True], ids=["one-deal", "first-lead-won-another-deal"])
def test_contacts_events_applied_by_concurrent_transactions_count_the_deal_once(
    db, db_url, crm, monkeypatch, own_deal: bool
) -> None:
    """Four leads of one in-house deal id, each contact's deal_won applied by its own connection at
    the same moment. Each transaction, held open after re-deriving, lets the others run: without
    the deal's lock each saw no other message of the deal and counted it (4 deals won, $4,000).
    `own_deal`: the first-sent lead (credited with D-1) also won its own D-2 ($5,000), whose
    deal_status its message shows: D-1 is still counted there (it was counted nowhere: 1 deal)."""
    from flywheel.domain.ingest import IncomingEvent
    from flywheel.services import ingest as ingest_service

    leads = range(10, 14)
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in leads]))
    if own_deal:
        run(lead_deal("deal_won", 10, "D-2", "5000.00", 4, "own-d2"))
    close_connection()
    barrier = threading.Barrier(len(leads))
    real = ingest_service.recompute

    def recompute(conn: Any, *args: Any, **kwargs: Any) -> None:
        real(conn, *args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):  # all at once, unless a lock serialises them
            barrier.wait(3)

    monkeypatch.setattr(ingest_service, "recompute", recompute)
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        event = IncomingEvent(
            "crm",
            f"acme|w-{i}",
            "deal_won",
            SENT + timedelta(days=3),
            {"event": "deal_won"},
            {"deal_id": "crm:D-1", "value": "1000.00", "currency": "USD"},
            org_id="acme",
            email=race.lead(i),
        )
        try:
            ingest_service.ingest_events([event], window_days=90)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_connection()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in leads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    expected = (2, Decimal("6000.00")) if own_deal else (1, Decimal("1000.00"))
    assert won_and_revenue(db) == expected
    assert [r["deal_status"] for r in db.execute("SELECT deal_status FROM outcome_labels ORDER BY sent_at")] == [
        "won",
        None,
        None,
        None,
    ]
    assert rolled_deals(db) == expected


def test_the_migration_moves_the_stored_shared_deals_to_the_shared_columns(db, crm) -> None:
    """What the release before stored (the deal won on every contact's message), brought by sql/0028
    to what a re-derivation writes; the report rollup follows."""
    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in CONTACTS]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    derived = deals(db)
    db.execute(
        """UPDATE outcome_labels SET deal_status = shared_deal_status, deal_value = shared_deal_value,
                  deal_currency = 'USD', deal_closed_at = now(), shared_deal_status = NULL, shared_deal_value = NULL
            WHERE shared_deal_status IS NOT NULL"""
    )
    db.execute("UPDATE outcome_labels SET deals_won = NULL, won_revenue = NULL")  # never written before
    assert won_and_revenue(db) == (3, Decimal("150000.00")) and rolled_deals(db) == (3, 150000)
    sql = (ROOT / "sql" / "0028_shared_deals_and_key_format.sql").read_text()
    backfill = sql[sql.index("WITH holders AS") : sql.index("WHERE o.outcome_id = c.outcome_id;") + 33]
    db.execute(backfill)
    assert deals(db) == derived
    assert won_and_revenue(db) == (1, Decimal("50000.00")) and rolled_deals(db) == (1, 50000)

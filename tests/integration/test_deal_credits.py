"""Every deal is counted exactly once (outside re-review of hub9).

- A deal several messages led to was credited to the first-sent message even when that message's
  one deal_status column showed another deal of its own: the deal was counted nowhere (leads 5 and
  6 led to D-1, lead 5 then won D-2: 1 deal / $5,000 instead of 2 / $6,000). A message that won two
  deals of its own (one lead's two deals) was counted once even before. Every count now reads
  deals_won / won_revenue: each deal credited to a message is counted there, however many.
- Two CRM accounts of one organisation (two Pipedrive companies) each have a deal 8: they were taken
  for one deal of two contacts. The account is part of the deal now.
- deal_holders and the deal link lock ignored the organisation: one organisation's deal 8 re-derived
  (and row-locked) every organisation's deal 8.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from flywheel.dal.connection import close_connection
from flywheel.dal.outcomes import won_deals_sql, won_revenue_sql
from flywheel.domain.ingest import IncomingEvent, deal_link
from flywheel.services import ingest as ingest_service
from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, rolled_deals, run
from tests.integration.test_shared_deals import (  # noqa: F401 - crm is a fixture
    CONTACTS,
    contact_message,
    crm,
    deals,
    lead_deal,
    won_and_revenue,
)


def test_a_deal_credited_to_a_message_that_shows_another_deal_is_still_counted(db, crm) -> None:  # noqa: F811
    """Lead 5 (sent first) and lead 6 led to D-1 ($1,000); lead 5 then wins its own D-2 ($5,000),
    which its message's deal_status shows. D-1 stays credited to lead 5's message and is counted
    there with D-2: 2 deals, $6,000 (was 1, $5,000)."""
    run(race.registration([contact_message(5, SENT), contact_message(6, SENT + timedelta(hours=1))]))
    run(lead_deal("deal_won", 5, "D-1", "1000.00", 3, "d1-5"))
    run(lead_deal("deal_won", 6, "D-1", "1000.00", 3, "d1-6"))
    assert won_and_revenue(db) == (1, Decimal("1000.00"))
    run(lead_deal("deal_won", 5, "D-2", "5000.00", 4, "d2-5"))
    assert won_and_revenue(db) == (2, Decimal("6000.00")), deals(db)
    assert rolled_deals(db) == (2, 6000)
    counted = db.execute("SELECT body, deals_won, won_revenue FROM outcome_labels ORDER BY body").fetchall()
    assert [(r["body"], r["deals_won"], r["won_revenue"]) for r in counted] == [
        ("to 5", 2, Decimal("6000.00")),
        ("to 6", None, None),  # none of its own: counts nothing (NULL, its deal_status being NULL)
    ]
    # D-2 lost: D-1 is still counted once
    run(lead_deal("deal_lost", 5, "D-2", "5000.00", 5, "d2-5-lost"))
    assert won_and_revenue(db) == (1, Decimal("1000.00")) and rolled_deals(db) == (1, 1000)


def test_a_message_that_won_two_deals_of_its_own_counts_both(db, crm) -> None:  # noqa: F811
    """One lead, two deals (D-1 $1,000, D-2 $5,000), both on its message: counted once since the
    beginning (the message shows one deal); now 2 deals, $6,000 in every count."""
    run(race.registration([contact_message(5, SENT)]))
    run(lead_deal("deal_won", 5, "D-1", "1000.00", 3, "d1"))
    run(lead_deal("deal_won", 5, "D-2", "5000.00", 4, "d2"))
    assert won_and_revenue(db) == (2, Decimal("6000.00")) and rolled_deals(db) == (2, 6000)
    row = db.execute("SELECT deal_status, deal_value FROM outcome_labels").fetchone()
    assert (row["deal_status"], row["deal_value"]) == ("won", Decimal("5000.00"))  # the latest one shown


def test_hubspot_contact_on_two_deals(db, crm) -> None:  # noqa: F811
    """HubSpot deal 5 ($50,000) has contacts 5, 6 and 7; contact 5 (e-mailed first) is also the only
    contact of deal 9 ($50,000), won a day later: both counted (was 1 / $50,000)."""
    from tests.integration.test_deal_contact_list_changes import hubspot_deal

    run(race.registration([contact_message(i, SENT + timedelta(hours=i)) for i in CONTACTS]))
    run(hubspot_deal(5, 1, 3))
    assert won_and_revenue(db) == (1, Decimal("50000.00"))
    crm.contacts = (5,)
    run(hubspot_deal(9, 2, 4))
    assert won_and_revenue(db) == (2, Decimal("100000.00")), deals(db)
    assert rolled_deals(db) == (2, 100000)
    accounts = {
        r["a"] for r in db.execute("SELECT data->>'deal_account' AS a FROM outcome_events WHERE data ? 'deal_id'")
    }
    assert accounts == {"5799819"}  # the portal


def _pipedrive(company: str, deal: int, person: int, value: int, meta_id: str) -> dict[str, Any]:
    from tests.conftest import load_event
    from tests.webhook_helpers import route_event

    template = load_event("webhooks_pipedrive_deal_won.json")
    raw = json.loads(template["body"])
    won = (SENT + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    raw["data"].update(id=deal, person_id=person, value=value, won_time=won, close_time=won, update_time=won)
    raw["meta"].update(id=meta_id, entity_id=str(deal), company_id=company, timestamp=won)
    return race.webhook(route_event(template, json.dumps(raw)))


def test_two_pipedrive_companies_of_one_organisation_with_the_same_deal_number(db, crm, monkeypatch) -> None:  # noqa: F811
    """acme maps two Pipedrive companies; each numbers its own deals, so both have a deal 8:
    company 8087566's is lead 5's ($42,000), company 9999999's lead 6's ($10,000). Two deals, both
    counted (were taken for one deal of two contacts: 1 / $42,000)."""
    from tests.webhook_helpers import configure

    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"pipedrive:8087566": "acme", "pipedrive:9999999": "acme"}))
    run(race.registration([contact_message(5, SENT), contact_message(6, SENT + timedelta(hours=1))]))
    run(_pipedrive("8087566", 8, 5, 42000, "pd-a-8"))
    run(_pipedrive("9999999", 8, 6, 10000, "pd-b-8"))
    assert won_and_revenue(db) == (2, Decimal("52000.00")), deals(db)
    assert rolled_deals(db) == (2, 52000)
    assert [r[3] for r in deals(db)] == [None, None]  # neither is the other's shared deal


def _deal_won(org: str, i: int, key: str, deal: str = "pipedrive:8") -> IncomingEvent:
    return IncomingEvent(
        "pipedrive",
        f"{org}|{key}",
        "deal_won",
        SENT + timedelta(days=3),
        {"x": 1},
        {"deal_id": deal, "value": "100.00", "currency": "USD"},
        org_id=org,
        email=race.lead(i),
        key_scoped=True,
    )


def _message(org: str, i: int) -> dict[str, Any]:
    return {**contact_message(i, SENT), "org_id": org, "idempotency_key": f"{org}-{i}"}


def test_one_organisations_deal_event_rederives_only_its_own_deal(db) -> None:
    """Five organisations each win their own Pipedrive deal 8: a later event of org0's deal 8
    re-derives org0's message only (it re-derived and row-locked every organisation's)."""
    orgs = [f"org{n}" for n in range(5)]
    run(race.registration([_message(org, n) for n, org in enumerate(orgs)]))
    close_connection()
    ingest_service.ingest_events([_deal_won(org, n, "won") for n, org in enumerate(orgs)], window_days=90)
    result = ingest_service.ingest_events([_deal_won("org0", 0, "again")], window_days=90)
    close_connection()
    touched = {
        r["org_id"]
        for r in db.execute("SELECT org_id FROM outcome_labels WHERE outcome_id::text = ANY(%s)", (result.outcome_ids,))
    }
    assert touched == {"org0"}
    # and each organisation's deal is its own: counted in each
    assert won_and_revenue(db) == (5, Decimal("500.00"))


def test_the_deal_link_key_names_the_organisation_and_account() -> None:
    event = _deal_won("acme", 1, "k")
    event.data["deal_account"] = "8087566"
    assert deal_link("acme", "8087566", "pipedrive:8") in event.link_keys()
    assert deal_link("acme", "8087566", "pipedrive:8") != deal_link("other", "8087566", "pipedrive:8")
    # an event of unknown organisation takes its deal's key once it is linked (services.ingest)
    orphan = IncomingEvent("pipedrive", "|k", "deal_won", SENT, {}, {"deal_id": "pipedrive:8"}, email=race.lead(1))
    assert not [k for k in orphan.link_keys() if k.startswith("deal:")]


# --- the property: whatever the deals, holders, accounts and arrival order, every count says the
# number of distinct won deals and the sum of their values


def _scenario(rng: random.Random, org: str) -> tuple[list[dict[str, Any]], list[IncomingEvent], int, Decimal]:
    leads = list(range(rng.randint(1, 4)))
    # some leads were never e-mailed (a colleague on the deal): their words wait as orphans (or are
    # ignored: a reopening), and a deal whose last word reaches only them counts for nobody
    mailed = set(rng.sample(leads, rng.randint(0, len(leads)))) if rng.random() < 0.5 else set(leads)
    messages = [
        {
            **contact_message(i, SENT + timedelta(minutes=rng.randint(0, 600))),
            "org_id": org,
            "idempotency_key": f"{org}-{i}",
        }
        for i in sorted(mailed)
    ]
    events: list[IncomingEvent] = []
    won, revenue = 0, Decimal(0)
    for d in range(rng.randint(1, 5)):
        # a few deal numbers, in one or two accounts: the same number in two accounts is two deals
        # (no account: the in-house CRM's deal; a Pipedrive row without one is its deal's, whose
        # account its other rows name: test_deal_account_after_retention)
        number, account = f"pipedrive:{rng.randint(1, 3)}", rng.choice(["", "A", "B"])
        if any(e.data["deal_id"] == number and e.data.get("deal_account", "") == account for e in events):
            continue
        holders = rng.sample(leads, rng.randint(1, len(leads)))
        words = [rng.choice(["deal_won", "deal_lost", "deal_reopened"]) for _ in range(rng.randint(1, 3))]
        values = [Decimal(rng.randint(1, 50) * 100) for _ in words]
        # the CRM's word, in order; the last one stands (a reopening is neither won nor lost), and
        # each word reaches only some of the holders (a HubSpot deal's contacts as they are then): a
        # holder's own latest word may be stale; a last word reaching no e-mailed lead is no message's
        reach = [set(rng.sample(holders, rng.randint(1, len(holders)))) for _ in words]
        if words[-1] == "deal_won" and reach[-1] & mailed:
            won, revenue = won + 1, revenue + values[-1]
        for holder in holders:
            for n, (word, value) in enumerate(zip(words, values, strict=True)):
                if holder not in reach[n]:
                    continue
                data: dict[str, Any] = {"deal_id": number, "currency": "USD"}
                if account:
                    data["deal_account"] = account
                if word != "deal_reopened":
                    data["value"] = f"{value:.2f}"
                events.append(
                    IncomingEvent(
                        "pipedrive" if account else "crm",
                        f"{org}|{d}-{account}-{holder}-{n}",
                        word,
                        SENT + timedelta(days=1 + n),
                        {"n": n},
                        data,
                        org_id=org,
                        email=race.lead(holder),
                        key_scoped=True,
                    )
                )
    rng.shuffle(events)
    return messages, events, won, revenue


def _counts(db, org: str) -> tuple[int, Decimal]:
    row = db.execute(
        f"SELECT coalesce(sum({won_deals_sql()}), 0) AS won, coalesce(sum({won_revenue_sql()}), 0) AS revenue"
        " FROM outcome_labels WHERE org_id = %s",
        (org,),
    ).fetchone()
    return int(row["won"]), Decimal(row["revenue"])


@pytest.mark.parametrize("seed", range(10))
def test_every_deal_is_counted_exactly_once_whatever_the_combination(db, seed: int) -> None:
    """Random deals (numbers shared across accounts) x holders (each lead's message) x words (won,
    lost, reopened), each word reaching only some holders (maybe only leads nobody e-mailed), delivered in random batches and order,
    the messages registered before or after (orphans claimed): the counts are the number of distinct
    deals whose deal-wide last word is a win reaching a message and the sum of their values, per organisation and in
    the report rollup."""
    rng = random.Random(seed)
    expected_won, expected_revenue = 0, Decimal(0)
    for n in range(8):
        org = f"p{seed}-{n}"
        messages, events, won, revenue = _scenario(rng, org)
        late = rng.random() < 0.3  # registered after its events: they wait as orphans, then are claimed
        if not late and messages:
            run(race.registration(messages))
        while events:
            size = rng.randint(1, 4)
            ingest_service.ingest_events(events[:size], window_days=90)
            events = events[size:]
        if late and messages:
            run(race.registration(messages))
        close_connection()
        assert _counts(db, org) == (won, revenue), (seed, n, deals(db))
        expected_won, expected_revenue = expected_won + won, expected_revenue + revenue
    assert rolled_deals(db) == (expected_won, expected_revenue)


def test_the_migration_gives_stored_deal_events_their_account_and_counts(db, crm, monkeypatch) -> None:  # noqa: F811
    """What the release before stored (no account in data, no deals_won): sql/0028 reads the account
    from the raw payload and sets the counts, and the rollup follows."""
    from tests.conftest import ROOT
    from tests.webhook_helpers import configure

    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"pipedrive:8087566": "acme", "pipedrive:9999999": "acme"}))
    run(race.registration([contact_message(5, SENT), contact_message(6, SENT + timedelta(hours=1))]))
    run(_pipedrive("8087566", 8, 5, 42000, "pd-a-8"))
    run(_pipedrive("9999999", 8, 6, 10000, "pd-b-8"))
    run(lead_deal("deal_won", 5, "D-2", "5000.00", 4, "d2-5"))
    assert won_and_revenue(db) == (3, Decimal("57000.00")) and rolled_deals(db) == (3, 57000)
    db.execute("UPDATE outcome_events SET data = data - 'deal_account'")
    db.execute("UPDATE outcome_labels SET deals_won = NULL, won_revenue = NULL")  # counts its deal_status: 2
    assert won_and_revenue(db) == (2, Decimal("15000.00")) and rolled_deals(db) == (2, 15000)
    sql = (ROOT / "sql" / "0028_shared_deals_and_key_format.sql").read_text()
    db.execute(sql[sql.index("UPDATE outcome_events d") : sql.index("d.data ? 'deal_id';") + 18])
    db.execute(sql[sql.index("WITH holders AS") : sql.index("WHERE o.outcome_id = c.outcome_id;") + 33])
    accounts = {
        r["a"] for r in db.execute("SELECT data->>'deal_account' AS a FROM outcome_events WHERE provider = 'pipedrive'")
    }
    assert accounts == {"8087566", "9999999"}
    assert won_and_revenue(db) == (3, Decimal("57000.00")) and rolled_deals(db) == (3, 57000)


@pytest.mark.parametrize("last", ["deal_lost", "deal_reopened"])
def test_the_migration_counts_no_deal_whose_last_word_reached_no_message(db, crm, last: str) -> None:  # noqa: F811
    """In-house deal D-9 won for lead 5 (e-mailed), then lost or reopened naming lead 6 (nobody
    e-mailed: an orphan; a reopening is `ignored`, lead 6 never saw it closed). What the release before
    stored counts the win on 5's message; sql/0028's backfill reads the deal's word from all its rows,
    as a re-derivation does: no deal won."""
    from tests.conftest import ROOT

    run(race.registration([contact_message(5, SENT)]))
    run(lead_deal("deal_won", 5, "D-9", "1000.00", 3, "d9-5"))
    run(lead_deal(last, 6, "D-9", "1000.00", 4, "d9-6"))
    assert won_and_revenue(db) == (0, 0), deals(db)
    # the release before: no counts, the message shows its own win
    db.execute(
        "UPDATE outcome_labels SET deals_won = NULL, won_revenue = NULL, shared_deal_status = NULL,"
        " shared_deal_value = NULL, deal_status = 'won', deal_value = 1000"
    )
    assert won_and_revenue(db) == (1, Decimal("1000.00"))
    sql = (ROOT / "sql" / "0028_shared_deals_and_key_format.sql").read_text()
    db.execute(sql[sql.index("WITH holders AS") : sql.index("WHERE o.outcome_id = c.outcome_id;") + 33])
    assert won_and_revenue(db) == (0, 0), deals(db)

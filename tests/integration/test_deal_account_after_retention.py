"""Review (hub9b): a deal whose pre-upgrade events have no account (raw payload removed by
retention before sql/0028 ran, so the backfill could not read the account) and whose later events
carry it (every adapter now stores data.deal_account) is taken for TWO deals on the same message.

One lead, one Pipedrive deal 8 of company 8087566 in acme (the only account acme maps):
- won ($10,000) before the upgrade, over 120 days ago: payload purged, so 0028 left no account;
- after the upgrade the CRM says lost (or won again with an edited amount $12,000).
Expected: 0 won (lost) / 1 won $12,000 (edited). Observed: the stale account-less win still counts.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from flywheel.dal.connection import close_connection
from flywheel.domain.ingest import IncomingEvent
from flywheel.services import ingest as ingest_service
from tests.integration import test_concurrency as race
from tests.integration.test_deal_attribution import SENT, rolled_deals, run
from tests.integration.test_shared_deals import contact_message, deals, won_and_revenue


def _event(key: str, kind: str, days: int, value: str | None, account: str | None) -> IncomingEvent:
    data = {"deal_id": "pipedrive:8", "currency": "USD"}
    if value:
        data["value"] = value
    if account:
        data["deal_account"] = account
    return IncomingEvent(
        "pipedrive",
        f"acme|{key}",
        kind,
        SENT + timedelta(days=days),
        {"meta": {"company_id": account}},
        data,
        org_id="acme",
        email=race.lead(5),
        key_scoped=True,
    )


def _pre_upgrade_win(db) -> None:
    run(race.registration([contact_message(5, SENT)]))
    close_connection()
    ingest_service.ingest_events([_event("won-1", "deal_won", 3, "10000.00", "8087566")], window_days=90)
    close_connection()
    # what the release before stored, after retention removed its payload: no account, and sql/0028's
    # backfill (which reads the payload) cannot give it one
    db.execute("UPDATE outcome_events SET data = data - 'deal_account', payload = NULL")
    assert won_and_revenue(db) == (1, Decimal("10000.00"))


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("deal_lost", "10000.00", (0, Decimal(0))),
        ("deal_won", "12000.00", (1, Decimal("12000.00"))),
        ("deal_reopened", None, (0, Decimal(0))),
    ],
)
def test_a_deal_s_later_word_replaces_its_pre_upgrade_word(db, kind, value, expected) -> None:
    _pre_upgrade_win(db)
    ingest_service.ingest_events([_event("later", kind, 200, value, "8087566")], window_days=90)
    close_connection()
    row = db.execute("SELECT deal_status, deal_value, deals_won, won_revenue FROM outcome_labels").fetchone()
    assert won_and_revenue(db) == expected, (row, deals(db))
    assert rolled_deals(db) == (expected[0], int(expected[1]))


def test_the_migration_gives_a_purged_row_its_deal_s_account(db) -> None:
    """At the upgrade: the deal's old win has no payload left, its later loss has one. sql/0028 gives
    the loss its account from the payload and the win the account of its deal's other rows: one deal,
    lost, nothing won (it was 1 won, $10,000: the account-less win and the loss as two deals)."""
    from tests.conftest import ROOT

    run(race.registration([contact_message(5, SENT)]))
    close_connection()
    ingest_service.ingest_events(
        [
            _event("won-1", "deal_won", 3, "10000.00", "8087566"),
            _event("lost-1", "deal_lost", 100, "10000.00", "8087566"),
        ],
        window_days=90,
    )
    close_connection()
    assert won_and_revenue(db) == (0, Decimal(0))
    # what the release before stored: no account anywhere, the win's payload removed by retention
    db.execute("UPDATE outcome_events SET data = data - 'deal_account'")
    db.execute("UPDATE outcome_events SET payload = NULL WHERE event_key LIKE '%%won-1'")
    db.execute("UPDATE outcome_labels SET deals_won = NULL, won_revenue = NULL")
    sql = (ROOT / "sql" / "0028_shared_deals_and_key_format.sql").read_text()
    db.execute(sql[sql.index("UPDATE outcome_events d") : sql.index("d.data ? 'deal_id';") + 18])
    db.execute(sql[sql.index("WITH named AS") : sql.index("'deal_reopened');\n", sql.index("WITH named AS")) + 17])
    db.execute(sql[sql.index("WITH holders AS") : sql.index("WHERE o.outcome_id = c.outcome_id;") + 33])
    accounts = [r["a"] for r in db.execute("SELECT data->>'deal_account' AS a FROM outcome_events")]
    assert accounts == ["8087566", "8087566"]
    assert won_and_revenue(db) == (0, Decimal(0)), deals(db)


def test_a_deal_number_of_two_accounts_keeps_its_purged_row_apart(db) -> None:
    """An account-less row of a deal number the organisation's rows name in two accounts: which one
    it was is unknown, so a new event of either account leaves it alone."""
    run(race.registration([contact_message(5, SENT)]))
    close_connection()
    ingest_service.ingest_events(
        [_event("won-1", "deal_won", 3, "10000.00", "8087566"), _event("won-2", "deal_won", 4, "3000.00", "7")],
        window_days=90,
    )
    close_connection()
    db.execute("UPDATE outcome_events SET data = data - 'deal_account', payload = NULL WHERE event_key LIKE '%%won-1'")
    ingest_service.ingest_events([_event("later", "deal_lost", 200, "10000.00", "8087566")], window_days=90)
    close_connection()
    rows = {r["k"]: r["a"] for r in db.execute("SELECT event_key AS k, data->>'deal_account' AS a FROM outcome_events")}
    assert rows == {"acme|won-1": None, "acme|won-2": "7", "acme|later": "8087566"}

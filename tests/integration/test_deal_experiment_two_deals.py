"""Review (hub9b): the experiment evaluator's close metric and revenue for a lead whose message is
credited with two won deals read one close time (deal_closed_at = the latest won deal's).

Lead a (challenger) is exposed on day 1; its message wins D-1 ($1,000) on day 3, inside the 90-day
close window. Evaluated then, the lead closed and brought $1,000. The same message wins D-2 ($5,000)
on day 150 (outside the window): the lead no longer closed inside its window, and its in-window
$1,000 is gone - a counted lead flips, and a deal /report counts is counted nowhere in the
experiment.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flywheel.dal import experiments as experiments_dal
from flywheel.dal.connection import close_connection
from flywheel.domain.ingest import IncomingEvent
from flywheel.services import ingest as ingest_service
from tests.integration.test_experiments import models, started_days_ago  # noqa: F401 - fixture


def _won(key: str, deal: str, value: str, at) -> IncomingEvent:
    return IncomingEvent(
        "crm",
        f"acme|{key}",
        "deal_won",
        at,
        {"k": key},
        {"deal_id": deal, "value": value, "currency": "USD", "close_date": at.isoformat()},
        org_id="acme",
        email="a@example.com",
        key_scoped=True,
    )


def _close(db, experiment_id: str, now) -> tuple[int, Decimal]:
    rows = experiments_dal.segment_counts(db, experiment_id, {"close": ("close", 90)}, now)
    row = next(r for r in rows if r["arm"] == "challenger")
    return int(row["close__conversions"]), Decimal(row["revenue"])


def test_a_later_second_deal_does_not_undo_the_first_in_window_close(db, models) -> None:  # noqa: F811
    experiment_id = models["experiment_id"]
    started = started_days_ago(db, 300)
    db.execute(
        "INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage) "
        "VALUES (%s, 'acme', 'a', 'challenger', 1, 'canary')",
        (experiment_id,),
    )
    sent = started + timedelta(days=1)
    db.execute(
        """INSERT INTO organizations (org_id) VALUES ('acme') ON CONFLICT DO NOTHING""",
    )
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, body, sent_at,
                                      experiment_id, experiment_arm)
           VALUES ('acme', 'a1', 'c', 'a', 'a@example.com', 'hi', %s, %s, 'challenger')""",
        (sent, experiment_id),
    )
    close_connection()
    ingest_service.ingest_events([_won("d1", "D-1", "1000.00", sent + timedelta(days=2))], window_days=400)
    close_connection()
    now = started + timedelta(days=299)
    assert _close(db, experiment_id, now) == (1, Decimal("1000.00"))
    ingest_service.ingest_events([_won("d2", "D-2", "5000.00", sent + timedelta(days=150))], window_days=400)
    close_connection()
    row = db.execute("SELECT deals_won, won_revenue, deal_closed_at FROM outcome_labels").fetchone()
    assert row["deals_won"] == 2
    # D-1 still closed on day 3, inside the window: the lead closed, $1,000 inside its window
    assert _close(db, experiment_id, now) == (1, Decimal("1000.00")), row


def test_two_deals_closed_inside_the_window_both_count(db, models) -> None:  # noqa: F811
    """Both of the message's won deals close inside the lead's window: one close, both values."""
    experiment_id = models["experiment_id"]
    started = started_days_ago(db, 300)
    db.execute(
        "INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage) "
        "VALUES (%s, 'acme', 'a', 'challenger', 1, 'canary')",
        (experiment_id,),
    )
    sent = started + timedelta(days=1)
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme') ON CONFLICT DO NOTHING")
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, body, sent_at,
                                      experiment_id, experiment_arm)
           VALUES ('acme', 'a1', 'c', 'a', 'a@example.com', 'hi', %s, %s, 'challenger')""",
        (sent, experiment_id),
    )
    close_connection()
    ingest_service.ingest_events(
        [
            _won("d1", "D-1", "1000.00", sent + timedelta(days=2)),
            _won("d2", "D-2", "5000.00", sent + timedelta(days=30)),
        ],
        window_days=400,
    )
    close_connection()
    row = db.execute("SELECT first_won_at, won_closes FROM outcome_labels").fetchone()
    assert row["first_won_at"] == sent + timedelta(days=2)
    assert _close(db, experiment_id, started + timedelta(days=299)) == (1, Decimal("6000.00"))

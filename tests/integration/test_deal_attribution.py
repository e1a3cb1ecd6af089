"""One lead's CRM deal lives on one message (outside review): the lead was e-mailed again between two
of the deal's events (a sequence follow-up), and email attribution sent each event to the lead's
latest message, so the deal was counted on both (revenue twice, a lost deal still won, a positive
label for a follow-up sent after the deal closed). Now every event of the deal goes where its first
close went, whatever order the events and the registrations arrive in. And a deal the CRM reopens
or deletes after it closed is neither won nor lost any more (it stayed won)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx2
import pytest

from flywheel.clients import http as http_client
from flywheel.local.invoke import invoke
from flywheel.models.messages import MessageIn
from flywheel.services import report_counts
from flywheel.services.outcomes import register_messages
from tests.conftest import ROOT, load_event
from tests.integration import test_concurrency as race
from tests.webhook_helpers import configure, hubspot_headers, public_url, route_event

SENT = (datetime.now(UTC) - timedelta(days=20)).replace(hour=9, minute=0, second=0, microsecond=0)
LEAD = race.lead(3)  # Pipedrive person 3 is this lead (race.Crm)


def message(key: str, sent: datetime) -> dict[str, Any]:
    return {
        "org_id": "acme",
        "campaign_id": "seq",
        "lead_id": "lead-3",
        "lead_email": LEAD,
        "body": f"step {key}",
        "framework": "AIDA",
        "tone": "casual",
        "lead": {"industry": "saas", "role": "cfo"},
        "sent_at": sent.isoformat(),
        "idempotency_key": key,
    }


def run(request: dict[str, Any]) -> dict[str, Any]:
    result = invoke(request["function"], request["event"], ROOT / "template.yaml")
    assert result["statusCode"] in (200, 201), result
    return json.loads(result["body"])


def in_house_deal(event: str, value: str, at: datetime, msg_id: str) -> dict[str, Any]:
    return race.crm_request(
        "webhooks_crm_deal_won.json",
        {
            "event": event,
            "lead_email": LEAD,
            "org_id": "acme",
            "deal_id": "D-1",
            "value": value,
            "currency": "USD",
            "occurred_at": at.isoformat(),
        },
        msg_id,
    )


def pipedrive_deal(
    status: str, value: int, at: datetime, delivery: str, previous: str = "open", action: str = "change"
) -> dict[str, Any]:
    """A v2 deal webhook: `previous` is the status before the change (v2 sends the changed fields);
    a deletion has no data, and the deal as it was in `previous`."""
    template = load_event("webhooks_pipedrive_deal_won.json")
    raw = json.loads(template["body"])
    stamp = at.isoformat().replace("+00:00", "Z")
    raw["data"].update(id=77, person_id=3, status=status, value=value, won_time=stamp, update_time=stamp)
    raw["previous"] = {"status": previous}
    if action == "delete":
        raw["previous"], raw["data"] = raw["data"], None
    raw["meta"].update(id=delivery, entity_id="77", timestamp=stamp, action=action)
    return race.webhook(route_event(template, json.dumps(raw)))


def deals(db) -> list[tuple[str, Any, Any]]:
    return [
        (r["body"], r["deal_status"], r["deal_value"])
        for r in db.execute("SELECT body, deal_status, deal_value FROM outcome_labels ORDER BY sent_at").fetchall()
    ]


def rolled_deals(db) -> tuple[int, Any]:
    report_counts.refresh_daily_counts()
    row = db.execute(
        "SELECT sum(deals_won) AS won, sum(revenue) AS revenue FROM report_daily_counts WHERE dimension = 'industry'"
    ).fetchone()
    return int(row["won"]), row["revenue"]


@pytest.fixture
def setup(db_url, monkeypatch) -> None:
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(race.Crm()))
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"pipedrive:8087566": "acme"}))


def message_of(db, event_key: str) -> tuple[str | None, str]:
    """The message (body) and status of the event the provider sent with this key (stored within
    its organisation: "<org>|<key>")."""
    row = db.execute(
        "SELECT o.body, e.status FROM outcome_events e LEFT JOIN outcome_labels o USING (outcome_id)"
        " WHERE substr(e.event_key, strpos(e.event_key, '|') + 1) = %s",
        (event_key,),
    ).fetchone()
    return row["body"], row["status"]


# --- one deal, one message ---------------------------------------------------------------------


def test_in_house_deal_updated_after_a_follow_up_stays_on_the_first_message(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))  # the sequence's follow-up
    # the CRM corrects the deal's amount: the same deal, won, its latest word
    run(in_house_deal("deal_won", "1200.00", SENT + timedelta(days=6), "msg_d2"))
    assert deals(db) == [("step step1", "won", Decimal("1200.00")), ("step step2", None, None)]
    assert rolled_deals(db) == (1, 1200)
    # the follow-up, sent after the deal was won, is no positive example
    labels = db.execute("SELECT body, training_label FROM outcome_labels ORDER BY sent_at").fetchall()
    assert [r["training_label"] for r in labels] == ["positive", "neutral"]


def test_in_house_deal_lost_after_a_follow_up_is_lost(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))
    run(in_house_deal("deal_lost", "1000.00", SENT + timedelta(days=6), "msg_d2"))  # the CRM's latest word
    assert [d[1] for d in deals(db)] == ["lost", None]
    assert rolled_deals(db)[0] == 0


def test_pipedrive_deal_edited_after_a_follow_up_is_counted_once(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(pipedrive_deal("won", 42000, SENT + timedelta(days=3), "pd-1"))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))
    # Pipedrive sends a change for any later edit of the won deal (a note, the owner, the value)
    run(pipedrive_deal("won", 42000, SENT + timedelta(days=6), "pd-2", previous="won"))
    assert rolled_deals(db) == (1, 42000)
    assert message_of(db, "pd-2:" + LEAD) == ("step step1", "applied")


def test_a_late_first_close_takes_the_deal_to_its_message(db, setup) -> None:
    """Both messages registered, the deal's events delivered newest first: the update first lands
    on the follow-up (the deal's first word so far), then its earlier close moves the deal."""
    run(race.registration([message("step1", SENT), message("step2", SENT + timedelta(days=5))]))
    run(in_house_deal("deal_won", "1200.00", SENT + timedelta(days=6), "msg_d2"))
    assert deals(db) == [("step step1", None, None), ("step step2", "won", Decimal("1200.00"))]
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    assert deals(db) == [("step step1", "won", Decimal("1200.00")), ("step step2", None, None)]
    assert rolled_deals(db) == (1, 1200)


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "follow-up-first"])
def test_orphaned_deal_events_are_claimed_as_one_deal(db, setup, together: bool) -> None:
    """The deal's events arrive before the messages register (late registration): they wait, and
    go to the message the first close belongs to, whichever registers first."""
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    run(in_house_deal("deal_won", "1200.00", SENT + timedelta(days=6), "msg_d2"))
    if together:
        run(race.registration([message("step1", SENT), message("step2", SENT + timedelta(days=5))]))
    else:
        run(race.registration([message("step2", SENT + timedelta(days=5))]))
        # the update alone would be the follow-up's; the deal's first close is not: both wait
        assert [message_of(db, k) for k in ("msg_d1", "msg_d2")] == [(None, "orphan")] * 2
        assert deals(db) == [("step step2", None, None)]
        run(race.registration([message("step1", SENT)]))
    assert [message_of(db, k) for k in ("msg_d1", "msg_d2")] == [("step step1", "applied")] * 2
    assert deals(db) == [("step step1", "won", Decimal("1200.00")), ("step step2", None, None)]


def test_a_deal_closed_before_any_message_is_not_credited_to_a_later_one(db, setup) -> None:
    run(in_house_deal("deal_won", "1000.00", SENT - timedelta(days=1), "msg_d0"))  # won before we wrote
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))  # an edit of that deal
    assert deals(db) == [("step step1", None, None)]
    assert [message_of(db, k) for k in ("msg_d0", "msg_d1")] == [(None, "orphan")] * 2


def test_an_early_close_arriving_late_takes_the_deal_away_from_a_message_sent_after_it(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    assert deals(db) == [("step step1", "won", Decimal("1000.00"))]
    run(in_house_deal("deal_won", "1000.00", SENT - timedelta(days=1), "msg_d0"))
    assert deals(db) == [("step step1", None, None)]
    assert [message_of(db, k) for k in ("msg_d0", "msg_d1")] == [(None, "orphan")] * 2


def test_two_deals_of_one_lead_each_stay_where_they_closed(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))
    second = json.loads(in_house_deal("deal_won", "500.00", SENT + timedelta(days=6), "x")["event"]["body"])
    second["deal_id"] = "D-2"
    run(race.crm_request("webhooks_crm_deal_won.json", second, "msg_other"))
    assert deals(db) == [("step step1", "won", Decimal("1000.00")), ("step step2", "won", Decimal("500.00"))]


# --- a deal whose close named its message (outside re-review) -----------------------------------


def named_deal(event: str, value: str, at: datetime, msg_id: str, outcome_id: str) -> dict[str, Any]:
    """The in-house CRM names the message by its outcome id (and no lead email)."""
    body = json.loads(in_house_deal(event, value, at, msg_id)["event"]["body"])
    body.pop("lead_email")
    body["outcome_id"] = outcome_id
    return race.crm_request("webhooks_crm_deal_won.json", body, msg_id)


def outcome_of(db, body: str) -> str:
    return str(db.execute("SELECT outcome_id FROM outcome_labels WHERE body = %s", (body,)).fetchone()["outcome_id"])


def test_a_deal_won_on_a_named_message_then_lost_by_email_is_lost_there(db, setup) -> None:
    """The won named step1; the CRM's lost came by e-mail alone after a follow-up: it went to the
    follow-up (won 1,000 on step1 and lost on step2, a deal closed before step2 was sent)."""
    run(race.registration([message("step1", SENT)]))
    run(named_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won", outcome_of(db, "step step1")))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))
    run(in_house_deal("deal_lost", "1000.00", SENT + timedelta(days=6), "m-lost"))
    assert deals(db) == [("step step1", "lost", Decimal("1000.00")), ("step step2", None, None)]
    assert message_of(db, "m-lost") == ("step step1", "applied")
    assert rolled_deals(db)[0] == 0


def test_a_deal_won_on_a_named_message_then_reopened_by_email_is_no_longer_won(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(named_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won", outcome_of(db, "step step1")))
    run(in_house_deal("deal_reopened", "1000.00", SENT + timedelta(days=4), "m-reopen"))  # was ignored
    assert message_of(db, "m-reopen") == ("step step1", "applied")
    assert deals(db) == [("step step1", None, None)]
    assert rolled_deals(db)[0] == 0


def test_a_named_first_close_arriving_late_takes_the_deal_to_its_message(db, setup) -> None:
    """The lost (by e-mail) arrives first and lands on the follow-up, the deal's only word so far;
    the won that named step1 then arrives: the deal moves to step1, the named close stays."""
    run(race.registration([message("step1", SENT), message("step2", SENT + timedelta(days=5))]))
    run(in_house_deal("deal_lost", "900.00", SENT + timedelta(days=6), "m-lost"))
    assert deals(db) == [("step step1", None, None), ("step step2", "lost", Decimal("900.00"))]
    run(named_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won", outcome_of(db, "step step1")))
    assert deals(db) == [("step step1", "lost", Decimal("900.00")), ("step step2", None, None)]
    assert [message_of(db, k) for k in ("m-won", "m-lost")] == [("step step1", "applied")] * 2


@pytest.mark.parametrize("order", ["first-close-first", "named-close-first", "named-close-before-its-message"])
def test_a_later_close_that_names_a_follow_up_goes_where_the_deal_is(db, setup, order: str) -> None:
    """The first close came by e-mail (step1); a later close names the follow-up, sent after the
    deal had closed. It stayed on the follow-up, so the deal sat on two messages: won on both and
    its revenue counted twice (1,000 + 1,100). Every event of the deal goes to the message of its
    first close, a named one too, whichever arrives or registers first."""
    step2 = uuid4()
    run(race.registration([message("step1", SENT)]))
    if order == "named-close-first":
        register_messages([MessageIn(**message("step2", SENT + timedelta(days=5)))], outcome_ids=[step2])
        run(named_deal("deal_won", "1100.00", SENT + timedelta(days=6), "m-won2", str(step2)))
        assert deals(db) == [("step step1", None, None), ("step step2", "won", Decimal("1100.00"))]
        run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won"))  # the first close, late
    else:
        run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won"))
        if order == "first-close-first":
            register_messages([MessageIn(**message("step2", SENT + timedelta(days=5)))], outcome_ids=[step2])
        run(named_deal("deal_won", "1100.00", SENT + timedelta(days=6), "m-won2", str(step2)))
        if order == "named-close-before-its-message":  # it waits for its message, then is claimed
            assert message_of(db, "m-won2") == (None, "orphan")
            register_messages([MessageIn(**message("step2", SENT + timedelta(days=5)))], outcome_ids=[step2])
    assert [message_of(db, k) for k in ("m-won", "m-won2")] == [("step step1", "applied")] * 2
    assert deals(db) == [("step step1", "won", Decimal("1100.00")), ("step step2", None, None)]
    assert rolled_deals(db) == (1, 1100)
    # the CRM's later word by e-mail alone lands there too
    run(in_house_deal("deal_lost", "1100.00", SENT + timedelta(days=7), "m-lost"))
    assert deals(db) == [("step step1", "lost", Decimal("1100.00")), ("step step2", None, None)]
    assert message_of(db, "m-lost") == ("step step1", "applied")


def test_a_named_close_taken_to_the_deals_message_still_counts_where_it_named(db, setup) -> None:
    """The named close sits on step1 (the deal's message), but what it named is step2: when a first
    close from before any message arrives later, the deal goes to the first close that named a
    message (step2), as it would have had the events come in that order."""
    step2 = uuid4()
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "m-won"))
    register_messages([MessageIn(**message("step2", SENT + timedelta(days=5)))], outcome_ids=[step2])
    run(named_deal("deal_lost", "1000.00", SENT + timedelta(days=6), "m-lost", str(step2)))
    assert message_of(db, "m-lost") == ("step step1", "applied")
    run(in_house_deal("deal_won", "1000.00", SENT - timedelta(days=1), "m-won0"))  # won before we wrote
    assert [message_of(db, k) for k in ("m-won0", "m-won", "m-lost")] == [("step step2", "applied")] * 3
    assert deals(db) == [("step step1", None, None), ("step step2", "lost", Decimal("1000.00"))]


def test_a_named_event_of_a_deal_with_no_message_stays_where_it_named(db, setup) -> None:
    """A deal first closed before any message waits as orphans; a reopening that names step1 is no
    close, so the deal still has no message and the reopening stays on step1 (changing nothing)."""
    run(in_house_deal("deal_won", "1000.00", SENT - timedelta(days=1), "m-won0"))
    run(race.registration([message("step1", SENT)]))
    run(named_deal("deal_reopened", "1000.00", SENT + timedelta(days=2), "m-reopen", outcome_of(db, "step step1")))
    assert [message_of(db, k) for k in ("m-won0", "m-reopen")] == [(None, "orphan"), ("step step1", "applied")]
    assert deals(db) == [("step step1", None, None)]


def test_a_deal_first_closed_before_any_message_follows_a_close_that_named_one(db, setup) -> None:
    """The deal's first close predates the messages (it waits as an orphan); the CRM then names
    step1 in a later close: the deal is step1's, and its later e-mail-only word lands there too."""
    run(in_house_deal("deal_won", "1000.00", SENT - timedelta(days=1), "m-won0"))
    run(race.registration([message("step1", SENT)]))
    assert message_of(db, "m-won0") == (None, "orphan")
    run(named_deal("deal_lost", "1000.00", SENT + timedelta(days=3), "m-lost", outcome_of(db, "step step1")))
    run(in_house_deal("deal_reopened", "1000.00", SENT + timedelta(days=4), "m-reopen"))
    assert [message_of(db, k) for k in ("m-won0", "m-lost", "m-reopen")] == [("step step1", "applied")] * 3
    assert deals(db) == [("step step1", None, None)]


def no_deal_id(event: str, at: datetime, msg_id: str) -> dict[str, Any]:
    body = json.loads(in_house_deal(event, "1000.00", at, msg_id)["event"]["body"])
    body.pop("deal_id")
    return race.crm_request("webhooks_crm_deal_won.json", body, msg_id)


def test_an_in_house_reopening_without_a_deal_id_is_refused(db, setup) -> None:
    """It names no deal: it was applied to the lead's latest message (a follow-up) and changed
    nothing. A won or lost without a deal id is still taken, as before."""
    run(race.registration([message("step1", SENT)]))
    run(no_deal_id("deal_won", SENT + timedelta(days=3), "n-won"))
    run(race.registration([message("step2", SENT + timedelta(days=5))]))
    run(no_deal_id("deal_lost", SENT + timedelta(days=6), "n-lost"))
    request = no_deal_id("deal_reopened", SENT + timedelta(days=7), "n-reopen")
    result = invoke(request["function"], request["event"], ROOT / "template.yaml")
    assert result["statusCode"] == 422, result
    assert "deal_id is required for deal_reopened" in json.loads(result["body"])["message"]
    assert (
        db.execute("SELECT count(*) AS n FROM outcome_events WHERE event_type = 'deal_reopened'").fetchone()["n"] == 0
    )
    assert [message_of(db, k) for k in ("n-won", "n-lost")] == [("step step1", "applied"), ("step step2", "applied")]


# --- a deal reopened or deleted in the CRM -----------------------------------------------------


def test_pipedrive_deal_reopened_is_no_longer_won(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(pipedrive_deal("won", 42000, SENT + timedelta(days=3), "pd-1"))
    run(pipedrive_deal("open", 42000, SENT + timedelta(days=4), "pd-2", previous="won"))  # reopened
    assert deals(db) == [("step step1", None, None)]
    assert rolled_deals(db)[0] == 0
    run(pipedrive_deal("won", 40000, SENT + timedelta(days=5), "pd-3"))  # and won again
    assert deals(db) == [("step step1", "won", Decimal("40000.00"))]


def test_pipedrive_deal_deleted_is_no_longer_won(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    run(pipedrive_deal("won", 42000, SENT + timedelta(days=3), "pd-1"))
    run(pipedrive_deal("won", 42000, SENT + timedelta(days=4), "pd-2", action="delete"))
    assert deals(db) == [("step step1", None, None)]
    assert message_of(db, "pd-2:" + LEAD) == ("step step1", "applied")


def test_pipedrive_open_deal_edits_stay_ignored(db, setup) -> None:
    run(race.registration([message("step1", SENT)]))
    out = run(pipedrive_deal("open", 100, SENT + timedelta(days=3), "pd-1"))  # an open deal edited
    assert (out["ignored"], out["orphans"]) == (1, 0)
    assert db.execute("SELECT event_type FROM outcome_events").fetchone()["event_type"] == "deal.change"


def test_in_house_deal_reopened_before_its_close_arrives(db, setup) -> None:
    """Delivered out of order: the reopening waits (ignored: the deal never closed) and still
    counts once the close it followed arrives."""
    run(race.registration([message("step1", SENT)]))
    run(in_house_deal("deal_reopened", "1000.00", SENT + timedelta(days=4), "msg_r"))
    assert message_of(db, "msg_r") == (None, "ignored")
    run(in_house_deal("deal_won", "1000.00", SENT + timedelta(days=3), "msg_d1"))
    assert message_of(db, "msg_r") == ("step step1", "applied")
    assert deals(db) == [("step step1", None, None)]


class HubSpotDeals(race.Crm):
    """HubSpot deal 5 (lead 5; leads 5 and 6 with `both`) in the stage the test sets."""

    def __init__(self, both: bool = False) -> None:
        self.won, self.both = True, both

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        response = super().__call__(request)
        if request.url.path.startswith("/crm/v3/objects/deals/"):
            body = response.json()
            if not self.won:
                body["properties"].update(dealstage="contractsent", hs_is_closed_won="false", hs_is_closed="false")
            if self.both:
                body["associations"]["contacts"]["results"] = [
                    {"id": "5", "type": "deal_to_contact"},
                    {"id": "6", "type": "deal_to_contact"},
                ]
            return httpx2.Response(200, json=body)
        return response


def hubspot_change(event_id: int, at: datetime) -> dict[str, Any]:
    request = race.hubspot(5)
    body = json.loads(request["event"]["body"])
    body[0].update(eventId=event_id, occurredAt=int(at.timestamp() * 1000))
    template = load_event("webhooks_hubspot_deal_won.json")
    raw = json.dumps(body)
    return race.webhook(route_event(template, raw, **hubspot_headers(raw.encode(), public_url(template))))


def lead_message(i: int) -> dict[str, Any]:
    return {**message(f"c{i}", SENT), "lead_id": f"lead-{i}", "lead_email": race.lead(i), "body": f"to {i}"}


def test_hubspot_deal_moved_back_to_an_open_stage_is_no_longer_won(db, db_url, monkeypatch) -> None:
    crm = HubSpotDeals()
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(crm))
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"hubspot:5799819": "acme"}))
    run(race.registration([lead_message(5)]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    assert deals(db) == [("to 5", "won", Decimal("500.50"))]
    crm.won = False
    run(hubspot_change(2, SENT + timedelta(days=4)))
    assert deals(db) == [("to 5", None, None)]


def test_hubspot_deal_of_two_contacts_is_each_contacts_deal_and_counted_once(db, db_url, monkeypatch) -> None:
    """Documented (README, Attribution): each e-mailed contact's message gets the deal (its label),
    and the reports count it once, on one of them (tests/integration/test_shared_deals.py); the CRM's
    latest word reaches both."""
    crm = HubSpotDeals(both=True)
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(crm))
    configure(monkeypatch, PROVIDER_ORGS_JSON=json.dumps({"hubspot:5799819": "acme"}))
    later = {**lead_message(6), "sent_at": (SENT + timedelta(hours=1)).isoformat()}  # lead 5 was e-mailed first
    run(race.registration([lead_message(5), later]))
    run(hubspot_change(1, SENT + timedelta(days=3)))
    assert sorted(deals(db)) == [("to 5", "won", Decimal("500.50")), ("to 6", None, None)]
    shared = db.execute("SELECT body, shared_deal_status, training_label FROM outcome_labels ORDER BY body")
    assert [tuple(r.values()) for r in shared] == [("to 5", None, "positive"), ("to 6", "won", "positive")]
    assert rolled_deals(db) == (1, Decimal("500.50"))
    crm.won = False
    run(hubspot_change(2, SENT + timedelta(days=4)))
    assert sorted(deals(db)) == [("to 5", None, None), ("to 6", None, None)]
    assert rolled_deals(db) == (0, 0)


# --- the lock retry: a named message that becomes visible once the link locks are taken ----------


@pytest.mark.parametrize("other_deal", [False, True], ids=["same-deal", "another-deal-of-the-lead"])
def test_a_named_close_whose_message_registers_meanwhile_waits_for_the_lead_and_joins_the_deal(
    db, db_url, setup, monkeypatch, other_deal: bool
) -> None:
    """Three connections. A close naming step2 (not registered yet) looks up its links and finds no
    message; step2 registers and commits; another delivery by e-mail holds the lead's link lock and
    has not committed. When that delivery is the deal's first close, the named close now waits for it
    at its first locks (both take the deal's link lock, `deal:<id>`), and then sees it: without that
    wait it would decide the deal without the first close (its own message, step2), and the deal would
    end won on step1 and lost on step2. When it is a close of another deal of the lead, only the
    lead's lock is shared: once its own locks are taken, the named close sees step2, whose lead's lock
    it does not hold and cannot take without waiting out of order, and starts again with that lock in
    its set."""
    from flywheel.dal.connection import close_connection
    from flywheel.dal.locks import link_buckets
    from flywheel.domain.ingest import IncomingEvent, email_link
    from flywheel.services import ingest as ingest_service

    step2 = UUID("00000000-0000-4000-8000-000000000002")
    # the named close's own link lock is not the lead's (both are hashed into buckets)
    assert link_buckets([f"outcome:{step2}"]) != link_buckets([email_link("acme", LEAD)])
    run(race.registration([message("step1", SENT)]))
    close_connection()

    def deal_event(key: str, kind: str, day: int, deal: str = "crm:D-1", **link: Any) -> IncomingEvent:
        at = SENT + timedelta(days=day)
        data = {"deal_id": deal, "value": "1000.00", "currency": "USD"}
        return IncomingEvent("crm", key, kind, at, {"event": kind}, data, org_id="acme", **link)

    named = deal_event("m-lost", "deal_lost", 6, outcome_id=str(step2))
    first_close = deal_event("m-won", "deal_won", 3, "crm:D-2" if other_deal else "crm:D-1", email=LEAD)

    looked_up, go, holding, release = (threading.Event() for _ in range(4))
    attempts: list[int] = []
    pids: dict[str, int] = {}
    real_lock_links, real_recompute, real_store = (
        ingest_service.lock_links,
        ingest_service.recompute,
        ingest_service._store,
    )

    def lock_links(conn: Any, keys: Any) -> Any:
        if threading.current_thread().name == "named" and not looked_up.is_set():
            looked_up.set()  # its first lookups found no step2
            assert go.wait(30)
        return real_lock_links(conn, keys)

    def recompute(conn: Any, *args: Any, **kwargs: Any) -> None:
        real_recompute(conn, *args, **kwargs)
        if threading.current_thread().name == "first-close":
            pids["first-close"] = conn.info.backend_pid
            holding.set()  # stored and derived, the lead's link lock held, not committed
            assert release.wait(30)

    def store(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "named":
            attempts.append(len(args[3]))  # the extra link keys this attempt starts with
        return real_store(*args, **kwargs)

    monkeypatch.setattr(ingest_service, "lock_links", lock_links)
    monkeypatch.setattr(ingest_service, "recompute", recompute)
    monkeypatch.setattr(ingest_service, "_store", store)
    errors: list[BaseException] = []

    def deliver(event: IncomingEvent) -> None:
        try:
            ingest_service.ingest_events([event], window_days=90)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_connection()

    threads = [
        threading.Thread(target=deliver, args=(named,), name="named"),
        threading.Thread(target=deliver, args=(first_close,), name="first-close"),
    ]
    threads[0].start()
    try:
        assert looked_up.wait(30)
        register_messages([MessageIn(**message("step2", SENT + timedelta(days=5)))], outcome_ids=[step2])
        close_connection()
        threads[1].start()
        assert holding.wait(30)
        go.set()
        race._wait_until_blocked(db_url, {pids["first-close"]})  # the named close, on its second attempt
        # another deal: it found it needed one more lock, and started again with it
        assert attempts == ([0, 1] if other_deal else [0])
    finally:
        go.set()
        release.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    if other_deal:  # two deals: each where its own first close went
        assert [message_of(db, k) for k in ("m-won", "m-lost")] == [
            ("step step1", "applied"),
            ("step step2", "applied"),
        ]
        assert deals(db) == [("step step1", "won", Decimal("1000.00")), ("step step2", "lost", Decimal("1000.00"))]
        assert rolled_deals(db)[0] == 1
        return
    assert [message_of(db, k) for k in ("m-won", "m-lost")] == [("step step1", "applied")] * 2
    assert deals(db) == [("step step1", "lost", Decimal("1000.00")), ("step step2", None, None)]
    assert rolled_deals(db)[0] == 0

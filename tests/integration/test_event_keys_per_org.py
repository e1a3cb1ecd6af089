"""An event key is unique within its organisation where an organisation chooses it or it can reach
several organisations: an in-house system's `webhook-id`, an Inbound Parse mail's Message-ID (also
Calendly, Pipedrive and Salesforce keys, which a payload signed with an organisation's own credential
carries). Keys are stored as "<org>|<key>" (domain.ingest.scoped_key). Before, one key across all
organisations let one organisation's event pre-empt another's (a silent duplicate) or take it over
(ON CONFLICT moved the stored row into the other organisation, keeping its payload).

Events stored by the release before under the provider's key alone are still recognised: their
redelivery is a duplicate (within the same organisation only)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from flywheel.dal import events as events_dal
from flywheel.dal.connection import transaction
from flywheel.local import signing
from tests.conftest import ROOT, ApiClient, count, load_event
from tests.integration import test_concurrency as race
from tests.integration.test_webhook_credentials import (  # noqa: F401 - tenants is a fixture
    GLOBEX_PARSE,
    PER_ORG,
    deal,
    events,
    parse_form,
    post_reply,
    register,
    reply_mail,
    tenants,
)
from tests.webhook_helpers import route_event

# acme and globex, each with its own credential of every provider
pytestmark = pytest.mark.usefixtures("tenants")
SECRET = PER_ORG["crm_webhook_secret"]


def post(api: ApiClient, org: str, body: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """An in-house deal event from `org`'s own system (its own secret)."""
    raw = json.dumps(body).encode()
    status, answer = api.post(
        "/webhooks/crm/deals", body=raw, headers=signing.standard_headers(SECRET[org], raw, webhook_id)
    )
    assert status == 200, answer
    return answer


def stored(db) -> list[tuple]:
    rows = db.execute(
        "SELECT event_key, org_id, event_type, status, payload->>'deal_id' AS deal FROM outcome_events"
        " ORDER BY event_key"
    ).fetchall()
    return [(r["event_key"], r["org_id"], r["event_type"], r["status"], r["deal"]) for r in rows]


def as_stored_before(db) -> None:
    """What the release before stored: every key without its organisation, and no format mark."""
    db.execute("UPDATE outcome_events SET event_key = substr(event_key, strpos(event_key, '|') + 1), key_scoped = NULL")


# --- in-house systems numbering their events alike ----------------------------------------------


def test_one_organisations_orphan_never_takes_over_anothers_event_of_the_same_webhook_id(api: ApiClient, db) -> None:
    oid = register(api, "globex", "priya", "priya@fabrikam.example")
    # acme's own system, naming nothing of acme's: an acme orphan
    forged = {"event": "deal_won", "lead_email": "priya@fabrikam.example", "deal_id": "D-9", "value": "999999"}
    assert post(api, "acme", forged, "evt-1001")["orphans"] == 1
    # globex's own system, its first deal event, the same id scheme
    answer = post(api, "globex", {"event": "deal_lost", "outcome_id": oid, "deal_id": "G-1"}, "evt-1001")
    assert answer["applied"] == 1 and answer["duplicates"] == 0, answer
    assert deal(db, oid) == ("lost", None)
    assert stored(db) == [
        ("acme|evt-1001", "acme", "deal_won", "orphan", "D-9"),
        ("globex|evt-1001", "globex", "deal_lost", "applied", "G-1"),
    ]


def test_one_organisations_event_never_drops_anothers_of_the_same_webhook_id(api: ApiClient, db) -> None:
    acme = register(api, "acme", "lee", "lee@contoso.example")
    globex = register(api, "globex", "priya", "priya@fabrikam.example")
    assert (
        post(api, "acme", {"event": "deal_won", "outcome_id": acme, "deal_id": "A-1", "value": "10"}, "evt-1")[
            "applied"
        ]
        == 1
    )
    body = {"event": "deal_won", "outcome_id": globex, "deal_id": "G-1", "value": "500"}
    answer = post(api, "globex", body, "evt-1")
    assert answer["applied"] == 1 and answer["duplicates"] == 0, answer
    assert deal(db, acme)[0] == "won" and deal(db, globex)[0] == "won"
    assert float(deal(db, acme)[1]) == 10 and float(deal(db, globex)[1]) == 500
    # within one organisation the key still de-duplicates: the redelivery is a duplicate
    again = post(api, "globex", body, "evt-1")
    assert again["duplicates"] == 1 and again["stored"] == 0, again
    assert count(db, "outcome_events") == 2


def test_an_in_house_event_stored_before_keys_named_the_organisation_is_still_a_duplicate(api: ApiClient, db) -> None:
    acme = register(api, "acme", "lee", "lee@contoso.example")
    globex = register(api, "globex", "priya", "priya@fabrikam.example")
    won = {"event": "deal_won", "outcome_id": acme, "deal_id": "A-1", "value": "10"}
    assert post(api, "acme", won, "evt-7")["applied"] == 1
    as_stored_before(db)
    # acme's system retries across the upgrade: the same event, counted once
    again = post(api, "acme", won, "evt-7")
    assert again["duplicates"] == 1 and again["stored"] == 0, again
    assert stored(db) == [("evt-7", "acme", "deal_won", "applied", "A-1")]
    # but acme's old key is no globex key: globex's own evt-7 is stored
    answer = post(api, "globex", {"event": "deal_lost", "outcome_id": globex, "deal_id": "G-7"}, "evt-7")
    assert answer["applied"] == 1, answer
    assert deal(db, globex)[0] == "lost" and deal(db, acme)[0] == "won"


# --- one mail at two organisations' parse addresses ----------------------------------------------


def test_one_reply_to_two_organisations_is_an_event_of_each(api: ApiClient, db) -> None:
    """A lead answering both organisations in one mail ("take me off both your lists") reaches each
    organisation's parse URL with one Message-ID: each organisation records its own reply, and the
    answer to each delivery names that organisation's message."""
    acme = register(api, "acme", "lee", "lee@contoso.example")
    globex = register(api, "globex", "lee", "lee@contoso.example")
    acme_address, globex_address = f"reply+{acme}@reply.flywheel.example", f"reply+{globex}@{GLOBEX_PARSE}"
    mail = reply_mail(acme_address, globex_address)
    status, answer = post_reply(api, "inbound-acme-1", parse_form(mail, [acme_address]))
    assert status == 200 and answer["outcome_id"] == acme and answer["applied"] == 1, answer
    status, answer = post_reply(api, "inbound-globex-2", parse_form(mail, [globex_address]))
    assert status == 200 and answer["outcome_id"] == globex, answer
    assert answer["applied"] == 1 and answer["duplicates"] == 0, answer
    assert sorted(events(db)) == [
        ("sendgrid_inbound", "acme", "applied", acme),
        ("sendgrid_inbound", "globex", "applied", globex),
    ]
    replied = db.execute("SELECT org_id FROM outcome_labels WHERE replied_at IS NOT NULL ORDER BY org_id").fetchall()
    assert [r["org_id"] for r in replied] == ["acme", "globex"]
    # SendGrid posting globex's copy again: a duplicate, still answered with globex's message
    status, answer = post_reply(api, "inbound-globex-2", parse_form(mail, [globex_address]))
    assert status == 200 and answer["duplicates"] == 1 and answer["outcome_id"] == globex, answer


def test_a_reply_stored_before_keys_named_the_organisation_is_still_a_duplicate(api: ApiClient, db) -> None:
    acme = register(api, "acme", "lee", "lee@contoso.example")
    globex = register(api, "globex", "lee", "lee@contoso.example")
    acme_address, globex_address = f"reply+{acme}@reply.flywheel.example", f"reply+{globex}@{GLOBEX_PARSE}"
    mail = reply_mail(acme_address, globex_address)
    assert post_reply(api, "inbound-acme-1", parse_form(mail, [acme_address]))[1]["applied"] == 1
    as_stored_before(db)
    status, answer = post_reply(api, "inbound-acme-1", parse_form(mail, [acme_address]))
    assert status == 200 and answer["duplicates"] == 1 and answer["outcome_id"] == acme, answer
    # the old key is acme's: globex's copy is globex's event
    status, answer = post_reply(api, "inbound-globex-2", parse_form(mail, [globex_address]))
    assert status == 200 and answer["applied"] == 1 and answer["outcome_id"] == globex, answer
    assert count(db, "outcome_events") == 2


# --- the store: a key taken by another organisation's orphan -------------------------------------


def test_an_orphan_is_attached_by_its_key_only_within_its_own_organisation(api: ApiClient, db) -> None:
    """For keys no organisation chooses (SendGrid's sg_event_id, HubSpot's portal:eventId) the
    store's own rule: a stored orphan is attached by a later copy of its key only when that copy
    is applied in the orphan's organisation. One of another organisation, or of none (its payload
    is not known to be this event's; a registration claims it by the usual rules), stays as it was
    and the copy is a duplicate."""
    globex = register(api, "globex", "priya", "priya@fabrikam.example")
    acme = register(api, "acme", "lee", "lee@contoso.example")

    def row(key: str, org: str | None, status: str, outcome: str | None = None, kind: str = "unsubscribe") -> dict:
        return {
            "provider": "sendgrid",
            "event_key": key,
            "event_type": kind,
            "occurred_at": datetime(2026, 11, 21, tzinfo=UTC).isoformat(),
            "org_id": org,
            "outcome_id": outcome,
            "status": status,
            "data": {},
            "payload": {"by": org},
        }

    with transaction() as conn:
        events_dal.insert_events(conn, [row("k-acme", "acme", "orphan"), row("k-none", None, "orphan")])
    with transaction() as conn:
        inserted = events_dal.insert_events(
            conn,
            [
                row("k-acme", "globex", "applied", globex, "click"),
                row("k-none", "globex", "applied", globex, "click"),
            ],
        )
    assert inserted.counts == []
    rows = db.execute("SELECT event_key, org_id, status, outcome_id FROM outcome_events ORDER BY event_key").fetchall()
    assert [(r["event_key"], r["org_id"], r["status"], r["outcome_id"]) for r in rows] == [
        ("k-acme", "acme", "orphan", None),
        ("k-none", None, "orphan", None),
    ]
    # its own organisation's copy, now applied, attaches it
    with transaction() as conn:
        inserted = events_dal.insert_events(conn, [row("k-acme", "acme", "applied", acme)])
    assert [(str(o), s, n) for o, s, n in inserted.counts] == [(acme, "applied", 1)]


# --- several processes delivering both organisations' events at once -----------------------------

LEADS = 4


def _crm(org: str, body: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    raw = json.dumps(body)
    headers = signing.standard_headers(SECRET[org], raw.encode(), webhook_id)
    return race.webhook(route_event(load_event("webhooks_crm_deal_won.json"), raw, **headers))


@pytest.mark.integration
def test_both_organisations_events_of_the_same_webhook_ids_delivered_concurrently_count_once_each(
    api: ApiClient, db, db_url
) -> None:
    """Each organisation's system numbers its events evt-0, evt-1 ...: four processes deliver every
    event of both, each in its own shuffled order (with retries). Each organisation ends with each of
    its events once, on its own message; none is lost or moved to the other."""
    ids = {
        (org, i): register(api, org, f"lead{i}", f"lead{i}@{org}-lead.example")
        for org in ("acme", "globex")
        for i in range(LEADS)
    }
    requests = []
    for (org, i), oid in ids.items():
        value = str(100 * (i + 1) + (7 if org == "globex" else 0))
        requests.append(
            _crm(org, {"event": "deal_won", "outcome_id": oid, "deal_id": f"{org}-{i}", "value": value}, f"evt-{i}")
        )
        # an orphan of each organisation under the same ids (no such lead registered)
        orphan = {"event": "deal_lost", "lead_email": f"nobody{i}@{org}-lead.example", "deal_id": f"x{i}"}
        requests.append(_crm(org, orphan, f"evt-{LEADS + i}"))
    streams = []
    for seed in range(4):
        stream = requests * 2  # every delivery retried once
        random.Random(seed).shuffle(stream)
        streams.append(stream)
    assert race.run_concurrently(db_url, streams) == []
    rows = db.execute(
        "SELECT event_key, org_id, status, outcome_id::text AS outcome FROM outcome_events ORDER BY event_key"
    ).fetchall()
    expected: list[tuple[str, str, str, str | None]] = []
    for org in ("acme", "globex"):
        expected += [(f"{org}|evt-{i}", org, "applied", ids[(org, i)]) for i in range(LEADS)]
        expected += [(f"{org}|evt-{LEADS + i}", org, "orphan", None) for i in range(LEADS)]
    assert sorted((r["event_key"], r["org_id"], r["status"], r["outcome"]) for r in rows) == sorted(expected)
    for (org, i), oid in ids.items():
        assert deal(db, oid)[0] == "won" and float(deal(db, oid)[1]) == 100 * (i + 1) + (7 if org == "globex" else 0)


# --- a provider key containing the '|' of scoped keys (re-review of 1062080) ---------------------


def _deal_won(api: ApiClient, org: str, oid: str, deal_id: str, webhook_id: str) -> dict[str, Any]:
    return post(api, org, {"event": "deal_won", "outcome_id": oid, "deal_id": deal_id, "value": "10"}, webhook_id)


@pytest.mark.parametrize("ids", [("a", "acme|a"), ("acme|a", "a")], ids=["plain-first", "piped-first"])
def test_a_webhook_id_containing_the_separator_is_never_another_events_duplicate(
    api: ApiClient, db, ids: tuple[str, str]
) -> None:
    """acme's `a` is stored as `acme|a`, which is also the provider key of acme's later event
    `acme|a`: the legacy lookup read it as that event's pre-upgrade copy (duplicates 1, lost)."""
    first, second = register(api, "acme", "lee", "lee@contoso.example"), register(api, "acme", "kim", "kim@x.example")
    assert _deal_won(api, "acme", first, "A-1", ids[0])["applied"] == 1
    answer = _deal_won(api, "acme", second, "A-2", ids[1])
    assert answer["applied"] == 1 and answer["duplicates"] == 0, answer
    assert deal(db, first)[0] == "won" and deal(db, second)[0] == "won"
    # each is still a duplicate of itself
    for oid, deal_id, webhook_id in ((first, "A-1", ids[0]), (second, "A-2", ids[1])):
        again = _deal_won(api, "acme", oid, deal_id, webhook_id)
        assert again["duplicates"] == 1 and again["stored"] == 0, again
    assert count(db, "outcome_events") == 2


@pytest.mark.parametrize("webhook_id", ["acme|7", "|7"])
def test_a_key_stored_before_the_upgrade_that_begins_like_a_scoped_one_is_still_a_duplicate(
    api: ApiClient, db, webhook_id: str
) -> None:
    """acme's system chose a webhook-id that itself begins with acme's id and '|' (or with '|'); the
    release before stored it as it was. Read from the key alone, that row looked like one stored in
    the new form, so the redelivery across the upgrade was stored a second time (the deal counted on
    a second row). The new form is marked (sql/0028): an unmarked row is the release before's."""
    acme = register(api, "acme", "lee", "lee@contoso.example")
    won = {"event": "deal_won", "outcome_id": acme, "deal_id": "A-1", "value": "10"}
    assert post(api, "acme", won, webhook_id)["applied"] == 1
    db.execute("UPDATE outcome_events SET event_key = %s, key_scoped = NULL", (webhook_id,))  # as stored before
    again = post(api, "acme", won, webhook_id)
    assert again["duplicates"] == 1 and again["stored"] == 0, again
    assert stored(db) == [(webhook_id, "acme", "deal_won", "applied", "A-1")]
    # a row stored in the new form is marked, and is no legacy copy of anything
    assert post(api, "acme", {**won, "deal_id": "A-2"}, "8")["stored"] == 1
    marks = db.execute("SELECT event_key, key_scoped FROM outcome_events ORDER BY event_id").fetchall()
    assert [(r["event_key"], r["key_scoped"]) for r in marks] == [(webhook_id, None), ("acme|8", True)]


def test_the_migration_marks_the_rows_the_release_before_stored_in_the_new_form(api: ApiClient, db) -> None:
    """The organisation's form shipped one release before its mark (with sql/0026): sql/0028 marks
    the rows stored in it since 0026 was applied (an organisation's prefix, or '|' for an event of
    unknown organisation claimed since), and no row stored before it, nor a key of another form."""
    acme = register(api, "acme", "lee", "lee@contoso.example")
    for key, webhook_id in (("new", "n-1"), ("old", "o-1"), ("other", "x-1")):
        post(api, "acme", {"event": "deal_won", "outcome_id": acme, "deal_id": key, "value": "1"}, webhook_id)
    db.execute("UPDATE outcome_events SET key_scoped = NULL")  # as the release before left them
    db.execute(
        """UPDATE outcome_events SET event_key = CASE event_key WHEN 'acme|x-1' THEN 'acmeX|x-1' ELSE event_key END,
                  received_at = CASE event_key WHEN 'acme|o-1' THEN '2020-01-01' ELSE received_at END"""
    )
    db.execute(
        "INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, org_id, outcome_id, status, data, payload)"
        " SELECT provider, '|u-1', event_type, occurred_at, org_id, outcome_id, status, data, payload FROM outcome_events"
        " WHERE event_key = 'acme|n-1'"
    )
    sql = (ROOT / "sql" / "0028_shared_deals_and_key_format.sql").read_text()
    db.execute(sql[sql.index("UPDATE outcome_events e") : sql.rindex(";")])
    marks = {r["event_key"]: r["key_scoped"] for r in db.execute("SELECT event_key, key_scoped FROM outcome_events")}
    assert marks == {"acme|n-1": True, "|u-1": True, "acme|o-1": None, "acmeX|x-1": None}, marks


def _row(key: str, legacy: str | None, org: str | None, legacy_org: str | None = None) -> dict[str, Any]:
    return {
        "provider": "crm",
        "event_key": key,
        "legacy_key": legacy,
        "legacy_org": legacy_org,
        "key_scoped": True if legacy is not None else None,  # what the ingest service marks
        "event_type": "deal_won",
        "occurred_at": datetime(2026, 11, 21, tzinfo=UTC).isoformat(),
        "org_id": org,
        "status": "orphan",
        "data": {},
        "payload": {"key": key},
    }


def test_the_legacy_lookup_matches_only_rows_stored_in_the_legacy_format(api: ApiClient, db) -> None:
    """Of unknown organisation, a new event's legacy key matched any organisation's scoped row; and
    an unknown-organisation orphan claimed since (`|b`, organisation set by the registration) is a
    scoped row too. A row really stored by the release before is still found, of any organisation."""
    oid = register(api, "acme", "lee", "lee@contoso.example")
    register(api, "globex", "priya", "priya@fabrikam.example")
    with transaction() as conn:
        events_dal.insert_events(conn, [_row("acme|a", "a", "acme", "acme"), _row("|b", "b", None)])
        events_dal.insert_events(conn, [_row("old-1", None, "acme")])  # as the release before stored it
    db.execute("UPDATE outcome_events SET org_id = 'acme' WHERE event_key = '|b'")  # claimed by acme
    with transaction() as conn:
        events_dal.insert_events(
            conn,
            [
                _row("|acme|a", "acme|a", None),  # unknown organisation, webhook-id "acme|a"
                _row("acme||b", "|b", "acme", "acme"),  # acme's own webhook-id "|b"
                _row("|old-1", "old-1", None),  # a redelivery of the legacy row: a duplicate
                _row("globex|old-1", "old-1", "globex", "globex"),  # not globex's: stored
            ],
        )
    keys = [r["event_key"] for r in db.execute('SELECT event_key FROM outcome_events ORDER BY event_key COLLATE "C"')]
    assert keys == ["acme|a", "acme||b", "globex|old-1", "old-1", "|acme|a", "|b"]
    # the answer's outcome of a skipped copy (an Inbound reply's) follows the same rule
    db.execute("UPDATE outcome_events SET status = 'applied', outcome_id = %s WHERE org_id = 'acme'", (oid,))
    with transaction() as conn:
        assert str(events_dal.legacy_outcome_of(conn, "crm", "old-1", None)) == oid
        assert str(events_dal.legacy_outcome_of(conn, "crm", "old-1", "acme")) == oid
        assert events_dal.legacy_outcome_of(conn, "crm", "acme|a", None) is None
        assert events_dal.legacy_outcome_of(conn, "crm", "|b", "acme") is None


# --- keys over the length limit are hashed, never refused ----------------------------------------


def long_reply(to: str, message_id: str) -> str:
    return (
        "From: Lee Park <lee@contoso.example>\r\n"
        f"To: {to}\r\n"
        "Subject: Re: a quick idea\r\nDate: Wed, 25 Nov 2026 08:30:00 +0000\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease unsubscribe me, not interested.\r\n"
    )


def test_a_reply_whose_message_id_is_longer_than_the_key_limit_is_stored(api: ApiClient, db) -> None:
    """RFC 5322 lets a Message-ID fill a 998-character line: such a reply was refused with 422
    (SendGrid retried, then dropped it - the reply and its unsubscribe were lost)."""
    oid = register(api, "acme", "lee", "lee@contoso.example")
    address = f"reply+{oid}@reply.flywheel.example"
    long_id = ("x" * 590) + "@contoso.example"
    form = parse_form(long_reply(address, long_id), [address])
    status, answer = post_reply(api, "inbound-acme-1", form)
    assert status == 200 and answer["applied"] == 1 and answer["outcome_id"] == oid, (status, answer)
    row = db.execute("SELECT event_key, payload->>'message_id' AS mid, status FROM outcome_events").fetchone()
    assert row["event_key"].startswith("acme|long-key:sha256:") and len(row["event_key"]) == 85, row
    assert row["mid"] == long_id and row["status"] == "applied"
    assert db.execute("SELECT replied_at FROM outcome_labels WHERE outcome_id = %s", (oid,)).fetchone()["replied_at"]
    # SendGrid's retry is the same event
    status, answer = post_reply(api, "inbound-acme-1", form)
    assert status == 200 and answer["duplicates"] == 1 and answer["outcome_id"] == oid, answer
    assert count(db, "outcome_events") == 1


def test_a_dsn_of_a_long_message_id_is_stored(api: ApiClient, db) -> None:
    register(api, "acme", "lee", "lee@contoso.example")
    dsn = (
        "From: MAILER-DAEMON@mx.contoso.example\r\nTo: bounces@reply.flywheel.example\r\n"
        f"Subject: Undelivered Mail\r\nMessage-ID: <{'d' * 700}@mx.contoso.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.contoso.example\r\n\r\n"
        "Final-Recipient: rfc822; lee@contoso.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
    )
    form = parse_form(dsn, ["bounces@reply.flywheel.example"])
    for expected in ("stored", "duplicates"):
        status, answer = post_reply(api, "inbound-acme-1", form)
        assert status == 200 and answer[expected] == 1, (status, answer)
    key = db.execute("SELECT event_key FROM outcome_events").fetchone()["event_key"]
    assert key.startswith("acme|long-key:sha256:"), key


def test_an_in_house_webhook_id_longer_than_the_key_limit_is_stored(api: ApiClient, db) -> None:
    """The Standard Webhooks spec bounds no webhook-id: an event with a long one is kept (the id in
    its data) and its redelivery is a duplicate."""
    oid = register(api, "acme", "lee", "lee@contoso.example")
    webhook_id = "msg_" + "z" * 700
    assert _deal_won(api, "acme", oid, "A-1", webhook_id)["applied"] == 1
    again = _deal_won(api, "acme", oid, "A-1", webhook_id)
    assert again["duplicates"] == 1 and again["stored"] == 0, again
    row = db.execute("SELECT event_key, data->>'webhook_id' AS wid FROM outcome_events").fetchone()
    assert row["event_key"].startswith("acme|long-key:sha256:") and row["wid"] == webhook_id
    assert deal(db, oid)[0] == "won"

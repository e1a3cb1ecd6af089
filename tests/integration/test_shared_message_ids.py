"""Messages that share a SendGrid X-Message-Id (one per send request: every personalization of one
mail/send gets it) or a Message-ID: every event goes to its own recipient's message, in its own
organisation, whether it arrives before or after the registrations; never to another lead's, never
across organisations; an id that cannot tell its recipients apart leaves the event an orphan."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ApiClient, in_processes
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers

P = "shared14c5d75ce93.dfd.64b469"
SENT = (datetime.now(UTC) - timedelta(days=5)).replace(microsecond=0)


def msg(org: str, lead: str, *, pmid: str = P, key: str | None = None, minutes: int = 0, **more: Any) -> dict:
    message = {
        "org_id": org,
        "campaign_id": "c1",
        "lead_id": lead,
        "lead_email": f"{lead}@example.com",
        "body": f"hello {lead}",
        "sent_at": (SENT + timedelta(minutes=minutes)).isoformat(),
        "provider_message_id": pmid,
        **more,
    }
    return {**message, "idempotency_key": key} if key else message


def sg(kind: str, lead: str, n: int, *, pmid: str = P, **extra: Any) -> dict:
    """A SendGrid event as it arrives: the send's X-Message-Id plus a per-recipient suffix."""
    return {
        "email": f"{lead}@example.com",
        "timestamp": int(SENT.timestamp()) + 3600 + n,
        "event": kind,
        "sg_event_id": f"{kind}-{lead}-{n}",
        "sg_message_id": f"{pmid}.filter0001.16648.5515E0B8{n}.0",
        **extra,
    }


def register(api: ApiClient, *messages: dict, status: int = 201) -> list[str]:
    got, body = api.post("/messages", {"messages": list(messages)})
    assert got == status, body
    return [o["outcome_id"] for o in body["outcomes"]]


def post(api: ApiClient, *events: dict) -> dict:
    raw = sendgrid_body(list(events))
    status, body = api.post("/webhooks/sendgrid", body=raw, headers=sendgrid_headers(raw))
    assert status == 200, body
    return body


def suppressed(db) -> set[tuple[str, str]]:
    return {(r["org_id"], r["email"]) for r in db.execute("SELECT org_id, email FROM suppressions")}


def events_by_lead(db) -> dict[str, tuple[str | None, str | None]]:
    """event key -> (org, lead e-mail of the message it is applied to), or (org, None) for an orphan."""
    rows = db.execute(
        """SELECT e.event_key, e.org_id, o.lead_email FROM outcome_events e
             LEFT JOIN outcome_labels o USING (outcome_id)"""
    ).fetchall()
    return {r["event_key"]: (r["org_id"], r["lead_email"]) for r in rows}


def outcome(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    configure(monkeypatch)


def test_one_send_to_two_leads_is_two_messages_and_each_gets_its_own_events(api: ApiClient, db, configured) -> None:
    # no idempotency key: the provider message id alone used to make Bob a duplicate of Ann
    ann, bob = register(api, msg("acme", "ann"), msg("acme", "bob", minutes=1))
    assert ann != bob
    result = post(api, sg("unsubscribe", "ann", 1, org_id="acme"), sg("open", "bob", 2), sg("click", "bob", 3))
    assert (result["applied"], result["orphans"]) == (3, 0)
    assert suppressed(db) == {("acme", "ann@example.com")}
    assert outcome(db, ann)["unsubscribed_at"] is not None and outcome(db, ann)["open_count"] == 0
    assert outcome(db, bob)["unsubscribed_at"] is None and outcome(db, bob)["click_count"] == 1
    # a retry of the same registration is still the same two messages
    assert register(api, msg("acme", "ann"), msg("acme", "bob", minutes=1), status=200) == [ann, bob]


def test_another_organisations_message_with_the_same_id_neither_takes_nor_hides_an_event(
    api: ApiClient, db, configured
) -> None:
    register(api, msg("acme", "ann"))
    register(api, msg("globex", "zed", minutes=60))  # a later send, reusing the id
    result = post(
        api,
        sg("unsubscribe", "ann", 1, org_id="acme"),  # acme's own event: not hidden by globex's later message
        sg("open", "ann", 2),  # no organisation (the README's minimal setup): Ann's message, not the latest
        sg("unsubscribe", "zed", 3),
        sg("click", "ann", 4, org_id="globex"),  # globex sent this id to no Ann: never acme's, never Zed's
    )
    assert (result["applied"], result["orphans"]) == (3, 1)
    assert events_by_lead(db) == {
        "unsubscribe-ann-1": ("acme", "ann@example.com"),
        "open-ann-2": ("acme", "ann@example.com"),
        "unsubscribe-zed-3": ("globex", "zed@example.com"),
        "click-ann-4": ("globex", None),
    }
    assert suppressed(db) == {("acme", "ann@example.com"), ("globex", "zed@example.com")}


def test_an_event_waits_for_its_own_leads_message_not_another_recipients(api: ApiClient, db, configured) -> None:
    [bob] = register(api, msg("acme", "bob"))
    assert post(api, sg("unsubscribe", "ann", 1, org_id="acme"))["orphans"] == 1
    assert suppressed(db) == set() and outcome(db, bob)["unsubscribed_at"] is None
    [ann] = register(api, msg("acme", "ann"))  # its own message claims it
    assert events_by_lead(db) == {"unsubscribe-ann-1": ("acme", "ann@example.com")}
    assert suppressed(db) == {("acme", "ann@example.com")} and outcome(db, ann)["unsubscribed_at"] is not None


def test_an_orphan_without_an_organisation_is_claimed_only_by_its_own_leads_message(
    api: ApiClient, db, configured
) -> None:
    assert post(api, sg("unsubscribe", "ann", 1))["orphans"] == 1
    register(api, msg("globex", "zed"))  # same id, another organisation's lead: no claim
    assert events_by_lead(db) == {"unsubscribe-ann-1": (None, None)} and suppressed(db) == set()
    register(api, msg("acme", "ann"))
    assert events_by_lead(db) == {"unsubscribe-ann-1": ("acme", "ann@example.com")}
    assert suppressed(db) == {("acme", "ann@example.com")}


def test_an_id_two_organisations_sent_to_one_address_needs_the_events_organisation(
    api: ApiClient, db, configured
) -> None:
    register(api, msg("acme", "ann"))
    register(api, msg("globex", "ann"))
    result = post(api, sg("unsubscribe", "ann", 1), sg("open", "ann", 2, org_id="globex"))
    assert (result["applied"], result["orphans"]) == (1, 1)  # ambiguous: counted with the orphans
    # a third organisation's registration cannot settle it either
    register(api, msg("initech", "ann"))
    assert events_by_lead(db) == {"unsubscribe-ann-1": (None, None), "open-ann-2": ("globex", "ann@example.com")}
    assert suppressed(db) == set()


def no_email(org: str, lead: str, **more: Any) -> dict:
    """A message registered without a lead_email: its lead id tells it apart from the send's others."""
    message = msg(org, lead, **more)
    message.pop("lead_email")
    return message


def test_two_leads_registered_without_emails_are_two_recipients_of_a_send(api: ApiClient, db, configured) -> None:
    """ann and bob, one send, each registered by lead id alone: an event about ann (its email names
    neither message) cannot tell which is hers, so it waits as an orphan; never bob's."""
    ann, bob = register(api, no_email("acme", "ann"), no_email("acme", "bob", minutes=1))
    assert ann != bob
    result = post(api, sg("unsubscribe", "ann", 1, org_id="acme"), sg("click", "ann", 2, org_id="acme"))
    assert (result["applied"], result["orphans"]) == (0, 2), result
    assert outcome(db, bob)["unsubscribed_at"] is None and outcome(db, bob)["click_count"] == 0
    assert outcome(db, ann)["unsubscribed_at"] is None
    # one lead registered without an email is still the send's single recipient: its events are its own
    [carl] = register(api, no_email("acme", "carl", pmid="other.dfd"))
    assert post(api, sg("click", "carl", 3, pmid="other.dfd", org_id="acme"))["applied"] == 1
    assert outcome(db, carl)["click_count"] == 1


def test_orphans_of_two_leads_registered_without_emails_are_claimed_by_neither(api: ApiClient, db, configured) -> None:
    assert post(api, sg("unsubscribe", "ann", 1, org_id="acme"), sg("click", "ann", 2, org_id="acme"))["orphans"] == 2
    ann, bob = register(api, no_email("acme", "ann"), no_email("acme", "bob", minutes=1))
    for oid in (ann, bob):
        assert outcome(db, oid)["unsubscribed_at"] is None and outcome(db, oid)["click_count"] == 0
    assert set(events_by_lead(db).values()) == {("acme", None)}
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE status = 'orphan'").fetchone()["n"] == 2
    # the same lead's second message (a retry of the send) is still one recipient: one lead, one claim
    assert post(api, sg("open", "dan", 3, pmid="solo.dfd", org_id="acme"))["orphans"] == 1
    first, second = register(
        api,
        no_email("acme", "dan", pmid="solo.dfd", key="d1"),
        no_email("acme", "dan", pmid="solo.dfd", key="d2", minutes=2),
    )
    assert outcome(db, second)["open_count"] + outcome(db, first)["open_count"] == 1


def test_a_retry_of_a_message_registered_before_the_upgrade_is_still_a_duplicate(
    api: ApiClient, db, configured
) -> None:
    """Before recipients were told apart, a message without an idempotency key was stored under
    `pmid:<id>` alone: the same message registered again finds it; another recipient of that send
    is a new message."""
    [ann] = register(api, msg("acme", "ann"))
    db.execute("UPDATE outcome_labels SET dedupe_key = %s WHERE outcome_id = %s", (f"pmid:{P}", ann))
    assert register(api, msg("acme", "ann"), status=200) == [ann]
    [bob] = register(api, msg("acme", "bob"))
    assert bob != ann and register(api, msg("acme", "bob"), msg("acme", "ann"), status=200) == [bob, ann]
    # the stored key is another organisation's: its own message
    assert register(api, msg("globex", "ann")) != [ann]
    assert db.execute("SELECT count(*) AS n FROM outcome_labels").fetchone()["n"] == 3


def test_a_message_id_reused_by_another_organisation_never_crosses_over(db_url: str) -> None:
    """Replies and DSN bounces name their message by Message-ID (In-Reply-To, References): a reused
    one goes to the message of the event's organisation, or of the lead it comes from."""
    from flywheel.domain.ingest import IncomingEvent
    from flywheel.models.messages import MessageIn
    from flywheel.services.ingest import ingest_events
    from flywheel.services.outcomes import register_messages

    def message(org: str, lead: str, msgid: str) -> MessageIn:
        return MessageIn(
            org_id=org,
            campaign_id="c1",
            lead_id=lead,
            lead_email=f"{lead}@example.com",
            body="hi",
            sent_at=SENT,
            email_message_id=f"<{msgid}>",
            idempotency_key=msgid,
        )

    def bounce(key: str, org: str | None, sender: str, msgid: str) -> IncomingEvent:
        return IncomingEvent(
            provider="sendgrid_inbound",
            event_key=key,
            event_type="bounce",
            occurred_at=SENT + timedelta(hours=1),
            payload={},
            data={"bounce_type": "bounce"},
            org_id=org,
            references=[msgid],
            email=sender,
        )

    def ids() -> dict[str, tuple[str | None, str | None]]:
        from flywheel.dal.connection import transaction

        with transaction() as conn:
            rows = conn.execute(
                "SELECT e.event_key, e.org_id, o.lead_email FROM outcome_events e LEFT JOIN outcome_labels o USING"
                " (outcome_id)"
            ).fetchall()
        return {r["event_key"]: (r["org_id"], r["lead_email"]) for r in rows}

    register_messages([message("acme", "ann", "m1@mail.example"), message("globex", "zed", "m1@mail.example")])
    result = ingest_events(
        [
            bounce("b1", None, "ann@example.com", "m1@mail.example"),
            bounce("b2", None, "postmaster@example.com", "m1@mail.example"),  # whose? not knowable
            bounce("b3", "globex", "postmaster@example.com", "m1@mail.example"),
            bounce("b4", None, "ann@example.com", "m2@mail.example"),  # before its message registers
        ],
        window_days=90,
    )
    assert (result.applied, result.orphans) == (2, 2)
    register_messages([message("globex", "zed", "m2@mail.example")])  # no claim: another org's lead
    register_messages([message("acme", "ann", "m2@mail.example")])
    assert ids() == {
        "b1": ("acme", "ann@example.com"),
        "b2": (None, None),
        "b3": ("globex", "zed@example.com"),
        "b4": ("acme", "ann@example.com"),
    }


def _deliver(url: str, stream: list[dict[str, Any]], errors: Any) -> None:
    from tests.integration.test_concurrency import _deliver as deliver

    deliver(url, stream, errors)


@pytest.mark.integration
def test_events_and_registrations_of_shared_ids_racing_end_as_one_ordered_delivery(
    db_url, pg_admin_url, template_db, monkeypatch
) -> None:
    """Processes with their own connections deliver, shuffled and partly twice, the events of sends
    to two acme leads and one globex lead that share each id (acme's with and without the org custom
    arg, globex's without), while both organisations register (and re-register) their messages
    mid-way: every event ends on its own recipient's message, as one ordered delivery leaves it."""
    import time

    from flywheel.local.embedded import create_database
    from tests.integration.test_concurrency import deliver_in_order, diff, registration, sendgrid_request, snapshot

    configure(monkeypatch)
    sends = 6
    acme = [msg("acme", f"{lead}{k}", pmid=f"send{k}.dfd") for k in range(sends) for lead in ("ann", "bob")]
    globex = [msg("globex", f"zed{k}", pmid=f"send{k}.dfd", minutes=30) for k in range(sends)]
    groups = [
        [
            sendgrid_request([sg("unsubscribe", f"ann{k}", 1, pmid=f"send{k}.dfd", org_id="acme")]),
            sendgrid_request([sg("delivered", f"ann{k}", 2, pmid=f"send{k}.dfd")]),
            sendgrid_request(
                [sg("open", f"bob{k}", 3, pmid=f"send{k}.dfd"), sg("click", f"bob{k}", 4, pmid=f"send{k}.dfd")]
            ),
            sendgrid_request([sg("unsubscribe", f"zed{k}", 5, pmid=f"send{k}.dfd")]),
        ]
        for k in range(sends)
    ]
    deliver_in_order(db_url, [registration(acme), registration(globex), *(r for g in groups for r in g)], monkeypatch)
    expected = snapshot(db_url)
    assert not [e for e in expected["events"] if e["status"] != "applied"]
    assert {(s["org_id"], s["email"]) for s in expected["suppressions"]} == {
        *(("acme", f"ann{k}@example.com") for k in range(sends)),
        *(("globex", f"zed{k}@example.com") for k in range(sends)),
    }
    mismatches = []
    for n in range(2):
        url = create_database(pg_admin_url, f"{template_db}_shared{n}_{int(time.time())}", template=template_db)
        rng = random.Random(n)
        streams = []
        for p in range(4):
            stream = [r for g in groups for r in g]
            stream += rng.sample(stream, len(stream) // 3)
            rng.shuffle(stream)
            stream.insert(rng.randrange(len(stream)), registration(acme if p % 2 == 0 else globex))
            streams.append(stream)
        found, exit_codes = in_processes([(_deliver, (url, s)) for s in streams], timeout=300)
        assert all(code == 0 for code in exit_codes), exit_codes
        differences = diff(snapshot(url), expected)
        if found or differences:
            mismatches.append(f"round {n}: errors {found[:3]}, differences {differences[:10]}")
    assert not mismatches, "\n".join(mismatches)

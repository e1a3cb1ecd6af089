"""POST /messages and GET /messages/{id} against real PostgreSQL through the template's routes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from tests.conftest import ROOT, ApiClient, count, load_event


def body_of(event_file: str) -> Any:
    return json.loads(load_event(event_file)["body"])


def test_single_message_is_registered_once(api: ApiClient, db) -> None:
    message = body_of("messages_register_single.json")
    status, first = api.post("/messages", message)
    assert status == 201 and first["created"] == 1
    status, again = api.post("/messages", message)
    assert status == 200 and again["created"] == 0 and again["existing"] == 1
    assert again["outcomes"][0]["outcome_id"] == first["outcomes"][0]["outcome_id"]
    assert count(db, "outcome_labels") == 1
    row = db.execute("SELECT * FROM outcome_labels").fetchone()
    assert row["lead_email"] == "dana.reyes@northwind.example"
    assert row["lead_industry"] == "fintech" and row["lead_icp_score"] == pytest.approx(0.82)
    assert row["agent_decisions"]["CopywriterAgent"]["framework"] == "PAS"
    assert row["lead_country"] == "US" and row["sender"]["name"] == "Sam Lee" and row["sender"]["country"] == "US"
    assert db.execute("SELECT training_opt_in FROM organizations WHERE org_id = 'acme'").fetchone() == {
        "training_opt_in": False
    }


def test_same_content_without_keys_is_the_same_message(api: ApiClient, db) -> None:
    message = body_of("messages_register_single.json")
    del message["idempotency_key"], message["provider_message_id"]
    _, first = api.post("/messages", {"messages": [message, message]})
    assert [o["created"] for o in first["outcomes"]] == [True, False]
    assert first["outcomes"][0]["outcome_id"] == first["outcomes"][1]["outcome_id"]
    assert count(db, "outcome_labels") == 1


def test_batch_registration_returns_ids_in_order(api: ApiClient, db) -> None:
    result = invoke("MessagesFunction", load_event("messages_register_batch.json"), ROOT / "template.yaml")
    assert result["statusCode"] == 201
    outcomes = json.loads(result["body"])["outcomes"]
    ids = [o["outcome_id"] for o in outcomes]
    leads = [
        db.execute("SELECT lead_id FROM outcome_labels WHERE outcome_id = %s", (i,)).fetchone()["lead_id"] for i in ids
    ]
    assert leads == ["lead-200", "lead-201", "lead-202"]


def test_batch_with_one_invalid_item_writes_nothing(api: ApiClient, db) -> None:
    result = invoke("MessagesFunction", load_event("messages_register_invalid.json"), ROOT / "template.yaml")
    assert result["statusCode"] == 422
    body = json.loads(result["body"])
    assert body["error"] == "validation_error"
    assert body["fields"][0]["field"] == "messages.1.lead_email"
    assert count(db, "outcome_labels") == 0 and count(db, "organizations") == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"messages": []}, "messages"),
        ({"org_id": "acme"}, "campaign_id"),
        ({**body_of("messages_register_single.json"), "sent_at": "2026-11-23T09:00:00"}, "sent_at"),
        ({**body_of("messages_register_single.json"), "lead": {"icp_score": 7}}, "lead.icp_score"),
        ({**body_of("messages_register_single.json"), "unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_input_names_the_field(api: ApiClient, db, payload: dict, field: str) -> None:
    status, body = api.post("/messages", payload)
    assert status == 422
    assert any(f["field"] == field for f in body["fields"]), body
    assert count(db, "outcome_labels") == 0


def test_too_many_messages_is_rejected(api: ApiClient, db) -> None:
    message = body_of("messages_register_single.json")
    batch = [{**message, "idempotency_key": f"k{i}"} for i in range(501)]
    status, body = api.post("/messages", {"messages": batch})
    assert status == 422 and body["fields"][0]["field"] == "messages"
    assert count(db, "outcome_labels") == 0


def test_malformed_json_is_400(api: ApiClient, db) -> None:
    status, body = api.post("/messages", body=b'{"org_id": "acme",')
    assert status == 400 and body["error"] == "malformed_json"


def test_get_outcome_with_stage_and_history(api: ApiClient, db) -> None:
    _, created = api.post("/messages", body_of("messages_register_single.json"))
    outcome_id = created["outcomes"][0]["outcome_id"]
    status, outcome = api.get(f"/messages/{outcome_id}?org_id=acme")
    assert status == 200
    assert outcome["outcome_id"] == outcome_id and outcome["stage"] == "sent" and outcome["events"] == []
    assert outcome["training_label"] == "neutral" and outcome["quality_score"] == 0
    assert "dedupe_key" not in outcome


def test_get_unknown_outcome_is_404_and_bad_id_is_422(api: ApiClient, db) -> None:
    result = invoke("MessagesFunction", load_event("messages_get.json"), ROOT / "template.yaml")
    assert result["statusCode"] == 404 and json.loads(result["body"])["error"] == "not_found"
    status, body = api.get("/messages/not-a-uuid?org_id=acme")
    assert status == 422 and body["fields"][0]["field"] == "outcome_id"


def _orphan(db, key: str, event_type: str, minutes: int, **match: Any) -> None:
    db.execute(
        """INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, status,
                                       match_outcome_id, match_provider_message_id, match_email, data, payload)
           VALUES ('sendgrid', %s, %s, '2026-11-23 09:00+00'::timestamptz + make_interval(mins => %s), 'orphan',
                   %s, %s, %s, %s, '{}')""",
        (
            key,
            event_type,
            minutes,
            match.get("outcome_id"),
            match.get("pmid"),
            match.get("email"),
            json.dumps(match.get("data", {})),
        ),
    )


def test_orphan_events_are_applied_when_their_message_is_registered(api: ApiClient, db) -> None:
    message = body_of("messages_register_single.json")
    # SendGrid events carry their recipient: a provider message id is claimed by that lead's message
    lead = {"pmid": message["provider_message_id"], "email": message["lead_email"]}
    _orphan(db, "e1", "open", 5, **lead)
    _orphan(db, "e2", "delivered", 1, **lead)
    _orphan(db, "e3", "open", 6, pmid="someone-else", email=message["lead_email"])
    _, created = api.post("/messages", message)
    outcome_id = created["outcomes"][0]["outcome_id"]
    _, outcome = api.get(f"/messages/{outcome_id}?org_id=acme")
    assert outcome["stage"] == "opened" and outcome["open_count"] == 1
    assert [e["event_key"] for e in outcome["events"]] == ["e2", "e1"]
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE status = 'orphan'").fetchone()["n"] == 1


def test_database_unreachable_is_503_and_nothing_written(api: ApiClient, db, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel.dal.connection import close_connection

    close_connection()
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    status, body = api.post("/messages", body_of("messages_register_single.json"))
    assert status == 503 and body == {"error": "service_unavailable", "message": "database unavailable"}
    assert count(db, "outcome_labels") == 0

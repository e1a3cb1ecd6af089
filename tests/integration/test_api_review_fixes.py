"""What a second outside review of the API found, each held: an external reply id is scoped to its
outcome (and reused with other content, a conflict); the first copy of a message repeated in one
request stands; a rollback naming no model is a 404; the training run's numbers and flags are JSON
numbers and booleans only."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from flywheel.settings import reset_settings
from tests.conftest import ApiClient, load_event
from tests.webhook_helpers import configure


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Any:
    configure(monkeypatch)
    with mock_aws():
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replies")["QueueUrl"]
        monkeypatch.setenv("REPLIES_QUEUE_URL", url)
        reset_settings()
        yield url
    reset_settings()


def message(**changes: Any) -> dict[str, Any]:
    return {**json.loads(load_event("messages_register_single.json")["body"]), **changes}


def register(api: ApiClient, **changes: Any) -> str:
    status, body = api.post("/messages", message(**changes))
    assert status in (200, 201), body
    return str(body["outcomes"][0]["outcome_id"])


def test_an_external_reply_id_names_a_reply_within_its_outcome(api: ApiClient, db, queue) -> None:
    acme = register(api, org_id="acme", idempotency_key="a1")
    beta = register(api, org_id="beta", idempotency_key="b1", provider_message_id="pm-beta")
    first = {"outcome_id": acme, "text": "Yes, let's talk", "channel": "linkedin", "external_id": "1"}
    assert api.post("/replies?org_id=acme", first)[1]["duplicate"] is False
    # another organisation's outcome, the same id on the same channel: another reply (it was dropped)
    status, body = api.post("/replies?org_id=beta", {**first, "outcome_id": beta, "text": "Not interested"})
    assert status == 202 and body["duplicate"] is False, body
    assert db.execute("SELECT replied_at FROM outcome_labels WHERE outcome_id = %s", (beta,)).fetchone()["replied_at"]
    # the same reply again is a retry; the same id with other text is a conflict, and nothing changes
    assert api.post("/replies?org_id=acme", first)[1]["duplicate"] is True
    status, body = api.post("/replies?org_id=acme", {**first, "text": "Actually, no"})
    assert status == 409 and body["error"] == "conflict", body
    texts = db.execute("SELECT data->>'text' AS t FROM outcome_events WHERE event_type = 'reply' ORDER BY t").fetchall()
    assert [r["t"] for r in texts] == ["Not interested", "Yes, let's talk"]


def test_a_message_repeated_in_one_request_keeps_its_first_copy(api: ApiClient, db, queue) -> None:
    first = message(idempotency_key="k1", body="FIRST body", provider_message_id="pm-first")
    second = message(idempotency_key="k1", body="SECOND body", provider_message_id="pm-second")
    status, body = api.post("/messages", {"messages": [first, second]})
    assert status == 201 and len({o["outcome_id"] for o in body["outcomes"]}) == 1, body
    row = db.execute("SELECT body, provider_message_id FROM outcome_labels").fetchone()
    assert (row["body"], row["provider_message_id"]) == ("FIRST body", "pm-first")


def test_a_rollback_naming_no_model_is_not_found(api: ApiClient, db) -> None:
    status, body = api.post("/training/rollback", {"reason": "why not", "model_id": "nope"})
    assert status == 404 and body["error"] == "not_found", body


@pytest.mark.parametrize(
    "change",
    [
        {"since_days": True},
        {"min_quality_score": "0.5"},
        {"deploy": 1},
        {"canary_percentage": "10"},
        {"since_days": 1.0},
    ],
)
def test_a_training_run_takes_json_numbers_and_booleans_only(api: ApiClient, db, change: dict[str, Any]) -> None:
    status, body = api.post("/training/run", change)
    assert status == 422 and body["error"] == "validation_error", body

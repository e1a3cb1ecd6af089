"""POST /webhooks/sendgrid/inbound/{token}: replies linked, stored without the quote, queued."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from flywheel.clients.aws import reset_clients
from flywheel.local.invoke import invoke
from flywheel.local.seed import DANA
from tests.conftest import ROOT, count, load_event
from tests.webhook_helpers import configure, event_body, route_event


@pytest.fixture
def replies_queue(monkeypatch: pytest.MonkeyPatch, db_url: str):
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replies")["QueueUrl"]
        configure(monkeypatch, REPLIES_QUEUE_URL=url)
        yield url
        reset_clients()


def queued(url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def register(event_file: str = "messages_register_single.json") -> list[str]:
    result = invoke("MessagesFunction", load_event(event_file), ROOT / "template.yaml")
    return [o["outcome_id"] for o in json.loads(result["body"])["outcomes"]]


def post_reply(event_file: str, outcome_id: str = "not-an-outcome", **headers: str) -> tuple[int, dict]:
    event = load_event(event_file)
    body = event_body(event).replace(str(DANA).encode(), outcome_id.encode())
    result = invoke("WebhooksFunction", route_event(event, body, **headers), ROOT / "template.yaml")
    return result["statusCode"], json.loads(result["body"])


def reply_row(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def test_parsed_reply_linked_by_reply_to_address(db, replies_queue) -> None:
    [outcome_id] = register()
    status, body = post_reply("webhooks_sendgrid_inbound_parsed.json", outcome_id)
    assert status == 200 and body["applied"] == 1 and body["outcome_id"] == outcome_id
    row = reply_row(db, outcome_id)
    assert row["stage"] == "replied" and row["delivered_at"] is not None
    assert row["reply_text"].startswith("Hi Sam,") and "Tuesday at 2pm works" in row["reply_text"]
    assert "Finance teams" not in row["reply_text"] and "wrote:" not in row["reply_text"]
    [message] = queued(replies_queue)
    assert message["outcome_id"] == outcome_id and message["reply_key"].startswith("sendgrid_inbound:")
    assert message["text"] == row["reply_text"]
    # SendGrid retries: the reply is stored once (queued again, which the classifier tolerates)
    status, again = post_reply("webhooks_sendgrid_inbound_parsed.json", outcome_id)
    assert status == 200 and again["duplicates"] == 1 and count(db, "outcome_events") == 1


def test_parsed_reply_linked_by_in_reply_to(db, replies_queue) -> None:
    [outcome_id] = register()
    status, body = post_reply("webhooks_sendgrid_inbound_parsed.json")  # reply+ address carries no real id
    assert status == 200 and body["outcome_id"] == outcome_id


def test_raw_mime_reply_linked_by_in_reply_to_and_quote_removed(db, replies_queue) -> None:
    ids = register("messages_register_batch.json")
    status, body = post_reply("webhooks_sendgrid_inbound_raw.json")
    assert status == 200 and body["outcome_id"] == ids[0]
    row = reply_row(db, ids[0])
    assert row["reply_text"] == "Thanks, but we just signed with a competitor for the next two years."


def test_reply_linked_by_sender_within_window_else_kept_unlinked(db, replies_queue, monkeypatch) -> None:
    ids = register("messages_register_batch.json")
    event = load_event("webhooks_sendgrid_inbound_raw.json")
    body = event_body(event).replace(b"In-Reply-To: <batch-0@mail.acme.example>\r\n", b"")
    result = invoke("WebhooksFunction", route_event(event, body), ROOT / "template.yaml")
    assert json.loads(result["body"])["outcome_id"] == ids[0]  # lee@contoso.example, sent two days before

    stranger = body.replace(b"lee@contoso.example", b"someone@else.example").replace(b"lee.reply.77", b"x.1")
    result = invoke("WebhooksFunction", route_event(event, stranger), ROOT / "template.yaml")
    assert result["statusCode"] == 200 and json.loads(result["body"])["orphans"] == 1
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE status = 'orphan'").fetchone()["n"] == 1
    assert len(queued(replies_queue)) == 1  # only the linked reply goes to the classifier


def test_wrong_token_is_403_and_writes_nothing(db, replies_queue) -> None:
    register()
    event = load_event("webhooks_sendgrid_inbound_parsed.json")
    event["pathParameters"] = {"token": "guess"}
    event["path"] = event["requestContext"]["path"] = "/webhooks/sendgrid/inbound/guess"
    result = invoke("WebhooksFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 403 and json.loads(result["body"])["error"] == "forbidden"
    assert count(db, "outcome_events") == 0 and queued(replies_queue) == []


def test_reply_to_another_domain_is_403(db, replies_queue, monkeypatch) -> None:
    configure(monkeypatch, REPLIES_QUEUE_URL=replies_queue, INBOUND_PARSE_DOMAINS="parse.other.example")
    status, body = post_reply("webhooks_sendgrid_inbound_parsed.json")
    assert status == 403 and count(db, "outcome_events") == 0


@pytest.mark.parametrize(
    ("content_type", "payload", "status"),
    [
        ("application/json", b'{"text": "hi"}', 400),
        (
            "multipart/form-data; boundary=zz",
            b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--zz--\r\n',
            422,
        ),
    ],
)
def test_bad_forms_are_rejected(db, replies_queue, content_type: str, payload: bytes, status: int) -> None:
    event = load_event("webhooks_sendgrid_inbound_parsed.json")
    result = invoke(
        "WebhooksFunction", route_event(event, payload, **{"Content-Type": content_type}), ROOT / "template.yaml"
    )
    assert result["statusCode"] == status
    assert count(db, "outcome_events") == 0


def test_queue_failure_keeps_the_reply_in_the_outbox_until_the_sweep_sends_it(db, replies_queue, monkeypatch) -> None:
    from flywheel.services.outbox import flush

    [outcome_id] = register()
    configure(monkeypatch, REPLIES_QUEUE_URL=replies_queue + "-missing")
    status, body = post_reply("webhooks_sendgrid_inbound_parsed.json", outcome_id)
    # stored with its outbox message in one transaction: SendGrid need not retry
    assert status == 200 and body["applied"] == 1
    pending = db.execute("SELECT attempts, last_error, sent_at FROM outbox").fetchall()
    assert len(pending) == 1 and pending[0]["sent_at"] is None and pending[0]["attempts"] == 1
    configure(monkeypatch, REPLIES_QUEUE_URL=replies_queue)
    status, body = post_reply("webhooks_sendgrid_inbound_parsed.json", outcome_id)  # a retry: a duplicate
    assert status == 200 and body["duplicates"] == 1 and queued(replies_queue) == []
    assert flush() == {"replies": 1, "events": 0}  # the hourly sweep
    [message] = queued(replies_queue)
    assert message["outcome_id"] == outcome_id
    assert db.execute("SELECT sent_at FROM outbox").fetchone()["sent_at"] is not None

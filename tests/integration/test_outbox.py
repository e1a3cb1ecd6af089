"""The outbox sender: replies of any size reach the classifier, a message SQS refuses does not hold
up the others (it is parked after a few refusals and counted), an outage parks nothing, and
several senders at once (a request's flush and the hourly sweep) send each message once.

SQS's limits are the documented ones (botocore's SQS model, SendMessageBatch, 2025): at most 10
entries, each message and the sum of a batch's messages at most 1 MiB (1,048,576 bytes), bodies of
the allowed characters only. moto enforces the entry count and the sums, but in characters, not
bytes, and does not check the characters: `LimitedSqs` checks each request as SQS would, then
lets moto take it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from flywheel.clients import queue as queue_client
from flywheel.clients.aws import reset_clients
from flywheel.dal import outbox as outbox_dal
from flywheel.dal.connection import close_connection, transaction
from flywheel.local.invoke import invoke
from flywheel.local.seed import LEE
from flywheel.models.replies import ReplyJob
from flywheel.services import outbox
from tests.conftest import ROOT, load_event
from tests.integration.test_classifier import register, sqs_event
from tests.webhook_helpers import configure

pytestmark = pytest.mark.integration

MIB = 1_048_576
# SQS: "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
_NOT_ALLOWED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class LimitedSqs:
    """moto's SQS client with SendMessageBatch held to SQS's documented limits, in bytes."""

    def __init__(self, inner: Any, delay_s: float = 0.0) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.requests: list[list[int]] = []  # the UTF-8 size of each entry, per request

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        sizes = [len(e["MessageBody"].encode()) for e in Entries]
        self.requests.append(sizes)
        assert 1 <= len(Entries) <= 10, "TooManyEntriesInBatchRequest"
        assert not any(_NOT_ALLOWED.search(e["MessageBody"]) for e in Entries), "InvalidMessageContents"
        if sum(sizes) > MIB:
            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.BatchRequestTooLong", "Message": f"{sum(sizes)} bytes"}},
                "SendMessageBatch",
            )
        time.sleep(self.delay_s)  # a request takes a while: concurrent senders overlap
        return self.inner.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch, db_url: str):
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        inner = boto3.client("sqs", region_name="us-east-1")
        url = inner.create_queue(QueueName="replies")["QueueUrl"]
        limited = LimitedSqs(inner)
        real_client = queue_client.client
        monkeypatch.setattr(queue_client, "client", lambda s: limited if s == "sqs" else real_client(s))
        configure(monkeypatch, REPLIES_QUEUE_URL=url)
        yield {"url": url, "client": limited, "inner": inner}
        reset_clients()


def received(inner: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while batch := inner.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        out.extend(json.loads(m["Body"]) for m in batch)
        inner.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    return out


def reply(key: str, text: str) -> tuple[str, str, dict[str, Any]]:
    payload = {
        "outcome_id": str(uuid.uuid4()),
        "reply_key": f"sendgrid_inbound:{key}",
        "text": text,
        "subject": "Re: your note",
        "from": "dana@example.com",
        "received_at": "2026-11-25T16:20:00+00:00",
    }
    return ("replies", payload["reply_key"], payload)


def queue_replies(messages: list[tuple[str, str, dict[str, Any]]]) -> None:
    # one at a time, as they arrive: the first is the oldest, the one a sender claims first
    for message in messages:
        with transaction() as conn:
            outbox_dal.add(conn, [message])


def outbox_rows(db) -> dict[str, dict[str, Any]]:
    rows = db.execute("SELECT dedupe_key, sent_at, attempts, refusals, parked_at, last_error FROM outbox").fetchall()
    return {r["dedupe_key"].split(":", 1)[1]: r for r in rows}


def test_an_oversized_reply_and_a_batch_of_large_ones_all_reach_the_queue(db, sqs) -> None:
    big = "I am interested. " + "x" * 1_500_000  # a 1.5 MB reply, oldest of all
    queue_replies(
        [
            reply("huge", big),
            *(reply(f"large-{i}", f"{i} " + "y" * 200_000) for i in range(10)),  # ten 200 KB replies
            *(reply(f"small-{i}", f"small reply {i}") for i in range(5)),
        ]
    )
    assert outbox.flush() == {"replies": 16, "events": 0}
    jobs = {j["reply_key"].split(":", 1)[1]: j for j in received(sqs["inner"], sqs["url"])}
    assert len(jobs) == 16 and all(r["sent_at"] is not None for r in outbox_rows(db).values())
    # within SQS's limits: each request at most 1 MiB, each message at most 256 KiB
    assert all(sum(sizes) <= MIB and max(sizes) <= outbox.MAX_REPLY_JOB_BYTES for sizes in sqs["client"].requests)
    # the oversized reply goes as its start (the classifier takes at most 50,000 characters); the
    # others whole
    assert jobs["huge"]["text"] == big[:50_000]
    assert jobs["large-3"]["text"] == ("3 " + "y" * 200_000)[:50_000]
    assert jobs["small-4"]["text"] == "small reply 4"
    assert all(ReplyJob.model_validate(j) for j in jobs.values())  # what the classifier reads


def test_replies_of_50000_cjk_characters_are_sent_when_the_queue_is_back(db, sqs, monkeypatch) -> None:
    """POST /replies allows 50,000 characters; escaped as JSON, 50,000 CJK characters are 300,012
    bytes, and four such replies are more than one SendMessageBatch takes."""
    outcome_id = register()
    configure(monkeypatch, REPLIES_QUEUE_URL=sqs["url"] + "-missing")  # the queue is unreachable
    texts = [chr(0x4E00 + i) * 50_000 for i in range(5)]
    for i, text in enumerate(texts):
        event = json.loads(json.dumps(load_event("replies_post.json")).replace(str(LEE), outcome_id))
        event["body"] = json.dumps({**json.loads(event["body"]), "external_id": f"li-{i}", "text": text})
        assert invoke("RepliesApiFunction", event, ROOT / "template.yaml")["statusCode"] == 202
    assert all(r["sent_at"] is None for r in outbox_rows(db).values())
    configure(monkeypatch, REPLIES_QUEUE_URL=sqs["url"])
    assert outbox.flush() == {"replies": 5, "events": 0}  # the sweep
    jobs = sorted(received(sqs["inner"], sqs["url"]), key=lambda j: j["reply_key"])
    assert [j["reply_key"] for j in jobs] == [f"api_linkedin:{outcome_id}:li-{i}" for i in range(5)]
    for job, text in zip(jobs, texts, strict=True):
        assert 40_000 < len(job["text"]) < 50_000 and text.startswith(job["text"])
        assert len(queue_client.encode(job)) <= outbox.MAX_REPLY_JOB_BYTES
    # the classifier takes the cut job (its reply was stored whole by the API)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    configure(monkeypatch, REPLIES_QUEUE_URL=sqs["url"], CLASSIFIER_BACKEND="offline")
    record = {**sqs_event(outcome_id)["Records"][0], "body": json.dumps(jobs[0]), "messageId": "m-1"}
    assert invoke("ClassifierFunction", {"Records": [record]}, ROOT / "template.yaml") == {"batchItemFailures": []}
    stored = db.execute(
        "SELECT data->>'text' AS text FROM outcome_events WHERE provider = 'api_linkedin' AND event_key = %s",
        (f"{outcome_id}:li-0",),
    ).fetchone()
    assert stored["text"] == texts[0]


def test_a_message_sqs_refuses_is_parked_after_its_refusals_and_the_others_go(db, sqs, monkeypatch) -> None:
    # a queue that takes 1 KiB a message: SQS (and moto) refuse the whole batch that holds a larger one
    sqs["inner"].set_queue_attributes(QueueUrl=sqs["url"], Attributes={"MaximumMessageSize": "1024"})
    published: list[float] = []
    monkeypatch.setattr(
        outbox.metrics,
        "add_metric",
        lambda name, unit, value: published.append(value) if name == "OutboxParked" else None,
    )
    queue_replies([reply("poison", "z" * 2000), *(reply(f"ok-{i}", f"fine {i}") for i in range(14))])
    for attempt in range(1, outbox.PARK_AFTER + 1):
        assert outbox.flush()["replies"] == (14 if attempt == 1 else 0)
        poison = outbox_rows(db)["poison"]
        assert poison["sent_at"] is None and poison["refusals"] == attempt
        assert "InvalidParameterValue" in poison["last_error"]
        assert (poison["parked_at"] is not None) == (attempt == outbox.PARK_AFTER)
    assert published == [1]
    assert len(received(sqs["inner"], sqs["url"])) == 14
    # parked: no longer claimed, while later messages go
    queue_replies([reply("later", "a later reply")])
    assert outbox.flush() == {"replies": 1, "events": 0}
    assert outbox_rows(db)["poison"]["refusals"] == outbox.PARK_AFTER
    with transaction() as conn:
        assert outbox_dal.pending_count(conn, "replies") == 0


def test_a_parked_message_keeps_its_alarm_until_it_is_sent(db, sqs, monkeypatch) -> None:
    """(An outside review's finding.) OutboxParked is counted once, by the invocation that parks,
    and a parked message is not stale: OutboxParkedAlarm recovered an hour later while the reply
    still waited for a person. The gauge OutboxParkedPending, published when a message is parked
    and by every hourly sweep, keeps it in ALARM (Maximum) until no parked message is unsent."""
    from flywheel.local.template import read_template

    alarm = read_template(ROOT / "template.yaml").body["Resources"]["OutboxParkedAlarm"]
    assert (alarm["Properties"]["MetricName"], alarm["Properties"]["Statistic"]) == ("OutboxParkedPending", "Maximum")
    assert alarm["Properties"]["TreatMissingData"] == "ignore"  # an hour without a sweep sends no OK
    sqs["inner"].set_queue_attributes(QueueUrl=sqs["url"], Attributes={"MaximumMessageSize": "1024"})
    published: list[tuple[str, float]] = []
    monkeypatch.setattr(outbox.metrics, "add_metric", lambda name, unit, value: published.append((name, value)))
    queue_replies([reply("poison", "z" * 2000)])
    for _ in range(outbox.PARK_AFTER):
        outbox.flush()
    assert outbox_rows(db)["poison"]["parked_at"] is not None
    assert published == [("OutboxParked", 1), ("OutboxParkedPending", 1)]  # the alarm at once
    sweep = {"id": "sweep", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    for _hour in range(2):  # the next hours' sweeps: still parked, still unsent, still alarming
        published.clear()
        assert invoke("MeetingsRefreshFunction", sweep, ROOT / "template.yaml")["outbox_parked"] == 1
        assert ("OutboxParkedPending", 1) in published and outbox_rows(db)["poison"]["sent_at"] is None
    # someone fixes the cause and clears parked_at: the sweep sends it and the gauge says 0 (OK)
    sqs["inner"].set_queue_attributes(QueueUrl=sqs["url"], Attributes={"MaximumMessageSize": "262144"})
    db.execute("UPDATE outbox SET parked_at = NULL, refusals = 0 WHERE dedupe_key = 'sendgrid_inbound:poison'")
    published.clear()
    assert invoke("MeetingsRefreshFunction", sweep, ROOT / "template.yaml")["outbox_parked"] == 0
    assert ("OutboxParkedPending", 0) in published and outbox_rows(db)["poison"]["sent_at"] is not None


def test_entries_sqs_fails_one_by_one_are_told_apart(db, sqs, monkeypatch) -> None:
    """SendMessageBatch answers 200 with some entries Failed: SenderFault says whose fault."""
    stubbed = boto3.client("sqs", region_name="us-east-1")
    stubber = Stubber(stubbed)
    stubber.add_response(
        "send_message_batch",
        {
            "Successful": [{"Id": "1", "MessageId": "m1", "MD5OfMessageBody": "x"}],
            "Failed": [
                {"Id": "0", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"},
                {"Id": "2", "SenderFault": False, "Code": "InternalError", "Message": "try later"},
            ],
        },
    )
    monkeypatch.setattr(queue_client, "client", lambda s: stubbed)
    queue_replies([reply("bad", "one"), reply("good", "two"), reply("unlucky", "three")])
    with stubber:
        assert outbox.flush() == {"replies": 1, "events": 0}
    stubber.assert_no_pending_responses()
    rows = outbox_rows(db)
    assert rows["good"]["sent_at"] is not None
    assert (rows["bad"]["refusals"], rows["bad"]["last_error"]) == (1, "InvalidMessageContents: bad")
    assert rows["unlucky"]["refusals"] == 0 and rows["unlucky"]["attempts"] == 1 and rows["unlucky"]["sent_at"] is None


def test_an_outage_parks_nothing(db, sqs, monkeypatch) -> None:
    queue_replies([reply("a", "one"), reply("b", "two")])
    configure(monkeypatch, REPLIES_QUEUE_URL=sqs["url"] + "-missing")  # QueueDoesNotExist: not the messages' fault
    for _ in range(outbox.PARK_AFTER + 2):
        assert outbox.flush() == {"replies": 0, "events": 0}
    rows = outbox_rows(db)
    assert all(r["refusals"] == 0 and r["parked_at"] is None and r["attempts"] == 5 for r in rows.values())
    configure(monkeypatch, REPLIES_QUEUE_URL=sqs["url"])
    assert outbox.flush() == {"replies": 2, "events": 0}


def test_concurrent_senders_send_each_message_once(db, sqs) -> None:
    """The request path and the sweep drain the outbox at the same time, in small batches."""
    sqs["client"].delay_s = 0.02
    n = 120
    queue_replies(
        [reply("big", "b" * 1_200_000), *(reply(f"r-{i}", f"reply {i} " + "w" * (i * 3000)) for i in range(n))]
    )
    close_connection()
    start, errors, totals = threading.Barrier(3), [], []

    def sender() -> None:
        try:
            start.wait()
            totals.append(outbox.flush(["replies"], batch=7)["replies"])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            close_connection()  # each thread has its own connection

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and sum(totals) == n + 1 and sum(t > 0 for t in totals) >= 2, totals
    keys = [j["reply_key"] for j in received(sqs["inner"], sqs["url"])]
    assert len(keys) == len(set(keys)) == n + 1
    rows = outbox_rows(db).values()
    assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in rows)


def test_messages_that_fail_through_no_fault_of_their_own_are_reported_when_stale(db, monkeypatch) -> None:
    """(An outside review's finding.) A message every send fails for a reason that is not its own
    (no queue configured here; an event bus that refuses the role in production) is never parked:
    the hourly sweep counts those pending over an hour (OutboxStale, OutboxStaleAlarm)."""
    from flywheel.local.invoke import invoke
    from tests.conftest import ROOT

    published: list[float] = []
    monkeypatch.setattr(
        outbox.metrics,
        "add_metric",
        lambda name, unit, value: published.append(value) if name == "OutboxStale" else None,
    )
    queue_replies([reply("old", "still waiting"), reply("new", "just arrived"), reply("sent", "gone")])
    db.execute("UPDATE outbox SET created_at = now() - interval '2 hours' WHERE dedupe_key <> 'sendgrid_inbound:new'")
    db.execute("UPDATE outbox SET sent_at = now() WHERE dedupe_key = 'sendgrid_inbound:sent'")
    assert outbox.report_stale() == 1 and published == [1]
    db.execute("UPDATE outbox SET parked_at = now() WHERE dedupe_key = 'sendgrid_inbound:old'")  # parked: its own alarm
    assert outbox.report_stale() == 0 and published == [1, 0]
    db.execute("UPDATE outbox SET parked_at = NULL WHERE dedupe_key = 'sendgrid_inbound:old'")
    event = {"id": "sweep", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert invoke("MeetingsRefreshFunction", event, ROOT / "template.yaml")["outbox_stale"] == 1

"""ClassifierFunction and the replies API, on real PostgreSQL, moto SQS/EventBridge and a fake OpenAI."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx2
import pytest
from moto import mock_aws

from flywheel.clients import llm
from flywheel.clients.aws import reset_clients
from flywheel.local.invoke import invoke
from flywheel.local.seed import DANA, LEE
from tests.conftest import ROOT, count, load_event
from tests.webhook_helpers import configure


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, db_url: str):
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        sqs = boto3.client("sqs", region_name="us-east-1")
        replies = sqs.create_queue(QueueName="replies")["QueueUrl"]
        # a rule that copies ReplyNeedsAttention events to a queue we can read
        attention = sqs.create_queue(QueueName="attention")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=attention, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="attention", EventPattern=json.dumps({"detail-type": ["ReplyNeedsAttention"]}))
        events.put_targets(Rule="attention", Targets=[{"Id": "q", "Arn": arn}])
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        configure(monkeypatch, REPLIES_QUEUE_URL=replies, CLASSIFIER_MAX_RETRIES="1")
        yield {"replies": replies, "attention": attention}
        reset_clients()


def drain(url: str) -> list[Any]:
    out = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return out.get("Messages", [])


def register() -> str:
    result = invoke("MessagesFunction", load_event("messages_register_single.json"), ROOT / "template.yaml")
    return json.loads(result["body"])["outcomes"][0]["outcome_id"]


def sqs_event(outcome_id: str, text: str | None = None) -> dict[str, Any]:
    event = json.loads(json.dumps(load_event("classifier_replies_batch.json")).replace(str(DANA), outcome_id))
    if text is not None:
        body = json.loads(event["Records"][0]["body"])
        body["text"] = text
        event["Records"][0]["body"] = json.dumps(body)
    return event


def outcome(db, outcome_id: str) -> dict:
    return db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def classify(outcome_id: str, text: str | None = None) -> dict[str, Any]:
    return invoke("ClassifierFunction", sqs_event(outcome_id, text), ROOT / "template.yaml")


def test_offline_classification_updates_the_outcome_and_fails_only_the_bad_record(db, aws) -> None:
    outcome_id = register()
    result = classify(outcome_id)
    assert result == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}
    row = outcome(db, outcome_id)
    assert row["reply_category"] == "meeting_request" and row["reply_classification_source"] == "fallback"
    assert row["reply_sentiment_score"] > 0 and row["reply_interest_level"] == "high"
    # the job alone is enough: its reply is stored with it when no webhook stored it first
    assert (row["training_label"], row["training_weight"], row["stage"]) == ("positive", 3.0, "replied")
    [message] = drain(aws["attention"])
    detail = json.loads(message["Body"])["detail"]
    assert detail["category"] == "meeting_request" and detail["outcome_id"] == outcome_id


def test_a_batch_that_fails_whole_fails_the_invocation_and_logs_no_reply_text(db, aws) -> None:
    # Lambda redelivers the whole batch when the invocation fails; the function's error alarm sees it
    import io
    import logging

    from flywheel.batch import BatchFailed
    from flywheel.observability import logger

    outcome_id = register()
    event = sqs_event(outcome_id)
    body = json.loads(event["Records"][0]["body"])
    body["text"] = ""  # invalid: min_length 1
    body["subject"] = "Re: the secret subject line"
    event["Records"][0]["body"] = json.dumps(body)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)  # the Powertools logger's own handler writes to the real stdout
    try:
        with pytest.raises(BatchFailed, match="all 2 records failed"):
            invoke("ClassifierFunction", event, ROOT / "template.yaml")
    finally:
        logger._logger.removeHandler(handler)
    assert outcome(db, outcome_id)["reply_category"] is None
    logged = buffer.getvalue()
    assert logged.count("record failed; it will be redelivered") == 2
    assert "ValidationError: 1 error(s) in text" in logged and "secret subject line" not in logged


def test_a_redelivered_message_stores_one_classification(db, aws, monkeypatch) -> None:
    from flywheel.services import classification

    counted: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(classification, "count", lambda name, value=1, **dims: counted.append((name, dims)))
    outcome_id = register()
    classify(outcome_id)
    classify(outcome_id)  # SQS is at-least-once: the same batch again
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE provider = 'classifier'").fetchone()["n"] == 1
    # ... and it is counted once: the dashboard's replies per category and the fallback-share alarm
    # (ReplyClassifiedBySource) see the classifications stored, not the deliveries
    assert counted == [
        ("ReplyClassified", {"category": "meeting_request", "source": "fallback"}),
        ("ReplyClassifiedBySource", {"source": "fallback"}),
    ]


def test_reply_and_classification_give_the_label(db, aws) -> None:
    outcome_id = register()
    status = invoke(
        "RepliesApiFunction",
        json.loads(json.dumps(load_event("replies_post.json")).replace(str(LEE), outcome_id)),
        ROOT / "template.yaml",
    )
    assert status["statusCode"] == 202
    [queued] = drain(aws["replies"])
    job = json.loads(queued["Body"])
    assert job["reply_key"] == f"api_linkedin:{outcome_id}:li-msg-88121"
    record = {**sqs_event(outcome_id)["Records"][0], "body": queued["Body"], "messageId": queued["MessageId"]}
    assert invoke("ClassifierFunction", {"Records": [record]}, ROOT / "template.yaml") == {"batchItemFailures": []}
    row = outcome(db, outcome_id)
    assert (row["reply_category"], row["reply_objection_type"]) == ("objection", "competitor")
    assert (row["training_label"], row["training_weight"], row["stage"]) == ("negative", 2.0, "replied")
    assert drain(aws["attention"]) == []


def test_unsubscribe_is_suppressed_and_listed(db, aws) -> None:
    outcome_id = register()
    classify(outcome_id, "Please remove me from your list.")
    result = invoke("RepliesApiFunction", load_event("suppressions_get.json"), ROOT / "template.yaml")
    body = json.loads(result["body"])
    assert result["statusCode"] == 200 and body["count"] == 1
    assert body["suppressions"][0]["email"] == "dana.reyes@northwind.example"
    assert body["suppressions"][0]["reason"] == "reply_unsubscribe"


# What strict structured output accepts (platform.openai.com/docs/guides/structured-outputs,
# "Supported schemas"): every object closed (additionalProperties false) with every property
# required, and only these keywords; OpenAI answers anything else with a 400.
OPENAI_STRICT_KEYWORDS = {
    *("type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$defs", "$ref"),
    *("description", "title", "pattern", "format", "multipleOf", "minimum", "maximum", "exclusiveMinimum"),
    *("exclusiveMaximum", "minItems", "maxItems"),
}


def strict_schema_problem(response_format: dict[str, Any]) -> str | None:
    if response_format.get("type") != "json_schema" or not response_format["json_schema"].get("strict"):
        return None

    def check(node: Any, where: tuple[str, ...]) -> str | None:
        if isinstance(node, list):
            return next((p for i, sub in enumerate(node) if (p := check(sub, (*where, str(i))))), None)
        if not isinstance(node, dict):
            return None
        if unknown := sorted(set(node) - OPENAI_STRICT_KEYWORDS):
            return f"In context={where}, '{unknown[0]}' is not permitted."
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                return f"In context={where}, 'additionalProperties' is required to be supplied and to be false."
            if set(node.get("required", [])) != set(node.get("properties", {})):
                return f"In context={where}, 'required' is required to be supplied and to be an array including every key in properties."
        for key, sub in node.items():
            subs = sub.items() if key in ("properties", "$defs") else [(None, sub)]
            for name, value in subs:
                if problem := check(value, (*where, key, *([name] if name else []))):
                    return problem
        return None

    return check(response_format["json_schema"]["schema"], ())


def openai_error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None, headers: Any = None
) -> httpx2.Response:
    return httpx2.Response(
        status, headers=headers or {}, json={"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


class FakeOpenAI:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if refused := strict_schema_problem(body.get("response_format") or {}):
            return httpx2.Response(
                400,
                json={
                    "error": {
                        "message": f"Invalid schema for response_format '{llm.TOOL_NAME}': {refused}",
                        "type": "invalid_request_error",
                        "param": "response_format",
                        "code": None,
                    }
                },
            )
        # errors as OpenAI sends them: {"error": {"message", "type", "param", "code"}}
        if self.mode == "down":
            return openai_error(500, "The server had an error while processing your request.", "server_error", None)
        if self.mode == "quota":  # the account's credits or spend limit are used up: no retry clears it
            return openai_error(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more information "
                "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if self.mode == "rate_limited":  # clears within seconds: the SDK retries it (at once here)
            return openai_error(
                429,
                "Rate limit reached for gpt-4o-mini in organization org-1 on requests per min (RPM): Limit 3, "
                "Used 3, Requested 1. Please try again in 20s.",
                "requests",
                "rate_limit_exceeded",
                headers={"retry-after-ms": "1"},
            )
        content = {
            "category": "interested",
            "sentiment_score": 0.7,
            "interest_level": "high",
            "objection_type": "none",
            "referral_contact": None,
            "return_date": None,
            "confidence": 0.93,
            "reason": "asks to see numbers",
        }
        if self.mode == "invalid":
            content["category"] = "enthusiastic"
        if self.mode == "long_reason":  # strict mode does not enforce maxLength on strings
            content["reason"] = "The lead asks for numbers, which " * 30
        return httpx2.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": json.dumps(content), "refusal": None},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            },
        )


@pytest.mark.parametrize(
    ("mode", "source", "category"),
    [
        ("ok", "llm", "interested"),
        ("down", "fallback", "meeting_request"),
        ("invalid", "fallback", "meeting_request"),
        ("long_reason", "llm", "interested"),
        ("rate_limited", "fallback", "meeting_request"),
        ("quota", "fallback", "meeting_request"),
    ],
)
def test_llm_path_and_its_fallbacks(db, aws, monkeypatch, mode: str, source: str, category: str) -> None:
    fake = FakeOpenAI(mode)
    monkeypatch.setattr(llm, "TRANSPORT", httpx2.MockTransport(fake))
    configure(
        monkeypatch,
        REPLIES_QUEUE_URL=aws["replies"],
        CLASSIFIER_MAX_RETRIES="1",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL="http://fake-openai.local/v1",
        CLASSIFIER_MODEL="gpt-4o-mini-2024-07-18",
    )
    outcome_id = register()
    classify(outcome_id)
    row = outcome(db, outcome_id)
    assert (row["reply_classification_source"], row["reply_category"]) == (source, category)
    request = fake.requests[0]
    assert request["model"] == "gpt-4o-mini-2024-07-18"
    assert request["response_format"]["type"] == "json_schema" and request["response_format"]["json_schema"]["strict"]
    prompt = request["messages"][1]["content"]
    assert "closing the books" in prompt and "fintech" in prompt and "Tuesday at 2pm" in prompt
    # one retry on a 5xx or a rate limit, then the rules; an exhausted quota is not retried (no retry
    # clears it): the reply falls back at once, as for any provider failure
    assert len(fake.requests) == (2 if mode in ("down", "rate_limited") else 1)


def test_post_reply_validation(db, aws) -> None:
    event = load_event("replies_post.json")
    unknown = json.loads(json.dumps(event).replace(str(LEE), str(DANA)))
    assert invoke("RepliesApiFunction", unknown, ROOT / "template.yaml")["statusCode"] == 404
    bad = json.loads(json.dumps(event).replace(str(LEE), "nope"))
    result = invoke("RepliesApiFunction", bad, ROOT / "template.yaml")
    assert result["statusCode"] == 422 and json.loads(result["body"])["fields"][0]["field"] == "outcome_id"
    assert count(db, "outcome_events") == 0 and drain(aws["replies"]) == []


LEAP_REPLY = "I am out of the office until 29 February with limited access to email."


def batch_with(outcome_id: str, *extra: tuple[str, str, str]) -> dict[str, Any]:
    """The sample batch (a good reply, a malformed body) plus one record per (message id, reply key, text)."""
    event = sqs_event(outcome_id)
    template = event["Records"][0]
    for message_id, reply_key, text in extra:
        body = {"outcome_id": outcome_id, "reply_key": reply_key, "text": text, "received_at": "2024-03-05T10:00:00Z"}
        event["Records"].append({**template, "messageId": message_id, "body": json.dumps(body)})
    return event


def classified(db, outcome_id: str) -> dict[str, dict]:
    rows = db.execute(
        "SELECT event_key, payload FROM outcome_events WHERE provider = 'classifier' AND outcome_id = %s",
        (outcome_id,),
    ).fetchall()
    return {r["event_key"]: r["payload"] for r in rows}


def test_the_leap_day_out_of_office_is_classified_with_the_batch(db, aws) -> None:
    # the review's batch: a good reply, a malformed body, and an out-of-office naming 29 February
    # sent on 5 March 2024 (it raised ValueError and failed the whole invocation)
    outcome_id = register()
    event = batch_with(outcome_id, ("leap-1", "api_linkedin:leap-1", LEAP_REPLY))
    result = invoke("ClassifierFunction", event, ROOT / "template.yaml")
    assert result == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}
    assert outcome(db, outcome_id)["reply_category"] == "meeting_request"
    leap = classified(db, outcome_id)["api_linkedin:leap-1"]
    assert (leap["category"], leap["return_date"]) == ("out_of_office", "2024-02-29")


def test_a_record_whose_classification_raises_fails_alone(db, aws, monkeypatch) -> None:
    # whatever one reply's classification raises (here a planted bug in the offline rules), that
    # record alone is reported for redelivery; the others are classified side by side and stored
    from flywheel.domain import reply_rules

    real = reply_rules.classify_offline

    def flaky(text: str, today: Any, model: Any = None) -> Any:
        if "PLANTED" in text:
            raise ValueError("day is out of range for month")
        return real(text, today, model)

    monkeypatch.setattr(reply_rules, "classify_offline", flaky)
    outcome_id = register()
    event = batch_with(
        outcome_id,
        ("bad-1", "api_linkedin:bad-1", "PLANTED: I am away until 29 February"),
        ("good-2", "api_linkedin:good-2", "Please remove me from your list."),
    )
    result = invoke("ClassifierFunction", event, ROOT / "template.yaml")
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == [
        "2e1424d4-f796-459a-8184-9c92662be6da",
        "bad-1",
    ]
    stored = classified(db, outcome_id)
    assert set(stored) == {"sendgrid_inbound:caf=dana.reply.1@mail.northwind.example", "api_linkedin:good-2"}
    assert stored["api_linkedin:good-2"]["category"] == "unsubscribe"
    # redelivered once the bug is gone, the failed record is classified like the others
    monkeypatch.setattr(reply_rules, "classify_offline", real)
    retry = {"Records": [r for r in event["Records"] if r["messageId"] == "bad-1"]}
    assert invoke("ClassifierFunction", retry, ROOT / "template.yaml") == {"batchItemFailures": []}
    assert "api_linkedin:bad-1" in classified(db, outcome_id)


def test_a_database_outage_before_classifying_fails_the_whole_batch(db, aws, monkeypatch) -> None:
    # what every record needs (the replies' contexts) is unavailable: the invocation fails and SQS
    # redelivers the whole batch, as it did before records were isolated
    from flywheel.dal import outcomes as outcomes_dal
    from flywheel.errors import DependencyUnavailable

    def down(*_: Any) -> Any:
        raise DependencyUnavailable("database unavailable")

    outcome_id = register()
    monkeypatch.setattr(outcomes_dal, "reply_contexts", down)
    with pytest.raises(DependencyUnavailable):
        invoke("ClassifierFunction", sqs_event(outcome_id), ROOT / "template.yaml")
    assert classified(db, outcome_id) == {} and outcome(db, outcome_id)["reply_category"] is None


def test_a_lead_who_refuses_email_and_asks_for_a_call_is_called_and_not_emailed_again(db, aws) -> None:
    """ "Don't email me, call me" is a request to be called (the category, and the alert to a rep)
    and a refusal of e-mail, which is honoured: the lead's address is suppressed (before, only the
    category was kept, and the sender went on e-mailing someone who asked it to stop)."""
    outcome_id = register()
    classify(outcome_id, "Please stop emailing me. Just call me on Tuesday instead.")
    row = outcome(db, outcome_id)
    assert row["reply_category"] == "meeting_request"
    [suppression] = db.execute("SELECT email, reason FROM suppressions").fetchall()
    assert (suppression["email"], suppression["reason"]) == ("dana.reyes@northwind.example", "reply_email_opt_out")
    assert len(drain(aws["attention"])) == 1  # a rep is told to call


def test_a_request_to_be_called_alone_suppresses_nothing(db, aws) -> None:
    outcome_id = register()
    classify(outcome_id, "Sounds good, please call me on Tuesday.")
    assert outcome(db, outcome_id)["reply_category"] == "meeting_request"
    assert db.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 0

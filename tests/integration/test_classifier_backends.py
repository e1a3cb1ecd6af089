"""The LLM backends chosen by configuration, each with the same validation and fallback:
Amazon Bedrock Converse (botocore Stubber, which checks every request and response against the
real bedrock-runtime service model; moto has no Converse) and any OpenAI-compatible endpoint."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import boto3
import httpx2
import pytest
from botocore.stub import ANY, Stubber

from flywheel.clients import llm
from flywheel.clients.llm import TOOL_NAME, BedrockReplyClassifier, LlmUnavailable
from flywheel.errors import DependencyUnavailable
from tests.integration.test_classifier import FakeOpenAI, aws, classify, outcome, register  # noqa: F401
from tests.webhook_helpers import configure

ANSWER = {
    "category": "interested",
    "sentiment_score": 0.7,
    "interest_level": "high",
    "objection_type": "none",
    "referral_contact": None,
    "return_date": None,
    "confidence": 0.93,
    "reason": "asks to see numbers",
}
MODEL = "us.amazon.nova-lite-v1:0"


def converse_response(content: list[dict[str, Any]], stop: str = "tool_use") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 812, "outputTokens": 64, "totalTokens": 876},
        "metrics": {"latencyMs": 640},
    }


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch):
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        monkeypatch.setattr(llm, "BEDROCK_CLIENT", client)
        yield stubber


def expected_request() -> dict[str, Any]:
    return {
        "modelId": MODEL,
        "system": ANY,
        "messages": ANY,
        "inferenceConfig": {"temperature": 0, "maxTokens": 1024},
        "toolConfig": {
            "tools": [{"toolSpec": {"name": TOOL_NAME, "description": ANY, "inputSchema": ANY}}],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        },
    }


@pytest.mark.parametrize(
    ("answer", "source", "category"),
    [
        ([{"toolUse": {"toolUseId": "tooluse_1", "name": TOOL_NAME, "input": ANSWER}}], "llm", "interested"),
        (
            [{"toolUse": {"toolUseId": "tooluse_1", "name": TOOL_NAME, "input": {**ANSWER, "category": "keen"}}}],
            "fallback",
            "meeting_request",
        ),  # does not validate
        ([{"text": "I think they are interested."}], "fallback", "meeting_request"),  # no tool use
        (None, "fallback", "meeting_request"),  # the service refuses (throttled after botocore's retries)
    ],
)
def test_bedrock_converse_and_its_fallbacks(
    db,
    aws,  # noqa: F811
    bedrock,
    monkeypatch,
    answer,
    source: str,  # noqa: F811
    category: str,
) -> None:
    configure(monkeypatch, REPLIES_QUEUE_URL=aws["replies"], CLASSIFIER_BACKEND="bedrock", CLASSIFIER_MODEL=MODEL)
    if answer is None:
        bedrock.add_client_error(
            "converse",
            service_error_code="ThrottlingException",
            http_status_code=429,
            expected_params=expected_request(),
        )
    else:
        bedrock.add_response(
            "converse",
            converse_response(answer, "tool_use" if "toolUse" in answer[0] else "end_turn"),
            expected_request(),
        )
    outcome_id = register()
    classify(outcome_id)
    row = outcome(db, outcome_id)
    assert (row["reply_classification_source"], row["reply_category"]) == (source, category)
    bedrock.assert_no_pending_responses()


def test_bedrock_request_carries_the_schema_and_the_context(bedrock) -> None:
    captured: dict[str, Any] = {}

    def capture(**kwargs: Any) -> None:
        captured.update(kwargs)

    bedrock.client.meta.events.register(
        "provide-client-params.bedrock-runtime.Converse", lambda params, **_: capture(**params)
    )
    bedrock.add_response(
        "converse",
        converse_response([{"toolUse": {"toolUseId": "t", "name": TOOL_NAME, "input": ANSWER}}]),
        expected_request(),
    )
    result = BedrockReplyClassifier(MODEL).classify("Send me numbers", {"message": {"subject": "Idea"}, "lead": {}})
    assert result.category == "interested"
    schema = captured["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert schema["properties"]["category"]["enum"][0] == "interested" and "reason" in schema["required"]
    assert json.loads(captured["messages"][0]["content"][0]["text"])["original_message"] == {"subject": "Idea"}


def test_bedrock_client_retries_and_times_out_as_configured(monkeypatch) -> None:
    monkeypatch.setattr(llm, "BEDROCK_CLIENT", None)
    classifier = BedrockReplyClassifier(MODEL, timeout_s=7, max_retries=2, region="us-west-2")
    config = classifier._client.meta.config
    assert (config.retries["total_max_attempts"], config.retries["mode"], config.read_timeout) == (3, "standard", 7)
    assert classifier._client.meta.region_name == "us-west-2"


@pytest.mark.parametrize(
    ("content", "stop", "category"),
    [
        # Nova thinks aloud in a text block before the tool use; Claude writes long reasons
        (
            [
                {"text": "<thinking>They ask for numbers.</thinking>"},
                {"toolUse": {"toolUseId": "t", "name": TOOL_NAME, "input": {**ANSWER, "reason": "numbers " * 100}}},
            ],
            "tool_use",
            "interested",
        ),
        (
            [
                {
                    "toolUse": {
                        "toolUseId": "t",
                        "name": TOOL_NAME,
                        "input": {"category": "interested", "sentiment_score": 0.7},
                    }
                }
            ],
            "max_tokens",
            None,
        ),  # cut off mid-answer
        ([{"text": "Sorry, the model cannot answer this question."}], "guardrail_intervened", None),
        ([{"toolUse": {"toolUseId": "t", "name": "another_tool", "input": ANSWER}}], "tool_use", None),
    ],
)
def test_bedrock_stop_reasons(bedrock, content: list, stop: str, category: str | None) -> None:
    bedrock.add_response("converse", converse_response(content, stop), expected_request())
    if category is None:
        with pytest.raises(LlmUnavailable, match=stop if stop != "tool_use" else TOOL_NAME):
            BedrockReplyClassifier(MODEL).classify("Send me numbers", {})
        return
    result = BedrockReplyClassifier(MODEL).classify("Send me numbers", {})
    assert result.category == category and len(result.reason) == 300


def test_a_schema_violation_is_unavailable_not_an_exception(bedrock) -> None:
    bedrock.add_response(
        "converse",
        converse_response([{"toolUse": {"toolUseId": "t", "name": TOOL_NAME, "input": {"category": "interested"}}}]),
        expected_request(),
    )
    with pytest.raises(LlmUnavailable):
        BedrockReplyClassifier(MODEL).classify("hi", {})


class FencedJsonObject(FakeOpenAI):
    """A compatible server without structured outputs: JSON mode, the answer wrapped in a code fence."""

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return httpx2.Response(
            200,
            json={
                "id": "c-1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "```json\n" + json.dumps(ANSWER) + "\n```"},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.mark.parametrize("json_mode", ["json_schema", "json_object"])
def test_openai_compatible_endpoint(db, aws, monkeypatch, json_mode: str) -> None:  # noqa: F811
    fake = FencedJsonObject() if json_mode == "json_object" else FakeOpenAI()
    monkeypatch.setattr(llm, "TRANSPORT", httpx2.MockTransport(fake))
    configure(
        monkeypatch,
        REPLIES_QUEUE_URL=aws["replies"],
        CLASSIFIER_BACKEND="openai_compatible",
        CLASSIFIER_BASE_URL="http://llm.internal.example/v1",
        CLASSIFIER_MODEL="qwen2.5-7b-instruct",
        CLASSIFIER_JSON_MODE=json_mode,
        CLASSIFIER_MAX_RETRIES="0",
    )
    outcome_id = register()
    classify(outcome_id)
    row = outcome(db, outcome_id)
    assert (row["reply_classification_source"], row["reply_category"]) == ("llm", "interested")
    [request] = fake.requests
    assert request["model"] == "qwen2.5-7b-instruct"
    if json_mode == "json_object":
        assert request["response_format"] == {"type": "json_object"} and '"enum"' in request["messages"][0]["content"]
    else:
        assert request["response_format"]["type"] == "json_schema"


def test_openai_compatible_without_a_url_is_a_configuration_error(db, aws, monkeypatch) -> None:  # noqa: F811
    configure(monkeypatch, REPLIES_QUEUE_URL=aws["replies"], CLASSIFIER_BACKEND="openai_compatible")
    outcome_id = register()
    with pytest.raises(DependencyUnavailable, match="CLASSIFIER_BASE_URL"):  # the whole batch goes back to SQS
        classify(outcome_id)
    assert outcome(db, outcome_id)["reply_category"] is None


# What a lead wrote, and what an answer or an error can copy out of it: none of it may reach a log
# line (CloudWatch keeps them for LogRetentionDays), whatever way the LLM fails.
REFERRAL = "Not me - talk to Jane Roe (jane.roe@acme-corp.example, +1 415 555 0199), she owns the budget."
COPIED = ("Jane Roe", "jane.roe@acme-corp.example", "555 0199", "she owns the budget")


def _chat_completion(message: dict[str, Any], finish: str = "stop") -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "c-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", **message}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def _openai(response: httpx2.Response) -> llm.OpenAIReplyClassifier:
    llm.TRANSPORT = httpx2.MockTransport(lambda request: response)
    return llm.OpenAIReplyClassifier("sk-test", "gpt-4o-mini", max_retries=0)


def _bedrock(bedrock: Stubber, content: list[dict[str, Any]] | None = None, error: str | None = None) -> Any:
    if error is not None:
        bedrock.add_client_error(
            "converse", service_error_code=error, service_message=f"Malformed input: {REFERRAL}", http_status_code=400
        )
    else:
        bedrock.add_response("converse", converse_response(content or []))
    return BedrockReplyClassifier(MODEL)


CONTACT = {"name": "Jane Roe", "email": "jane.roe@acme-corp.example", "phone": "+1 415 555 0199"}
FAILURES: dict[str, Any] = {
    # pydantic's message quotes each offending input_value
    "bedrock answer with a contact object": (
        lambda stub: _bedrock(
            stub, [{"toolUse": {"toolUseId": "t", "name": TOOL_NAME, "input": {**ANSWER, "referral_contact": CONTACT}}}]
        ),
        "answer did not validate: referral_contact: string_type",
    ),
    "bedrock answer with an invented field": (
        lambda stub: _bedrock(
            stub,
            [{"toolUse": {"toolUseId": "t", "name": TOOL_NAME, "input": {**ANSWER, "Jane Roe": "+1 415 555 0199"}}}],
        ),
        "answer did not validate: (extra field): extra_forbidden",
    ),
    "bedrock error quoting the request": (
        lambda stub: _bedrock(stub, error="ValidationException"),
        "ValidationException (status 400)",
    ),
    "openai error quoting the request": (
        lambda stub: _openai(
            httpx2.Response(
                400,
                json={"error": {"message": f"Bad content: {REFERRAL}", "type": "invalid_request_error", "code": None}},
            )
        ),
        "BadRequestError (status 400)",
    ),
    "openai refusal quoting the reply": (
        lambda stub: _openai(_chat_completion({"content": None, "refusal": f"I won't share {REFERRAL}"})),
        "no answer (finish_reason 'stop', refusal True)",
    ),
    "openai answer that is not JSON": (
        lambda stub: _openai(_chat_completion({"content": f"Referral: {REFERRAL}"})),
        "answer is not JSON (JSONDecodeError at char 0)",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_llm_answer_is_logged_by_field_and_type_never_by_value(bedrock, monkeypatch, failure: str) -> None:
    from datetime import date

    from flywheel.observability import logger
    from flywheel.services.classification import classify_text

    monkeypatch.setattr(llm, "TRANSPORT", None)  # restored after the test (_openai sets it)
    make, expected = FAILURES[failure]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)  # the Powertools logger's own handler writes to the real stdout
    try:
        result = classify_text(make(bedrock), REFERRAL, {}, date(2026, 1, 5))
    finally:
        logger._logger.removeHandler(handler)
    assert result.source == "fallback"
    [line] = [json.loads(text) for text in stream.getvalue().splitlines() if text.strip()]
    assert line["message"] == "LLM classification failed; using the offline classifier"
    assert line["error"] == expected
    assert not [value for value in COPIED if value in stream.getvalue()]

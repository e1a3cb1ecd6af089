"""LLM reply classifiers: OpenAI, any OpenAI-compatible endpoint, and Amazon Bedrock (Converse).

Every backend gets the same prompt, returns the same `LlmClassification` (validated by the same
pydantic model), retries transient failures inside its SDK with the configured number of attempts
and timeout, and raises `LlmUnavailable` for anything else, so the caller falls back to the offline
classifier in one place.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from flywheel.models.classification import LlmClassification

if TYPE_CHECKING:
    import httpx2

# Tests point the SDK at a fake provider through this transport; production uses the default.
TRANSPORT: httpx2.BaseTransport | None = None
# Tests put a botocore Stubber-wrapped bedrock-runtime client here; production builds its own.
BEDROCK_CLIENT: Any = None

SYSTEM_PROMPT = (
    "You classify replies to outbound sales emails. Read the original message, the lead's context and "
    "the reply, then fill every field. category: interested (wants to know more), meeting_request (asks "
    "for or accepts a meeting), question (asks about the offering), not_now (later, timing), objection "
    "(a reason against: price, competitor, authority, no_need), not_interested (declines), unsubscribe "
    "(asks to stop or be removed; this wins over any other intent in the same reply), out_of_office, "
    "wrong_person, referral (points to someone else), auto_reply (automated, not out-of-office), other. "
    "sentiment_score in [-1, 1]. referral_contact and return_date only when present. One short line of reason."
)
TOOL_NAME = "record_classification"
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


class LlmUnavailable(Exception):
    """The provider failed after the SDK's retries, or its answer did not validate."""


class ReplyClassifier(Protocol):
    model: str

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification: ...


def user_message(reply: str, context: dict[str, Any]) -> str:
    return json.dumps({"original_message": context.get("message"), "lead": context.get("lead"), "reply": reply},
                      default=str, ensure_ascii=False)


def answer_schema() -> dict[str, Any]:
    return LlmClassification.model_json_schema()


def validated(answer: Any) -> LlmClassification:
    """The one validation every backend's answer goes through (a JSON string or a decoded object)."""
    try:
        if isinstance(answer, str):
            return LlmClassification.model_validate_json(_FENCE.sub("", answer))
        return LlmClassification.model_validate(answer)
    except (ValidationError, ValueError) as exc:
        raise LlmUnavailable(f"answer did not validate: {exc}") from exc


class OpenAIReplyClassifier:
    """OpenAI, or any endpoint that speaks its chat completions API (vLLM, Ollama, LiteLLM, Azure ...).

    `json_mode="json_schema"` asks for strict structured output; `"json_object"` is for compatible
    servers without it: the schema goes into the prompt and the answer is validated the same way."""

    def __init__(self, api_key: str, model: str, *, base_url: str | None = None, timeout_s: float = 20,
                 max_retries: int = 3, json_mode: str = "json_schema") -> None:
        # the SDK is imported here, not with the module: POST /replies and the offline path never need it
        import httpx2
        import openai

        self.model, self.json_mode = model, json_mode
        # the SDK retries 408/409/429/5xx and connection errors with exponential backoff and jitter
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries,
            http_client=httpx2.Client(transport=TRANSPORT, timeout=timeout_s) if TRANSPORT else None,
        )

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification:
        import openai

        system = SYSTEM_PROMPT
        if self.json_mode == "json_object":
            system += " Answer with one JSON object that matches this JSON schema: " + json.dumps(answer_schema())
        messages: Any = [{"role": "system", "content": system},
                         {"role": "user", "content": user_message(reply, context)}]
        try:
            if self.json_mode == "json_object":
                completion: Any = self._client.chat.completions.create(
                    model=self.model, temperature=0, messages=messages, response_format={"type": "json_object"})
            else:
                completion = self._client.chat.completions.parse(
                    model=self.model, temperature=0, messages=messages, response_format=LlmClassification)
        except (openai.OpenAIError, ValueError) as exc:  # API errors, refusals, length, invalid JSON
            raise LlmUnavailable(f"{type(exc).__name__}: {exc}") from exc
        message = completion.choices[0].message
        parsed = getattr(message, "parsed", None)
        if parsed is not None:
            return validated(parsed.model_dump())
        if not message.content:
            raise LlmUnavailable(f"no answer (refusal: {getattr(message, 'refusal', None)!r})")
        return validated(message.content)


class BedrockReplyClassifier:
    """Amazon Bedrock through the Converse API; the answer is forced through a tool whose input
    schema is the classification's JSON schema (works with Nova and Claude models, and with the ARN
    of an inference profile or a custom model deployment)."""

    def __init__(self, model_id: str, *, timeout_s: float = 20, max_retries: int = 3,
                 region: str | None = None) -> None:
        self.model = model_id
        self._client = BEDROCK_CLIENT or _bedrock_client(timeout_s, max_retries, region)

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.converse(
                modelId=self.model,
                system=[{"text": SYSTEM_PROMPT}],
                messages=[{"role": "user", "content": [{"text": user_message(reply, context)}]}],
                inferenceConfig={"temperature": 0, "maxTokens": 1024},
                toolConfig={
                    "tools": [{"toolSpec": {"name": TOOL_NAME, "description": "Record the reply's classification.",
                                            "inputSchema": {"json": answer_schema()}}}],
                    "toolChoice": {"tool": {"name": TOOL_NAME}},
                },
            )
        except (ClientError, BotoCoreError) as exc:  # throttling and 5xx were retried by botocore already
            raise LlmUnavailable(f"{type(exc).__name__}: {exc}") from exc
        for block in response.get("output", {}).get("message", {}).get("content", []):
            use = block.get("toolUse")
            if use and use.get("name") == TOOL_NAME:
                return validated(use.get("input"))
        raise LlmUnavailable(f"no {TOOL_NAME} tool use in the answer (stopReason {response.get('stopReason')!r})")


def _bedrock_client(timeout_s: float, max_retries: int, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # botocore's max_attempts counts retries (total_max_attempts = max_attempts + 1), like the OpenAI SDK's
    config = Config(retries={"mode": "standard", "max_attempts": max_retries}, connect_timeout=5,
                    read_timeout=timeout_s)
    return boto3.client("bedrock-runtime", region_name=region, config=config)  # type: ignore[call-overload]

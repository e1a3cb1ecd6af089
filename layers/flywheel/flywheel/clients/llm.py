"""LLM reply classifiers: OpenAI, any OpenAI-compatible endpoint, and Amazon Bedrock (Converse).

Every backend gets the same prompt, returns the same `LlmClassification` (validated by the same
pydantic model), retries transient failures inside its SDK with the configured number of attempts
and timeout, and raises `LlmUnavailable` for anything else, so the caller falls back to the offline
classifier in one place.
"""

from __future__ import annotations

import functools
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
REASON_MAX = LlmClassification.model_fields["reason"].metadata[0].max_length
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


class LlmUnavailable(Exception):
    """The provider failed after the SDK's retries, or its answer did not validate.

    Its message is logged (and may be stored): it names fields, error types, status codes and
    error codes, never a value. Pydantic's message quotes each offending input (what the model
    copied out of the reply: a referral's e-mail and phone), a provider's error message or a
    model's refusal may quote the prompt, so none of them is put into it, nor chained (`from None`:
    a logged traceback would print the cause's message)."""


class LlmQuotaExhausted(LlmUnavailable):
    """OpenAI's 429 `insufficient_quota`: the account's credits or spend limit are used up. Not
    retried (no retry clears it); the reply falls back like any other failure."""


class ReplyClassifier(Protocol):
    model: str

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification: ...


def user_message(reply: str, context: dict[str, Any]) -> str:
    return json.dumps(
        {"original_message": context.get("message"), "lead": context.get("lead"), "reply": reply},
        default=str,
        ensure_ascii=False,
    )


# The keywords OpenAI's strict structured output accepts (platform.openai.com/docs/guides/
# structured-outputs, "Supported schemas": strings pattern and format, numbers multipleOf and the
# bounds, arrays minItems and maxItems; the structure and annotations). Another one (the reason's
# maxLength) refuses the request with a 400, so it is left out: `validated` shortens the reason.
STRICT_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$defs", "$ref"}
    | {"description", "title", "pattern", "format", "multipleOf", "minimum", "maximum", "exclusiveMinimum"}
    | {"exclusiveMaximum", "minItems", "maxItems"}
)


def _strict(schema: Any, keyword: str = "") -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if keyword in ("properties", "$defs"):  # names, not keywords
        return {name: _strict(sub) for name, sub in schema.items()}
    return {k: _strict(v, k) for k, v in schema.items() if k in STRICT_KEYWORDS}


@functools.cache
def answer_schema() -> dict[str, Any]:
    """The classification's JSON schema, in the subset every backend accepts (OpenAI strict mode);
    made once per container, not per reply (callers only serialise it)."""
    return _strict(LlmClassification.model_json_schema())


def validated(answer: Any) -> LlmClassification:
    """The one validation every backend's answer goes through (a JSON string or a decoded object).

    A reason longer than the stored one-liner is shortened, not a reason to throw the whole answer
    away: tool use (Bedrock) and JSON mode do not enforce the schema's maxLength."""
    try:
        if isinstance(answer, str):
            answer = json.loads(_FENCE.sub("", answer))
        if isinstance(answer, dict) and isinstance(answer.get("reason"), str):
            answer = {**answer, "reason": " ".join(answer["reason"].split())[:REASON_MAX]}
        return LlmClassification.model_validate(answer)
    except ValidationError as exc:
        raise LlmUnavailable(f"answer did not validate: {validation_summary(exc)}") from None
    except ValueError as exc:  # not JSON (json.JSONDecodeError's message is a position, but be sure)
        where = f" at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise LlmUnavailable(f"answer is not JSON ({type(exc).__name__}{where})") from None


def validation_summary(exc: ValidationError) -> str:
    """Each error as `field: error type`, without the input: a field the model invented is named
    `(extra field)`, its name being the model's text too."""
    known = set(LlmClassification.model_fields)
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) if isinstance(p, int) or p in known else "(extra field)" for p in error["loc"])
        parts.append(f"{loc or '(answer)'}: {error['type']}")
    return "; ".join(parts[:10]) + (f"; {len(parts) - 10} more" if len(parts) > 10 else "")


def provider_error(exc: BaseException) -> str:
    """An SDK error as its class, HTTP status and error code, without its message: a provider's
    message (an OpenAI 400, a Bedrock ValidationException) may quote the request, i.e. the reply."""
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore's ClientError
        code = response.get("Error", {}).get("Code")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == type(exc).__name__:  # botocore's modelled errors are classes named after their code
        code = None
    details = ", ".join(f"{name} {value}" for name, value in (("status", status), ("code", code)) if value)
    return f"{type(exc).__name__}" + (f" ({details})" if details else "")


class OpenAIReplyClassifier:
    """OpenAI, or any endpoint that speaks its chat completions API (vLLM, Ollama, LiteLLM, Azure ...).

    `json_mode="json_schema"` asks for strict structured output; `"json_object"` is for compatible
    servers without it: the schema goes into the prompt and the answer is validated the same way."""

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 20,
        max_retries: int = 3,
        json_mode: str = "json_schema",
    ) -> None:
        # the SDK is imported here, not with the module: POST /replies and the offline path never need it
        import openai

        from flywheel.clients.openai_http import http_client

        self.model, self.json_mode = model, json_mode
        # the SDK retries 408/409/429/5xx and connection errors with exponential backoff and jitter,
        # except a 429 that says the quota is exhausted (see openai_http)
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client(timeout_s, TRANSPORT),
        )

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification:
        import openai

        system = SYSTEM_PROMPT
        if self.json_mode == "json_object":
            system += " Answer with one JSON object that matches this JSON schema: " + json.dumps(answer_schema())
        messages: Any = [
            {"role": "system", "content": system},
            {"role": "user", "content": user_message(reply, context)},
        ]
        # strict structured output with our schema (every field required, no extra ones); the answer
        # is validated by `validated`, like every backend's, not by the SDK's parse helper
        response_format: Any = (
            {"type": "json_object"}
            if self.json_mode == "json_object"
            else {"type": "json_schema", "json_schema": {"name": TOOL_NAME, "strict": True, "schema": answer_schema()}}
        )
        try:
            completion: Any = self._client.chat.completions.create(
                model=self.model, temperature=0, messages=messages, response_format=response_format
            )
        except openai.OpenAIError as exc:  # API errors after the SDK's retries, timeouts
            from flywheel.clients.openai_http import quota_exhausted

            if isinstance(exc, openai.APIStatusError) and quota_exhausted(exc.status_code, exc.body):
                raise LlmQuotaExhausted(
                    f"OpenAI quota exhausted (429 {getattr(exc, 'code', None) or 'insufficient_quota'}): the "
                    "account's credits or spend limit are used up; add credits or raise the limit"
                ) from exc
            raise LlmUnavailable(provider_error(exc)) from None
        choice = completion.choices[0]
        if not choice.message.content:
            # the refusal's text is the model's and may quote the reply: only whether there was one
            refused = bool(getattr(choice.message, "refusal", None))
            raise LlmUnavailable(f"no answer (finish_reason {choice.finish_reason!r}, refusal {refused})")
        return validated(choice.message.content)  # a "length" finish is invalid JSON: unavailable


class BedrockReplyClassifier:
    """Amazon Bedrock through the Converse API; the answer is forced through a tool whose input
    schema is the classification's JSON schema (works with Nova and Claude models, and with the ARN
    of an inference profile or a custom model deployment)."""

    def __init__(
        self, model_id: str, *, timeout_s: float = 20, max_retries: int = 3, region: str | None = None
    ) -> None:
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
                    "tools": [
                        {
                            "toolSpec": {
                                "name": TOOL_NAME,
                                "description": "Record the reply's classification.",
                                "inputSchema": {"json": answer_schema()},
                            }
                        }
                    ],
                    "toolChoice": {"tool": {"name": TOOL_NAME}},
                },
            )
        except (ClientError, BotoCoreError) as exc:  # throttling and 5xx were retried by botocore already
            raise LlmUnavailable(provider_error(exc)) from None
        stop = response.get("stopReason")
        if stop not in ("tool_use", "end_turn"):  # max_tokens, guardrail_intervened, content_filtered ...
            raise LlmUnavailable(f"no complete answer (stopReason {stop!r})")
        for block in response.get("output", {}).get("message", {}).get("content", []):
            use = block.get("toolUse")
            if use and use.get("name") == TOOL_NAME:
                return validated(use.get("input"))
        raise LlmUnavailable(f"no {TOOL_NAME} tool use in the answer (stopReason {response.get('stopReason')!r})")


def _bedrock_client(timeout_s: float, max_retries: int, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # botocore's max_attempts counts retries (total_max_attempts = max_attempts + 1), like the OpenAI SDK's
    config = Config(
        retries={"mode": "standard", "max_attempts": max_retries}, connect_timeout=5, read_timeout=timeout_s
    )
    return boto3.client("bedrock-runtime", region_name=region, config=config)  # type: ignore[call-overload]

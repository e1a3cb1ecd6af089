"""The LLM reply classifier: OpenAI structured output through the openai SDK."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flywheel.models.classification import LlmClassification

if TYPE_CHECKING:
    import httpx2

# Tests point the SDK at a fake provider through this transport; production uses the default.
TRANSPORT: httpx2.BaseTransport | None = None

SYSTEM_PROMPT = (
    "You classify replies to outbound sales emails. Read the original message, the lead's context and "
    "the reply, then fill every field. category: interested (wants to know more), meeting_request (asks "
    "for or accepts a meeting), question (asks about the offering), not_now (later, timing), objection "
    "(a reason against: price, competitor, authority, no_need), not_interested (declines), unsubscribe "
    "(asks to stop or be removed), out_of_office, wrong_person, referral (points to someone else), "
    "auto_reply (automated, not out-of-office), other. sentiment_score in [-1, 1]. referral_contact and "
    "return_date only when present. One short line of reason."
)


class LlmUnavailable(Exception):
    """The provider failed after the SDK's retries, or its answer did not validate."""


class OpenAIReplyClassifier:
    def __init__(self, api_key: str, model: str, *, base_url: str | None = None, timeout_s: float = 20,
                 max_retries: int = 3) -> None:
        # the SDK is imported here, not with the module: POST /replies and the offline path never need it
        import httpx2
        import openai

        self.model = model
        # the SDK retries 408/409/429/5xx and connection errors with exponential backoff and jitter
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries,
            http_client=httpx2.Client(transport=TRANSPORT, timeout=timeout_s) if TRANSPORT else None,
        )

    def classify(self, reply: str, context: dict[str, Any]) -> LlmClassification:
        import openai

        user = json.dumps({"original_message": context.get("message"), "lead": context.get("lead"),
                           "reply": reply}, default=str, ensure_ascii=False)
        try:
            completion = self._client.chat.completions.parse(
                model=self.model, temperature=0,
                messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
                response_format=LlmClassification,
            )
        except (openai.OpenAIError, ValueError) as exc:  # API errors, refusals, length, invalid JSON
            raise LlmUnavailable(f"{type(exc).__name__}: {exc}") from exc
        message = completion.choices[0].message
        if message.parsed is None:
            raise LlmUnavailable(f"no parsed output (refusal: {message.refusal!r})")
        return message.parsed

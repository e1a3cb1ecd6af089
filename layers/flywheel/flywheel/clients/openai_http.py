"""What the OpenAI SDK clients (fine-tuning, the reply classifier) share: telling an exhausted quota
from a rate limit, and an HTTP client on which the SDK does not retry the former.

OpenAI answers both with 429. A rate limit (`"code": "rate_limit_exceeded"`, type `requests` or
`tokens`) clears within seconds: retrying is right. An exhausted quota (`"code":
"insufficient_quota"`, type `insufficient_quota`; the billing codes below with that type) lasts
until someone adds credits or raises a spend limit: every retry fails the same way.
https://platform.openai.com/docs/guides/error-codes/api-errors
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK and its HTTP library load with the client that needs them
    import httpx2

QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        # the finer billing codes OpenAI sends with type insufficient_quota
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)


def quota_exhausted(status: int | None, body: Any) -> bool:
    """A 429 whose body (`{"error": {"message", "type", "param", "code"}}`) says the quota is used up."""
    if status != 429 or not isinstance(body, dict):
        return False
    error = body.get("error", body)
    if not isinstance(error, dict):
        return False
    return error.get("code") in QUOTA_CODES or error.get("type") == "insufficient_quota"


def _no_retry_on_exhausted_quota(response: httpx2.Response) -> None:
    """httpx response hook: the SDK retries every 429 unless the answer says `x-should-retry:
    false`; an exhausted quota gets that header, so the caller hears of it at once."""
    if response.status_code != 429:
        return
    response.read()  # an error body is small
    try:
        body = response.json()
    except ValueError:
        return
    if quota_exhausted(429, body):
        response.headers["x-should-retry"] = "false"


@functools.cache
def _client_class() -> type[httpx2.Client]:
    import openai

    class Client(openai.DefaultHttpxClient):
        def __del__(self) -> None:  # closed with the SDK client that owns it, as the SDK's own is
            if not self.is_closed:
                with contextlib.suppress(Exception):
                    self.close()

    return Client


def http_client(timeout_s: float, transport: httpx2.BaseTransport | None = None) -> httpx2.Client:
    """The SDK's default HTTP client (its timeouts, connection limits, redirects) with the hook above;
    `transport` is the tests' fake provider."""
    extra: dict[str, Any] = {"transport": transport} if transport is not None else {}
    return _client_class()(timeout=timeout_s, event_hooks={"response": [_no_retry_on_exhausted_quota]}, **extra)

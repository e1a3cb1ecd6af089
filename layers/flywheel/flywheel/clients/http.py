"""JSON over HTTP to third-party APIs: timeouts, jittered retries on 429/5xx, typed failures."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx2

from flywheel.errors import DependencyUnavailable

# Tests replace this with an httpx2.MockTransport; production uses the default transport.
TRANSPORT: httpx2.BaseTransport | None = None
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpJsonClient:
    def __init__(
        self,
        name: str,
        base_url: str,
        headers: dict[str, str],
        timeout_s: float,
        retries: int = 2,
        backoff_s: float = 0.2,
        budget_s: float | None = None,
    ) -> None:
        """`budget_s`: the time every call of this client together may take (one webhook request):
        no attempt starts, nor waits, past it, so a request answers inside API Gateway's 29 s."""
        self.name = name
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + budget_s if budget_s else None
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = httpx2.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=TRANSPORT)

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """The JSON body; None for 404. Retries what is safe to retry, then raises."""
        for attempt in range(self.retries + 1):
            remaining = self._remaining()
            try:
                response = self._client.request(method, path, timeout=min(self.timeout_s, remaining), **kwargs)
            except httpx2.TransportError as exc:
                if attempt == self.retries:
                    raise DependencyUnavailable(f"{self.name} unreachable", reason=str(exc)) from exc
            else:
                if response.status_code == 404:
                    return None
                if response.status_code < 400:
                    body = response.json()
                    return body if isinstance(body, dict) else {"results": body}
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    # the body is not logged: a CRM's error text can quote contact data
                    raise DependencyUnavailable(f"{self.name} answered {response.status_code}")
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isascii() and retry_after.isdigit():
                    time.sleep(min(float(retry_after), 2.0, self._remaining()))
                    continue
            time.sleep(min(self.backoff_s * (2**attempt) * (0.5 + random.random()), self._remaining()))  # noqa: S311
        raise AssertionError("unreachable")

    def _remaining(self) -> float:
        if self.deadline is None:
            return self.timeout_s
        remaining = self.deadline - time.monotonic()
        if remaining < 0.2:
            raise DependencyUnavailable(f"{self.name}: out of time for this request; the provider will retry")
        return remaining

    def close(self) -> None:
        self._client.close()

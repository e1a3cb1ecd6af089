"""A client for senders: the calls a message generator makes to Flywheel, signed with SigV4.

Only boto3/botocore (already in every AWS Python environment): credentials come from the
standard chain (environment, shared files, SSO, instance or task role), requests are signed for
`execute-api`, and sent with botocore's HTTP session.

    from flywheel.client import FlywheelClient

    client = FlywheelClient("https://abc123.execute-api.us-east-1.amazonaws.com/dev")
    # or FlywheelClient.from_stack("flywheel-dev"), or FlywheelClient("http://127.0.0.1:8081")
    routed = client.route("acme", "lead-1001")  # None until a model is deployed
    ids = client.register([{...message..., "route": routed and client.route_info(routed)}])

`register` sends batches (500 per request), gives every message an idempotency key (a hash of
its content unless you pass your own send id) so a retried batch never registers a message
twice, and retries 429, 502, 503 and 504 answers and connection errors, honouring
`Retry-After`, else with jittered exponential backoff.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, HTTPClientError
from botocore.httpsession import URLLib3Session
from botocore.session import Session

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BATCH = 500
_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class FlywheelError(Exception):
    """An answer other than 2xx: status, the API's error code and message, the parsed body."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


def idempotency_key(message: Mapping[str, Any]) -> str:
    """The same message content gives the same key, so re-sending it registers nothing new."""
    content = {k: v for k, v in message.items() if k != "idempotency_key"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=_json_default).encode()).hexdigest()
    return f"fw-{digest[:40]}"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class FlywheelClient:
    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        session: Session | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        batch_size: int = MAX_BATCH,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
        max_retry_after_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.base_url = _base_url(base_url)
        self.session = session or Session()
        host = urlsplit(self.base_url).hostname or ""
        found = _API_HOST.match(host)
        self.region = (
            region or (found.group(1) if found else None) or self.session.get_config_variable("region") or "us-east-1"
        )
        self.max_attempts, self.batch_size = max_attempts, batch_size
        self.backoff_base_s, self.backoff_cap_s, self.max_retry_after_s = (
            backoff_base_s,
            backoff_cap_s,
            max_retry_after_s,
        )
        self.sleep = sleep
        self.http = URLLib3Session(timeout=timeout_s)  # type: ignore[arg-type]  # urllib3 takes float seconds

    @classmethod
    def from_stack(cls, stack_name: str, *, region: str | None = None, **kwargs: Any) -> FlywheelClient:
        """The API of a deployed stack (its `ApiUrl` output)."""
        import boto3
        from botocore.exceptions import ClientError

        try:
            outputs = (
                boto3.client("cloudformation", region_name=region)
                .describe_stacks(StackName=stack_name)["Stacks"][0]
                .get("Outputs", [])
            )
        except ClientError as exc:  # e.g. ValidationError: Stack with id ... does not exist
            error = exc.response.get("Error", {})
            raise FlywheelError(
                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
                str(error.get("Code") or "cloudformation_error"),
                f"stack {stack_name}: {error.get('Message') or exc}",
            ) from exc
        except BotoCoreError as exc:  # no region, no credentials, no connection
            raise FlywheelError(0, "cloudformation_error", f"stack {stack_name}: {exc}") from exc
        url = next((o["OutputValue"] for o in outputs if o["OutputKey"] == "ApiUrl"), None)
        if not url:
            raise FlywheelError(0, "no_api_url", f"stack {stack_name} has no ApiUrl output")
        return cls(url, region=region, **kwargs)

    # --- the sender's calls ------------------------------------------------------------------------

    def route(self, org_id: str, lead_id: str) -> dict[str, Any] | None:
        """Which model writes to this lead (sticky per experiment); None while no model is deployed
        (use your default model then)."""
        try:
            return dict(self.request("GET", "/route", params={"org_id": org_id, "lead_id": lead_id}))
        except FlywheelError as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def route_info(routed: Mapping[str, Any]) -> dict[str, Any]:
        """The `route` field of a message, from what `route()` answered."""
        model = routed.get("model") or {}
        return {
            "model_registry_id": model.get("model_registry_id"),
            "provider_model_id": model.get("provider_model_id"),
            "experiment_id": routed.get("experiment_id"),
            "arm": routed.get("arm"),
        }

    def register(self, messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Register sent messages; returns one `{"outcome_id", "created"}` per message, in order."""
        keyed = [{**m, "idempotency_key": m.get("idempotency_key") or idempotency_key(m)} for m in messages]
        outcomes: list[dict[str, Any]] = []
        for start in range(0, len(keyed), self.batch_size):
            answer = self.request("POST", "/messages", {"messages": keyed[start : start + self.batch_size]})
            outcomes += answer["outcomes"]
        return outcomes

    def submit_reply(
        self,
        org_id: str,
        outcome_id: str,
        text: str,
        *,
        channel: str = "email",
        external_id: str | None = None,
        occurred_at: datetime | None = None,
        subject: str | None = None,
    ) -> dict[str, Any]:
        """A reply to one of this organisation's messages that came in outside the inbound webhooks
        (LinkedIn, phone notes, ...), queued for the classifier; `external_id` makes re-sending it a
        no-op. Another organisation's outcome is a 404, like an unknown one."""
        # a fixed time makes the reply's content key stable, so a retried call is a duplicate
        body: dict[str, Any] = {
            "outcome_id": outcome_id,
            "text": text,
            "channel": channel,
            "occurred_at": occurred_at or datetime.now(UTC),
        }
        for key, value in (("external_id", external_id), ("subject", subject)):
            if value is not None:
                body[key] = value
        return dict(self.request("POST", "/replies", body, params={"org_id": org_id}))

    def message(self, org_id: str, outcome_id: str) -> dict[str, Any]:
        """An outcome with its stage and event history (one of this organisation's)."""
        return dict(self.request("GET", f"/messages/{quote(outcome_id, safe='')}", params={"org_id": org_id}))

    def suppressions(self, org_id: str, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The whole suppression list from `since` (every lead who must not be emailed again),
        read `limit` per request, following each page's `next` cursor to the last page."""
        return list(self.pages("/suppressions", "suppressions", org_id, since, limit))

    def quarantine(self, org_id: str, since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Every malformed provider event quarantined for this organisation from `since`, read
        `limit` per request, following each page's `next` cursor to the last page."""
        return list(self.pages("/quarantine", "events", org_id, since, limit))

    def pages(self, path: str, key: str, org_id: str, since: datetime | None, limit: int) -> Iterator[dict[str, Any]]:
        """The rows of a paged listing, page after page. `since` only sets where the listing starts:
        a time cannot say where a page ended when one batch wrote many rows at that time, so each
        next page is asked for with the cursor the previous page returned."""
        params: dict[str, Any] = {"org_id": org_id, "limit": limit}
        if since is not None:
            params["since"] = _json_default(since)
        while True:
            page = self.request("GET", path, params=params)
            yield from page[key]
            cursor = page.get("next")
            if cursor is None:
                return
            if cursor == params.get("cursor"):  # a server that does not advance would loop forever
                raise FlywheelError(0, "cursor_not_advancing", f"{path} returned the cursor it was given")
            params["cursor"] = cursor

    def start_training_run(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/training/run", params))

    def training_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/training/runs/{quote(run_id, safe='')}"))

    # --- transport -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """One API call, signed, retried on throttling and unavailability; the parsed JSON answer."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, headers, parsed = self.call(method, path, body, params)
            except (HTTPClientError, BotoCoreError) as exc:
                if attempt == self.max_attempts:
                    raise FlywheelError(0, "connection_error", str(exc)) from exc
                self.sleep(self._backoff(attempt))
                continue
            if 200 <= status < 300:
                return parsed
            if status in RETRY_STATUSES and attempt < self.max_attempts:
                wait = retry_after_seconds(headers.get("retry-after"))
                if wait is None or wait <= self.max_retry_after_s:
                    self.sleep(self._backoff(attempt) if wait is None else wait)
                    continue
            raise _error(status, parsed)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        # full jitter: a random wait up to base * 2^(attempt-1), capped
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))  # noqa: S311

    def call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """One signed request, no retries: (status, lower-cased headers, parsed body)."""
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params, quote_via=quote, safe="-_.~")
        data = json.dumps(body, default=_json_default).encode() if body is not None else None
        status, headers, payload = self._send(method, url, data)
        return status, headers, _parse(payload)

    def _send(self, method: str, url: str, data: bytes | None) -> tuple[int, dict[str, str], bytes]:
        credentials = self.session.get_credentials()
        if credentials is None:
            raise FlywheelError(
                0,
                "no_credentials",
                "no AWS credentials found (environment, ~/.aws, SSO or role): "
                "requests to Flywheel are signed with SigV4",
            )
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        response = self.http.send(request.prepare())
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content


def _base_url(url: str) -> str:
    """The API's base URL, checked now rather than as an obscure error on the first request."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"not an API base URL: {url!r} (give e.g. https://abc123.execute-api.us-east-1."
            "amazonaws.com/dev or http://127.0.0.1:8081)"
        )
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"not an API base URL: {url!r} ({exc})") from None
    return url.strip().rstrip("/")


def _parse(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


def _error(status: int, parsed: Any) -> FlywheelError:
    if isinstance(parsed, dict):
        code = str(parsed.get("error") or parsed.get("__type") or "http_error")
        return FlywheelError(status, code, str(parsed.get("message") or parsed), parsed)
    return FlywheelError(status, "http_error", str(parsed)[:500], parsed)

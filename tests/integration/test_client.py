"""flywheel.client against the local server with IAM routes checked: real SigV4-signed requests
over HTTP, batches, idempotent retries on 429/503 honouring Retry-After, refusals of bad
signatures as API Gateway refuses them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.session import Session

from flywheel.client import FlywheelClient, FlywheelError, idempotency_key, retry_after_seconds
from flywheel.local.seed import DANA, seed, synthetic_campaign
from flywheel.local.server import make_server
from flywheel.local.sigv4 import SigV4Verifier
from flywheel.local.stack import LocalStack
from tests.conftest import ROOT, count

KEY, SECRET = "AKIAFLYWHEELTEST0001", "test-secret-key"


@pytest.fixture
def local(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The local stack and API, IAM routes accepting only KEY; requests logged."""
    for key in ("WEBHOOK_SECRETS_JSON", "WEBHOOK_SECRETS_ARN", "REPLIES_QUEUE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    with LocalStack(ROOT, state=tmp_path, log=lambda line: None) as stack:
        from botocore.credentials import ReadOnlyCredentials

        verifier = SigV4Verifier({KEY: ReadOnlyCredentials(KEY, SECRET, None)})
        log: list[str] = []
        server = make_server(ROOT / "template.yaml", "127.0.0.1", 0, verifier=verifier, log=log.append)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield {
                "url": f"http://127.0.0.1:{server.server_address[1]}",
                "stack": stack,
                "log": log,
                "verifier": verifier,
            }
        finally:
            server.shutdown()
            server.server_close()


def session(key: str = KEY, secret: str = SECRET) -> Session:
    s = Session()
    s.set_credentials(key, secret)
    return s


def client(url: str, **kwargs: Any) -> FlywheelClient:
    return FlywheelClient(url, session=session(), **kwargs)


def test_register_sends_batches_and_is_idempotent(local: dict[str, Any], db) -> None:
    messages = synthetic_campaign("acme", 120)
    api = client(local["url"], batch_size=50)
    first = api.register(messages)
    assert len(first) == 120 and all(o["created"] for o in first)
    assert [line.split()[:3] for line in local["log"]] == [["POST", "/messages", "201"]] * 3  # 50 + 50 + 20
    again = api.register(messages)  # same content, same idempotency keys: nothing new
    assert [o["outcome_id"] for o in again] == [o["outcome_id"] for o in first]
    assert not any(o["created"] for o in again) and count(db, "outcome_labels") == 120
    assert idempotency_key(messages[0]) == idempotency_key({**messages[0], "idempotency_key": "ignored"})


def test_route_submit_reply_and_read_back(local: dict[str, Any], db) -> None:
    seed(ROOT)
    api = client(local["url"])
    assert api.route("acme", "lead-1001") is None  # no model deployed yet: the sender uses its default
    queued = api.submit_reply(
        "acme", str(DANA), "Interesting - can we talk on Thursday?", channel="linkedin", external_id="li-9"
    )
    assert queued == {
        "reply_key": f"api_linkedin:{DANA}:li-9",
        "outcome_id": str(DANA),
        "queued": True,
        "duplicate": False,
    }
    assert (
        api.submit_reply(
            "acme", str(DANA), "Interesting - can we talk on Thursday?", channel="linkedin", external_id="li-9"
        )["duplicate"]
        is True
    )
    local["stack"].pump()
    assert api.message("acme", str(DANA))["reply_category"] in ("interested", "meeting_request")
    with pytest.raises(FlywheelError) as refused:
        api.submit_reply("acme", "0b7e3f0c-0000-4000-8000-000000000000", "hello")
    assert refused.value.status == 404 and refused.value.code == "not_found"


def test_bad_signatures_are_refused_as_api_gateway_does(local: dict[str, Any]) -> None:
    url = local["url"]
    with pytest.raises(FlywheelError) as wrong_secret:
        FlywheelClient(url, session=session(secret="not-the-secret")).route("acme", "l1")
    assert wrong_secret.value.status == 403 and "signature we calculated does not match" in wrong_secret.value.message
    with pytest.raises(FlywheelError) as unknown:
        FlywheelClient(url, session=session(key="AKIAUNKNOWN000000000")).route("acme", "l1")
    assert unknown.value.message == "The security token included in the request is invalid."
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{url}/route?org_id=acme&lead_id=l1", timeout=30)
    assert (
        unsigned.value.code == 403
        and unsigned.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    )
    local["verifier"].now = lambda: time.time() + 600  # the server's clock is 10 minutes ahead
    with pytest.raises(FlywheelError) as expired:
        client(url).route("acme", "l1")
    assert expired.value.message.startswith("Signature expired:") and expired.value.message.endswith("- 5 min.)")
    local["verifier"].now = time.time
    # public webhook routes need no SigV4 (they are verified as their provider signs)
    with pytest.raises(urllib.error.HTTPError) as webhook:
        urllib.request.urlopen(urllib.request.Request(f"{url}/webhooks/calendly", data=b"{}", method="POST"))
    assert webhook.value.code == 401


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_sigv4_signatures_are_accepted(local: dict[str, Any]) -> None:
    """Another SigV4 implementation (curl's) agrees with the server's check. One query parameter:
    curl before 8.x does not sort them, which AWS (and this server) refuses."""
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--aws-sigv4",
            "aws:amz:us-east-1:execute-api",
            "--user",
            f"{KEY}:{SECRET}",
            "-w",
            "\n%{http_code}",
            f"{local['url']}/suppressions?org_id=acme",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--aws-sigv4" in done.stderr:
        pytest.skip("this curl has no --aws-sigv4")
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(body)["org_id"] == "acme"


class FlakyFront:
    """In front of the API: answers the first requests with the given statuses (after forwarding
    the first one, as when an answer is lost), then forwards everything."""

    def __init__(self, target: str, failures: list[tuple[int, str | None]]) -> None:
        self.failures, self.seen = list(failures), 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = urllib.request.Request(
                    target + self.path, data=body, method="POST", headers={k: v for k, v in self.headers.items()}
                )
                front.seen += 1
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as err:
                    status, payload = err.code, err.read()
                retry_after = None
                if front.failures:
                    status, retry_after = front.failures.pop(0)
                    payload = json.dumps({"error": "throttled", "message": "slow down"}).encode()
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_register_retries_throttling_honouring_retry_after_without_duplicates(local: dict[str, Any], db) -> None:
    front = FlakyFront(local["url"], [(503, "1"), (429, "0"), (502, None)])
    waits: list[float] = []
    api = client(front.url, sleep=waits.append, backoff_base_s=0.25)
    outcomes = api.register(synthetic_campaign("acme", 3))
    assert front.seen == 4 and waits[:2] == [1.0, 0.0] and 0 <= waits[2] <= 0.25 * 4
    # the first attempt was registered before its answer was lost: the retry found it
    assert [o["created"] for o in outcomes] == [False, False, False] and count(db, "outcome_labels") == 3
    front.server.shutdown()


def test_register_gives_up_after_max_attempts(local: dict[str, Any]) -> None:
    front = FlakyFront(local["url"], [(503, "0")] * 3)
    api = client(front.url, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(FlywheelError) as failed:
        api.register(synthetic_campaign("acme", 1))
    assert failed.value.status == 503 and front.seen == 3
    front.server.shutdown()


def test_retry_after_forms() -> None:
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Fri, 27 Nov 2026 10:00:30 GMT", now=1795773600.0) == 30.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def run_sender(url: str, leads: int) -> subprocess.CompletedProcess[str]:
    """examples/sender.py against the local API, signing with the test credentials."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    env.pop("AWS_SESSION_TOKEN", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sender.py"), "--url", url, "--leads", str(leads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_sender_runs_against_the_local_api(local: dict[str, Any], db) -> None:
    done = run_sender(local["url"], leads=2)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["registered"]) == 2 and result["created"] == 2
    assert "example-0: no model yet -> your-default-model" in done.stderr
    assert count(db, "outcome_labels") == 2


def test_the_example_sender_invokes_the_models_serving_id(local: dict[str, Any], db) -> None:
    """(An outside review.) The example, and the README's loop, generated with the champion's
    `provider_model_id`: a Bedrock custom model's own ARN, which InvokeModel refuses."""
    from flywheel.services import experiments

    deployment = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abc123"
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, role, provider, provider_model_id,
                                      base_model, traffic_percentage, deployed_at, serving_model_id, serving_kind,
                                      serving_status)
           VALUES ('flywheel-v1.0.0', 'v1.0.0', 1, 0, 0, 'deployed', 'champion', 'bedrock',
                   'arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/x1',
                   'amazon.nova-micro-v1:0:128k', 100, now(), %s, 'on_demand', 'active')""",
        (deployment,),
    )
    experiments.forget_cache()
    done = run_sender(local["url"], leads=1)
    experiments.forget_cache()
    assert done.returncode == 0, done.stderr
    assert f"example-0: champion -> {deployment}" in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "127.0.0.1:8081",
        "ftp://example.com",
        "http://",
        "http://host:99999",
        "http://host:port",
        "https://h.example/dev?stage=1",
    ],
)
def test_a_bad_base_url_is_refused_when_the_client_is_made(url: str) -> None:
    with pytest.raises(ValueError, match="not an API base URL"):
        FlywheelClient(url, session=session())


def test_a_missing_stack_is_a_flywheel_error_not_a_botocore_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.stub import Stubber

    cfn = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(cfn)
    stub.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        http_status_code=400,
        service_message="Stack with id nosuch does not exist",
    )
    monkeypatch.setattr(boto3, "client", lambda *a, **k: cfn)
    with stub, pytest.raises(FlywheelError) as failed:
        FlywheelClient.from_stack("nosuch")
    assert failed.value.code == "ValidationError" and "nosuch does not exist" in failed.value.message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "notaurl"], "sender.py: error: not an API base URL: 'notaurl'"),
        (["--url", "http://127.0.0.1:1", "--leads", "1"], "sender.py: error: 0 connection_error"),
        (["--leads", "0"], "'0' is not a whole number (1 or more)"),
    ],
)
def test_the_example_sender_explains_bad_input_without_a_traceback(args: list[str], message: str) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sender.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_listings_follow_next_to_the_last_page(local: dict[str, Any], db) -> None:
    """150 suppressions and 150 quarantined events, each written by one batch (one transaction, one
    time), read 100 per request: the client follows `next` and returns every row exactly once."""
    from flywheel.dal import quarantine as quarantine_dal
    from flywheel.dal import suppressions as suppressions_dal
    from flywheel.dal.connection import transaction

    with transaction() as conn:
        conn.execute("INSERT INTO organizations (org_id) VALUES ('acme') ON CONFLICT DO NOTHING")
        suppressions_dal.suppress_many(conn, [("acme", f"lead{i}@x.example", "unsubscribe", None) for i in range(150)])
        quarantine_dal.add(
            conn,
            [
                {
                    "provider": "sendgrid",
                    "org_id": "acme",
                    "reason": "bad",
                    "field": "timestamp",
                    "raw": "{}",
                    "digest": f"d{i}",
                }
                for i in range(150)
            ],
        )
    api = client(local["url"])
    suppressed = api.suppressions("acme", limit=100)
    assert sorted(r["email"] for r in suppressed) == sorted(f"lead{i}@x.example" for i in range(150))
    assert len(suppressed) == 150
    events = api.quarantine("acme", limit=100)
    assert len({e["quarantine_id"] for e in events}) == len(events) == 150
    gets = [line.split()[:2] for line in local["log"] if line.startswith("GET")]
    assert [path.split("?")[0] for _, path in gets] == ["/suppressions"] * 2 + ["/quarantine"] * 2
    # `since` is where the listing starts; the client still reads on to the end
    start = datetime.fromisoformat(suppressed[0]["created_at"])
    assert [r["email"] for r in api.suppressions("acme", since=start, limit=100)] == [r["email"] for r in suppressed]
    assert api.suppressions("acme", since=start + timedelta(seconds=1)) == []

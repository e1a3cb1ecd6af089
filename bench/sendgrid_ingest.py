"""A 1,000-event SendGrid batch applied set-wise against the same events applied one by one; then
the largest batch through the real webhook handler (signature, parsing, lock-ordered ingest,
recompute), on few outcomes and on many: at the template's body limit (4 MiB, what can reach the
function) and at 6 MiB (the issue's size, Lambda's own request limit). The last line names the
slowest of the four."""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _harness import fresh_database, timed

N_EVENTS, N_MESSAGES = 1000, 200


def register(n: int, sent: datetime) -> None:
    """n messages l0..l{n-1} of org `bench`, registered in batches of 500 (the API's maximum)."""
    from flywheel.models.messages import MessageIn
    from flywheel.services.outcomes import register_messages

    for start in range(0, n, 500):
        register_messages(
            [
                MessageIn(
                    org_id="bench",
                    campaign_id="c",
                    lead_id=f"l{i}",
                    lead_email=f"l{i}@x.example",
                    body="hello",
                    provider_message_id=f"m{i}.dfd",
                    sent_at=sent,
                )
                for i in range(start, min(n, start + 500))
            ]
        )


def setup() -> list:
    """A fresh database with registered messages; returns the normalised events to apply."""
    fresh_database()
    from flywheel.webhooks import sendgrid

    sent = datetime.now(UTC) - timedelta(days=1)
    register(N_MESSAGES, sent)
    rng = random.Random(1)  # noqa: S311 - synthetic data
    kinds = ["processed", "delivered", "open", "open", "click", "deferred", "bounce", "unsubscribe"]
    raw = [
        {
            "email": f"l{i % N_MESSAGES}@x.example",
            "timestamp": int(sent.timestamp()) + i,
            "event": rng.choice(kinds),
            "sg_event_id": f"ev-{i}",
            "sg_message_id": f"m{i % N_MESSAGES}.dfd.filter1.0",
            "sg_machine_open": rng.random() < 0.3,
        }
        for i in range(N_EVENTS)
    ]
    return sendgrid.normalise(sendgrid.parse_body(json.dumps(raw).encode()))[0]


def max_batch(n_outcomes: int, limit: int) -> tuple[int, float]:
    """A fresh database with n_outcomes messages; returns (events, seconds) for one signed batch of
    up to `limit` bytes through WebhooksFunction (its body limit set to `limit`), as API Gateway
    would invoke it."""
    fresh_database()
    from flywheel.local.invoke import invoke
    from flywheel.local.signing import SendGridSigner
    from flywheel.settings import reset_settings

    signer = SendGridSigner()
    os.environ["WEBHOOK_SECRETS_JSON"] = json.dumps({"sendgrid_public_key": signer.public_key_b64})
    os.environ["MAX_BODY_BYTES"] = str(limit)  # over the template's value
    reset_settings()
    sent = datetime.now(UTC) - timedelta(days=1)
    register(n_outcomes, sent)
    kinds = ["processed", "delivered", "open", "open", "click", "deferred", "open"]
    events, size, i = [], 2, 0
    while True:  # realistic events, as SendGrid sends them, until the body limit
        event = {
            "email": f"l{i % n_outcomes}@x.example",
            "timestamp": int(sent.timestamp()) + i,
            "event": kinds[i % len(kinds)],
            "sg_event_id": f"ZGVsaXZlcmVk-{i:010d}",
            "sg_message_id": f"m{i % n_outcomes}.dfd.filter0001.16648.5515E0B88.0",
            "category": ["q4", "fintech"],
            "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "ip": "203.0.113.7",
            "sg_machine_open": i % 3 == 0,
        }
        grown = size + len(json.dumps(event)) + 2
        if grown > limit - 64:
            break
        events.append(event)
        size, i = grown, i + 1
    body = (json.dumps(events) + "\r\n").encode()
    request = {
        "httpMethod": "POST",
        "path": "/webhooks/sendgrid",
        "resource": "/webhooks/sendgrid",
        "headers": {"Host": "bench.example", **signer.headers(body)},
        "body": body.decode(),
        "isBase64Encoded": False,
        "requestContext": {"path": "/dev/webhooks/sendgrid", "stage": "dev"},
    }
    # warm: imports and the connection, through a (signed) empty batch
    warm = invoke(
        "WebhooksFunction", {**request, "body": "[]", "headers": {"Host": "bench.example", **signer.headers(b"[]")}}
    )
    assert warm["statusCode"] == 200, warm
    result: dict = {}
    cpu = cpu_seconds()
    seconds = timed(lambda: result.update(invoke("WebhooksFunction", request)))
    client, server = (after - before for after, before in zip(cpu_seconds(), cpu, strict=True))
    assert result["statusCode"] == 200 and json.loads(result["body"])["applied"] == len(events), result
    print(
        f"  CPU time of that batch: {client:.2f} s in the function, {server:.2f} s in its PostgreSQL backend "
        "(the wall time above also waits for the machine's other work)"
    )
    return len(events), seconds


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process and by its database backend (when it runs on this
    machine): what a batch costs whatever else the machine is doing."""
    from flywheel.dal.connection import get_connection

    try:
        stat = Path(f"/proc/{get_connection().info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        backend = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:  # a remote database
        backend = float("nan")
    return time.process_time(), backend


def main() -> None:
    from flywheel.dal.connection import get_connection
    from flywheel.local.invoke import function_spec
    from flywheel.services.ingest import ingest_events

    events = setup()
    get_connection()
    one_by_one = timed(lambda: [ingest_events([e], window_days=90) for e in events])
    events = setup()
    get_connection()
    batch = timed(lambda: ingest_events(events, window_days=90))
    print(f"{N_EVENTS} events one by one: {one_by_one * 1000:.0f} ms")
    print(f"{N_EVENTS} events as one batch: {batch * 1000:.0f} ms")
    template_limit = int(function_spec("WebhooksFunction").environment["MAX_BODY_BYTES"])
    runs = []
    for limit in (template_limit, 6 * 1024 * 1024):
        for n_outcomes in (20, 10_000):
            n, seconds = max_batch(n_outcomes, limit)
            print(f"max batch ({n} events, {limit / 2**20:.0f} MiB) on {n_outcomes:,} outcomes: {seconds:.2f} s")
            runs.append((n, seconds))
    slowest_n, slowest = max(runs, key=lambda run: run[1])
    print(f"batch vs one-by-one: {one_by_one / batch:.1f}x; max batch ({slowest_n} events): {slowest:.1f} s")


if __name__ == "__main__":
    main()

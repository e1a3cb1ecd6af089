"""A 1,000-event SendGrid batch applied set-wise against the same events applied one by one; then
the largest batch the body limit allows (6 MiB of signed SendGrid events) through the real webhook
handler (signature, parsing, lock-ordered ingest, recompute), on few outcomes and on many."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from _harness import fresh_database, timed

N_EVENTS, N_MESSAGES = 1000, 200


def setup() -> list:
    """A fresh database with registered messages; returns the normalised events to apply."""
    fresh_database()
    from flywheel.models.messages import MessageIn
    from flywheel.services.outcomes import register_messages
    from flywheel.webhooks import sendgrid

    sent = datetime.now(UTC) - timedelta(days=1)
    register_messages([MessageIn(org_id="bench", campaign_id="c", lead_id=f"l{i}", lead_email=f"l{i}@x.example",
                                 body="hello", provider_message_id=f"m{i}.dfd", sent_at=sent)
                       for i in range(N_MESSAGES)])
    rng = random.Random(1)  # noqa: S311 - synthetic data
    kinds = ["processed", "delivered", "open", "open", "click", "deferred", "bounce", "unsubscribe"]
    raw = [{"email": f"l{i % N_MESSAGES}@x.example", "timestamp": int(sent.timestamp()) + i,
            "event": rng.choice(kinds), "sg_event_id": f"ev-{i}", "sg_message_id": f"m{i % N_MESSAGES}.dfd.filter1.0",
            "sg_machine_open": rng.random() < 0.3} for i in range(N_EVENTS)]
    return sendgrid.normalise(sendgrid.parse_body(json.dumps(raw).encode()))[0]


def max_batch(n_outcomes: int) -> tuple[int, float]:
    """A fresh database with n_outcomes messages; returns (events, seconds) for one maximum-size,
    signed batch through WebhooksFunction, as API Gateway would invoke it."""
    import os

    fresh_database()
    from flywheel.local.invoke import invoke
    from flywheel.local.signing import SendGridSigner
    from flywheel.models.messages import MessageIn
    from flywheel.services.outcomes import register_messages
    from flywheel.settings import get_settings, reset_settings

    signer = SendGridSigner()
    os.environ["WEBHOOK_SECRETS_JSON"] = json.dumps({"sendgrid_public_key": signer.public_key_b64})
    reset_settings()
    limit = get_settings().max_body_bytes
    sent = datetime.now(UTC) - timedelta(days=1)
    for start in range(0, n_outcomes, 500):
        register_messages([MessageIn(org_id="bench", campaign_id="c", lead_id=f"l{i}", lead_email=f"l{i}@x.example",
                                     body="hello", provider_message_id=f"m{i}.dfd", sent_at=sent)
                           for i in range(start, min(n_outcomes, start + 500))])
    kinds = ["processed", "delivered", "open", "open", "click", "deferred", "open"]
    events, size, i = [], 2, 0
    while True:  # realistic events, as SendGrid sends them, until the body limit
        event = {"email": f"l{i % n_outcomes}@x.example", "timestamp": int(sent.timestamp()) + i,
                 "event": kinds[i % len(kinds)], "sg_event_id": f"ZGVsaXZlcmVk-{i:010d}",
                 "sg_message_id": f"m{i % n_outcomes}.dfd.filter0001.16648.5515E0B88.0", "category": ["q4", "fintech"],
                 "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "ip": "203.0.113.7",
                 "sg_machine_open": i % 3 == 0}
        grown = size + len(json.dumps(event)) + 2
        if grown > limit - 64:
            break
        events.append(event)
        size, i = grown, i + 1
    body = (json.dumps(events) + "\r\n").encode()
    request = {"httpMethod": "POST", "path": "/webhooks/sendgrid", "resource": "/webhooks/sendgrid",
               "headers": {"Host": "bench.example", **signer.headers(body)}, "body": body.decode(),
               "isBase64Encoded": False, "requestContext": {"path": "/dev/webhooks/sendgrid", "stage": "dev"}}
    invoke("WebhooksFunction", {**request, "body": "[]"})  # warm: imports and the connection
    result: dict = {}
    seconds = timed(lambda: result.update(invoke("WebhooksFunction", request)))
    assert result["statusCode"] == 200 and json.loads(result["body"])["applied"] == len(events), result
    return len(events), seconds


def main() -> None:
    from flywheel.dal.connection import get_connection
    from flywheel.services.ingest import ingest_events

    events = setup()
    get_connection()
    one_by_one = timed(lambda: [ingest_events([e], window_days=90) for e in events])
    events = setup()
    get_connection()
    batch = timed(lambda: ingest_events(events, window_days=90))
    print(f"{N_EVENTS} events one by one: {one_by_one * 1000:.0f} ms")
    print(f"{N_EVENTS} events as one batch: {batch * 1000:.0f} ms")
    few_n, few = max_batch(20)
    many_n, many = max_batch(10_000)
    print(f"max batch ({few_n} events, 6 MiB) on 20 outcomes: {few:.2f} s")
    print(f"max batch ({many_n} events, 6 MiB) on 10,000 outcomes: {many:.2f} s")
    print(f"batch vs one-by-one: {one_by_one / batch:.1f}x; max batch ({max(few_n, many_n)} events): "
          f"{max(few, many):.1f} s")


if __name__ == "__main__":
    main()

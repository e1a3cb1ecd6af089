"""A 1,000-event SendGrid batch applied set-wise against the same events applied one by one."""

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
    print(f"batch vs one-by-one: {one_by_one / batch:.1f}x")


if __name__ == "__main__":
    main()

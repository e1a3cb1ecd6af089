"""One 500-message batch POST against 500 single POSTs, through the real handler and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from _harness import ROOT, fresh_database, timed

N = 500


def main() -> None:
    fresh_database()
    from flywheel.local.server import LocalApi

    api = LocalApi(ROOT / "template.yaml")
    base = json.loads(json.loads((ROOT / "events" / "messages_register_single.json").read_text())["body"])
    headers = {"Content-Type": ["application/json"]}

    def messages(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                **base,
                "lead_id": f"{prefix}-{i}",
                "idempotency_key": f"{prefix}-{i}",
                "provider_message_id": f"{prefix}.{i}",
            }
            for i in range(N)
        ]

    def post(body: Any) -> None:
        status, _, payload = api.handle("POST", "/messages", headers, json.dumps(body).encode())
        assert status == 201, payload

    timed(lambda: post(messages("warmup")[:5]))  # imports, connection, first plans: neither side pays
    singles = messages("single")

    def post_singles() -> None:
        for message in singles:
            post(message)

    single_s = timed(post_singles)
    batch_s = timed(lambda: post({"messages": messages("batch")}))
    print(f"{N} single POSTs: {single_s * 1000:.0f} ms ({single_s / N * 1000:.2f} ms each)")
    print(f"one {N}-message batch POST: {batch_s * 1000:.0f} ms")
    print(f"batch vs single: {single_s / batch_s:.1f}x")


if __name__ == "__main__":
    main()

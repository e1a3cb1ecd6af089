"""`make demo`: the main job end to end on local defaults, through the real HTTP routes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flywheel.local.embedded import ensure_local_database
from flywheel.local.server import make_server

INDUSTRIES = ["saas", "fintech", "logistics", "healthcare"]
ROLES = ["vp sales", "head of growth", "cto", "founder"]
FRAMEWORKS = ["PAS", "AIDA", "BAB"]
TONES = ["professional", "casual"]


class LocalClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method,  # noqa: S310 (localhost)
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


def synthetic_campaign(org_id: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    start = datetime.now(UTC) - timedelta(days=3)
    messages = []
    for i in range(count):
        first = rng.choice(["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"])
        framework, tone = rng.choice(FRAMEWORKS), rng.choice(TONES)
        messages.append({
            "org_id": org_id,
            "campaign_id": "demo-q4-outbound",
            "lead_id": f"lead-{i:04d}",
            "lead_email": f"{first.lower()}.{i}@prospect{i % 17}.example",
            "subject": f"{first}, a faster way to forecast pipeline",
            "body": f"Hi {first},\n\nTeams like yours cut forecast prep by half with us ({framework}/{tone}).\n"
                    "Worth a 15-minute look next week?\n\nSam",
            "framework": framework,
            "tone": tone,
            "brief": "pipeline forecasting pain for revenue leaders",
            "agent_decisions": {"PersonalizerAgent": {"hook": "forecasting"},
                                "CopywriterAgent": {"framework": framework}},
            "model_id": "gpt-4o-mini-2024-07-18",
            "lead": {"first_name": first, "company": f"Prospect {i % 17}", "industry": rng.choice(INDUSTRIES),
                     "role": rng.choice(ROLES), "company_size": rng.choice(["11-50", "51-200", "201-1000"]),
                     "icp_score": round(rng.random(), 2)},
            "sent_at": (start + timedelta(minutes=7 * i)).isoformat(),
            "provider_message_id": f"demo{i:04d}.sgmsg",
        })
    return messages


def run_demo(root: Path) -> None:
    """Print the story on stdout; the handlers' logs and EMF metrics go to .flywheel/demo.log."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", category=UserWarning)
    log_path = root / ".flywheel" / "demo.log"
    log_path.parent.mkdir(exist_ok=True)
    real_stdout = sys.stdout
    with log_path.open("w") as log, contextlib.redirect_stdout(log):
        _demo(root, lambda *parts: print(*parts, file=real_stdout, flush=True))
    print(f"(handler logs and metrics: {log_path})")


def _demo(root: Path, print: Callable[..., None]) -> None:  # noqa: A002 - the demo's own printer
    print("== Flywheel demo (local: embedded PostgreSQL, in-process API) ==")
    url = ensure_local_database(root)
    print(f"database ready and migrated: {url.split('?')[0]}")
    server = make_server(root / "template.yaml", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LocalClient(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        messages = synthetic_campaign(f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}", 40)
        status, result = client.request("POST", "/messages", {"messages": messages})
        print(f"POST /messages (batch of {len(messages)}) -> {status}: created={result['created']} "
              f"existing={result['existing']}")
        status, again = client.request("POST", "/messages", {"messages": messages})
        print(f"POST /messages again (idempotent) -> {status}: created={again['created']} "
              f"existing={again['existing']}")
        status, bad = client.request("POST", "/messages", {"messages": [{**messages[0], "lead_email": "nope"}]})
        print(f"POST /messages with a bad email -> {status}: {bad['message']}")
        ids = [o["outcome_id"] for o in result["outcomes"]]
        stages: Counter[str] = Counter()
        for outcome_id in ids:
            _, outcome = client.request("GET", f"/messages/{outcome_id}")
            stages[outcome["stage"]] += 1
        sample = client.request("GET", f"/messages/{ids[0]}")[1]
        print(f"GET /messages/{ids[0]} -> stage={sample['stage']} label={sample['training_label']} "
              f"weight={sample['training_weight']} quality={sample['quality_score']}")
        print("funnel:", dict(stages))
    finally:
        server.shutdown()
    print("demo finished")

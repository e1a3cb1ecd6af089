"""Ten replies classified by the LLM path against a local fake provider that takes 300 ms per call:
side by side (as ClassifierFunction does) against one by one, in one run."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _harness import timed

LATENCY_S = 0.3
ANSWER = {
    "category": "interested",
    "sentiment_score": 0.6,
    "interest_level": "high",
    "objection_type": "none",
    "referral_contact": None,
    "return_date": None,
    "confidence": 0.9,
    "reason": "wants details",
}


class FakeProvider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(LATENCY_S)
        payload = json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": json.dumps(ANSWER), "refusal": None},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    import os
    from datetime import UTC, datetime

    from _harness import fresh_database

    fresh_database()
    from flywheel.models.messages import MessageIn
    from flywheel.models.replies import ReplyJob
    from flywheel.services.classification import classify_replies
    from flywheel.services.outcomes import register_messages
    from flywheel.settings import reset_settings

    ThreadingHTTPServer.request_queue_size = 64  # the default backlog of 5 would drop concurrent connects
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1")
    [registered] = register_messages(
        [MessageIn(org_id="bench", campaign_id="c", lead_id="l", body="hello", sent_at=datetime.now(UTC))]
    ).outcomes
    jobs = [
        ReplyJob(outcome_id=registered.outcome_id, reply_key=f"bench:{i}", text=f"Reply {i}: send details")
        for i in range(10)
    ]

    def run(concurrency: int) -> float:
        os.environ["CLASSIFIER_CONCURRENCY"] = str(concurrency)
        reset_settings()
        return timed(lambda: classify_replies(jobs))

    run(10)  # connections and imports: neither side pays for them
    one_by_one, side_by_side = run(1), run(10)
    server.shutdown()
    print(f"10 replies one by one: {one_by_one * 1000:.0f} ms")
    print(f"10 replies side by side (ClassifierFunction's path): {side_by_side * 1000:.0f} ms")
    print(f"concurrent vs sequential: {one_by_one / side_by_side:.1f}x")


if __name__ == "__main__":
    main()

"""CloudFormation's side of a custom resource request, locally (`flywheel invoke MigrateFunction -e
events/migrate_custom_resource_create.json`).

A custom resource answers with one PUT of a JSON document to the pre-signed S3 URL in the request
(`ResponseURL`), which only the real CloudFormation can hand out. Locally the URL points at this
listener instead, which takes the answer as CloudFormation does: a document with a Status of
SUCCESS or FAILED whose StackId, RequestId and LogicalResourceId are the request's (CloudFormation
ignores any other answer and the stack waits until the resource times out).
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MATCHING = ("StackId", "RequestId", "LogicalResourceId")


def is_custom_resource_request(event: dict[str, Any]) -> bool:
    return "ResponseURL" in event and "RequestType" in event


class LocalCloudFormation:
    """Listens on a free port of 127.0.0.1 for the answers to one request (`url` replaces its ResponseURL)."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        answers = self.answers

        class Receiver(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    answers.append(json.loads(body))
                except ValueError:
                    answers.append({"Status": None, "Reason": f"not JSON: {body[:200]!r}"})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/custom-resource-response"

    def __enter__(self) -> LocalCloudFormation:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verdict(self, request: dict[str, Any]) -> tuple[bool, str]:
        """(accepted with SUCCESS, what CloudFormation makes of the answers to `request`)."""
        if not self.answers:
            return False, "CloudFormation received no answer: the stack would wait until the resource times out"
        answer = self.answers[0]
        wrong = [key for key in MATCHING if answer.get(key) != request.get(key)]
        if wrong:
            return False, f"CloudFormation ignores the answer: its {', '.join(wrong)} differ from the request's"
        if answer.get("Status") not in ("SUCCESS", "FAILED"):
            return False, f"CloudFormation ignores the answer: Status {answer.get('Status')!r}"
        extra = f" ({len(self.answers) - 1} later answer(s) ignored)" if len(self.answers) > 1 else ""
        return answer["Status"] == "SUCCESS", (
            f"CloudFormation received {answer['Status']} for "
            f"{request.get('LogicalResourceId')} "
            f"({answer.get('PhysicalResourceId')}): {answer.get('Reason')}{extra}"
        )

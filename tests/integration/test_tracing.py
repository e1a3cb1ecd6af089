"""X-Ray tracing as it runs in Lambda (LAMBDA_TASK_ROOT set, a sampled trace header, the X-Ray
daemon's UDP address): the handlers import with the Tracer on, and the segments they send carry no
response and no personal data. The daemon is a UDP socket of this test, so what is checked is
what X-Ray would receive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_event

pytestmark = pytest.mark.integration

RUN = """
import json, sys
from pathlib import Path
from flywheel.local.invoke import invoke
from flywheel.observability import tracer
assert not tracer.disabled, "the Tracer must be on, as in Lambda"
root = Path(sys.argv[1])
template = root / "template.yaml"
registered = invoke("MessagesFunction", json.loads((root / "events" / "messages_register_single.json").read_text()),
                    template)
outcome_id = json.loads(registered["body"])["outcomes"][0]["outcome_id"]
read = json.loads((root / "events" / "messages_get.json").read_text())
read["pathParameters"]["outcome_id"], read["path"] = outcome_id, f"/messages/{outcome_id}"
print(json.dumps([registered["statusCode"], invoke("MessagesFunction", read, template)["statusCode"], outcome_id]))
"""


def _segments(sock: socket.socket) -> list[str]:
    sock.settimeout(0.5)
    received = []
    while True:
        try:
            received.append(sock.recv(65535).decode())
        except TimeoutError:
            return received


def test_traces_sent_to_xray_carry_no_response_and_no_personal_data(db_url: str) -> None:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "messages"),
        "AWS_LAMBDA_FUNCTION_NAME": "MessagesFunction",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "_X_AMZN_TRACE_ID": "Root=1-6744a1b0-2f0c4a7d9e8b1c3d5f6a7b8c;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        "PYTHONPATH": str(ROOT / "layers" / "flywheel"),
    }
    run = subprocess.run([sys.executable, "-c", RUN, str(ROOT)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    registered, read, outcome_id = json.loads(run.stdout.strip().splitlines()[-1])
    assert (registered, read) == (201, 200)
    segments = _segments(daemon)
    daemon.close()
    documents = [json.loads(s.split("\n", 1)[1]) for s in segments]
    assert any(d.get("name") == "## handler" for d in documents), segments  # traces were sent
    sent = json.loads(load_event("messages_register_single.json")["body"])
    for secret in (sent["lead_email"], sent["subject"], sent["body"][:20], sent["lead"]["last_name"], outcome_id):
        assert all(secret not in s for s in segments), f"{secret!r} reached X-Ray"
    assert all("handler response" not in s for s in segments)

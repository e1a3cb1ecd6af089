"""Schemathesis drives the local HTTP server through every route of the OpenAPI document with
generated and boundary inputs (valid and invalid), signing webhook bodies the way each provider
signs. Nothing may answer 5xx, and a refused request (4xx) must not have written a row."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from moto import mock_aws
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET

from flywheel.clients import http as http_client
from flywheel.clients.aws import reset_clients
from flywheel.local.openapi import build_document
from flywheel.local.server import make_server
from flywheel.local.template import read_template
from tests.conftest import ROOT, load_event
from tests.integration.test_webhook_crm import FakeCrm
from tests.webhook_helpers import (
    SECRETS,
    calendly_headers,
    configure,
    hubspot_headers,
    sendgrid_headers,
    standard_headers,
)

TABLES = (
    "organizations",
    "outcome_labels",
    "outcome_events",
    "quarantined_events",
    "suppressions",
    "outbox",
    "training_runs",
    "model_registry",
    "model_history",
    "experiments",
    "assignments",
)
COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)


# generated cases per operation (valid and invalid inputs); the hand-written hostile cases are in
# test_bad_input_matrix.py
EXAMPLES = 15
schema = schemathesis.openapi.from_dict(build_document(ROOT / "template.yaml"))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES, allow_x00=True
)


@pytest.fixture
def server(db_url: str, db, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(http_client, "TRANSPORT", httpx2.MockTransport(FakeCrm()))
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        reset_clients()
        queue = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="replies")["QueueUrl"]
        machine = boto3.client("stepfunctions", region_name="us-east-1").create_state_machine(
            name="weekly",
            roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fuzz-training")
        configure(
            monkeypatch, REPLIES_QUEUE_URL=queue, TRAINING_STATE_MACHINE_ARN=machine, TRAINING_BUCKET="fuzz-training"
        )
        http = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{http.server_address[1]}"
        # something to read: one organisation's messages
        body = json.loads(load_event("messages_register_batch.json")["body"])
        assert (
            _send(base, "POST", "/messages", {}, json.dumps(body).encode(), {"Content-Type": "application/json"})[0]
            == 201
        )
        try:
            yield base
        finally:
            http.shutdown()
            reset_clients()


def _send(
    base: str, method: str, path: str, query: dict[str, Any], body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    url = base + path + (("?" + urlencode(query, doseq=True)) if query else "")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _multipart(fields: Any) -> tuple[bytes, str]:
    boundary = "fuzz" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items() if isinstance(fields, dict) else []:
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode(
                "utf-8", "surrogatepass"
            )
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _sign(path: str, body: bytes, host: str) -> dict[str, str]:
    """The headers a genuine provider would send with this body."""
    if path == "/webhooks/sendgrid":
        return sendgrid_headers(body)
    if path == "/webhooks/calendly":
        return calendly_headers(body)
    if path == "/webhooks/crm/hubspot":
        return hubspot_headers(body, f"https://{host}{path}")  # the URL as called, as HubSpot signs it
    if path in ("/webhooks/crm/deals", "/webhooks/crm/meetings"):
        return standard_headers(body, "msg_" + hashlib.sha256(body).hexdigest()[:24])
    if path == "/webhooks/crm/pipedrive":
        credentials = f"{SECRETS['pipedrive_username']}:{SECRETS['pipedrive_password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    return {}


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES)
def test_no_route_answers_5xx_or_writes_on_refusal(case, server, db) -> None:
    template = case.operation.path
    path = case.formatted_path
    # most webhook calls carry the right secret path token, so the fuzzing reaches the parsers
    if template.endswith("/{token}") and hash(repr(case.body)) % 4:
        token = SECRETS["inbound_parse_token"] if "inbound" in template else SECRETS["salesforce_token"]
        path = template.replace("{token}", quote(token))
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    body: bytes | None = None
    if case.body is not NOT_SET and case.body is not None and case.method.upper() != "GET":
        media = case.media_type or "application/json"
        if media == "multipart/form-data":
            body, headers["Content-Type"] = _multipart(case.body)
        elif isinstance(case.body, bytes | str):
            body = case.body.encode("utf-8", "surrogatepass") if isinstance(case.body, str) else case.body
            headers.setdefault("Content-Type", media)
        else:
            body = json.dumps(case.body).encode("utf-8", "surrogatepass")
            headers.setdefault("Content-Type", media)
        if template.startswith("/webhooks/"):
            headers.update(_sign(template, body, server.removeprefix("http://")))
    before = db.execute(COUNTS).fetchone()
    status, payload = _send(server, case.method.upper(), path, case.query or {}, body, headers)
    assert status < 500, (case.method, path, status, payload[:500])
    if status >= 400:
        assert db.execute(COUNTS).fetchone() == before, (case.method, path, status, payload[:300])
        answer = json.loads(payload)
        # ours: {"error", "message"}; API Gateway's own 403 for an undefined method: {"message"}
        assert answer.get("error") or (status == 403 and answer.get("message")), payload[:300]


def test_committed_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(build_document(ROOT / "template.yaml"))), "run `make openapi`"
    routes = {r.path for spec in read_template(ROOT / "template.yaml").functions().values() for r in spec.routes}
    assert set(committed["paths"]) == routes  # every route of the template, none missing


def test_an_org_id_no_organisation_can_have_is_a_422_on_every_route(server) -> None:
    """Every route reading `org_id` from the query takes the ids senders register (a NUL reached
    PostgreSQL, which refuses it, as a 500 on /suppressions and /reports/latest)."""
    document = json.loads((ROOT / "openapi.json").read_text())
    checked = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            if "org_id" not in names or method not in ("get", "post"):
                continue
            concrete = path.replace("{outcome_id}", str(uuid.uuid4())).replace("{campaign_id}", "q4")
            for bad in ("\x00", "acme\x00", " acme", "a" * 129):
                query = {"org_id": bad, **({"lead_id": "lead-1"} if "lead_id" in names else {})}
                status, payload = _send(
                    server,
                    method.upper(),
                    concrete,
                    query,
                    b"{}" if method == "post" else None,
                    {"Content-Type": "application/json"},
                )
                assert status == 422 and json.loads(payload)["error"], (method, path, bad, status, payload[:300])
            checked.append(path)
    assert {"/suppressions", "/reports/latest"} <= set(checked)

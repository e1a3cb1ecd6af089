"""The Docker-free local runtime: `flywheel invoke` and `flywheel start-api` as a user runs them."""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flywheel.local.invoke import function_spec, worker_handler
from flywheel.local.server import PRINCIPAL_HEADER, make_server
from tests.conftest import ROOT, count, run_command
from tests.integration.test_caller_orgs import ACME, CALLER_ORGS, GLOBEX, PLATFORM, message
from tests.webhook_helpers import configure

FLYWHEEL = [sys.executable, "-m", "flywheel.cli"]


def test_invoke_prints_the_handler_result_as_json(db_url: str, db) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT / "layers" / "flywheel")}
    done = run_command([*FLYWHEEL, "invoke", "MessagesFunction", "-e", "events/messages_register_single.json"], env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout holds only the result; logs went to stderr
    assert result["statusCode"] == 201
    assert json.loads(result["body"])["created"] == 1
    assert count(db, "outcome_labels") == 1


def test_invoke_unknown_function_fails_clearly(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT / "layers" / "flywheel")}
    done = run_command([*FLYWHEEL, "invoke", "NoSuchFunction", "-e", "events/migrate.json"], env)
    assert done.returncode != 0 and "NoSuchFunction" in done.stderr


def test_start_api_serves_template_routes_over_http(db_url: str, db) -> None:
    server = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        body = json.loads(json.loads((ROOT / "events" / "messages_register_single.json").read_text())["body"])
        req = urllib.request.Request(
            f"{base}/messages",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201
            outcome_id = json.loads(resp.read())["outcomes"][0]["outcome_id"]
        with urllib.request.urlopen(f"{base}/messages/{outcome_id}?org_id=acme&verbose=1", timeout=30) as resp:
            assert json.loads(resp.read())["outcome_id"] == outcome_id
        try:
            urllib.request.urlopen(f"{base}/nowhere", timeout=30)
            raise AssertionError("expected 403")
        except urllib.error.HTTPError as err:
            assert err.code == 403
    finally:
        server.shutdown()


def test_build_event_marks_binary_bodies_base64() -> None:
    from flywheel.local.server import LocalApi, build_event

    api = LocalApi(ROOT / "template.yaml")
    matched = api.match("GET", "/messages/abc")
    assert matched is not None
    route, params = matched
    assert params == {"outcome_id": "abc"} and route.path == "/messages/{outcome_id}"
    event = build_event(
        "POST",
        "/messages?a=1&a=2",
        {"Content-Type": ["multipart/form-data; boundary=x"]},
        b"--x\r\n\xff\r\n",
        route,
        params,
        api.binary_types,
    )
    assert event["isBase64Encoded"] is True
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["queryStringParameters"] == {"a": "2"}
    text = build_event("POST", "/messages", {"Content-Type": ["application/json"]}, b'{"a":1}', route, {}, [])
    assert text["isBase64Encoded"] is False and text["body"] == '{"a":1}' and text["pathParameters"] is None


def test_template_path_is_found_from_a_subfolder() -> None:
    from flywheel.local.invoke import find_template

    assert find_template(ROOT / "functions" / "messages") == ROOT / "template.yaml"
    assert Path(find_template(ROOT)).exists()


def test_start_api_serves_requests_side_by_side(db_url: str, db) -> None:
    """One request waits on a row lock (a correction of an outcome another transaction holds);
    another request is answered meanwhile, on its own connection: requests run side by side as in
    production, not one at a time."""
    server = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def call(method: str, path: str, body: object = None, timeout: float = 60) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        message = json.loads(json.loads((ROOT / "events" / "messages_register_single.json").read_text())["body"])
        status, body = call("POST", "/messages", {"messages": [message, {**message, "idempotency_key": "other"}]})
        held, other = (o["outcome_id"] for o in body["outcomes"])
        answers: dict[str, tuple[int, dict]] = {}
        with db.transaction():
            db.execute("SELECT 1 FROM outcome_labels WHERE outcome_id = %s FOR UPDATE", (held,))
            blocked = threading.Thread(
                target=lambda: answers.update(
                    correction=call(
                        "POST",
                        f"/outcomes/{held}/corrections?org_id=acme",
                        {"training_label": "positive", "reason": "checked", "actor": "qa@acme.example"},
                    )
                )
            )
            blocked.start()
            with psycopg.connect(db_url, autocommit=True) as watcher:
                for _ in range(400):  # the correction waits on the row lock
                    if watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    ).fetchone() != (0,):
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("the correction never reached the database")
            status, outcome = call("GET", f"/messages/{other}?org_id=acme", timeout=15)
            assert status == 200 and outcome["outcome_id"] == other
            assert "correction" not in answers
        blocked.join(60)
        assert answers["correction"][0] == 201
    finally:
        server.shutdown()


def test_side_by_side_requests_never_answer_with_another_requests_data(
    db_url: str, db: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme's and globex's callers read their own outcomes at once, threads switching often: every
    answer is its own request's (Powertools keeps the request being answered in a class attribute
    and one context dict per resolver: side by side on worker threads, acme was answered with
    globex's outcome, or 500/404 with another request's route)."""
    configure(monkeypatch, API_CALLER_ORGS_JSON=json.dumps(CALLER_ORGS))
    server = make_server(ROOT / "template.yaml", "127.0.0.1", 0, workers=4)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def call(method: str, path: str, principal: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", PRINCIPAL_HEADER: principal}
        request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    interval = sys.getswitchinterval()
    try:
        ids = {}
        for org in ("acme", "globex"):
            status, body = call("POST", "/messages", PLATFORM, {"messages": [message(org, 0)]})
            assert status == 201, body
            ids[org] = body["outcomes"][0]["outcome_id"]
        wrong: Counter[str] = Counter()
        answered: Counter[str] = Counter()

        def reader(org: str, caller: str) -> None:
            for _ in range(15):
                status, body = call("GET", f"/messages/{ids[org]}?org_id={org}", caller)
                answered[org] += 1
                if not (status == 200 and body.get("outcome_id") == ids[org] and body.get("org_id") == org):
                    wrong[f"{org}'s caller got {status} {body.get('org_id') if status == 200 else body}"] += 1

        # switch threads often: the race is there at the default interval too, only rarer
        sys.setswitchinterval(1e-5)
        readers = [threading.Thread(target=reader, args=pair) for pair in [("acme", ACME), ("globex", GLOBEX)] * 3]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(120)
        assert not wrong, dict(wrong)
        assert answered == {"acme": 45, "globex": 45}
    finally:
        sys.setswitchinterval(interval)
        server.shutdown()


def test_each_worker_thread_is_an_execution_environment_of_its_own(db_url: str) -> None:
    """A worker thread of start-api loads a function's module itself (its own resolver and module
    globals, as each Lambda execution environment has) and keeps it for its next requests."""
    spec = function_spec("MessagesFunction", ROOT / "template.yaml")
    apps: dict[str, list[Any]] = {}

    def load(name: str) -> None:
        apps[name] = [inspect.unwrap(worker_handler(spec)).__globals__["app"] for _ in range(2)]

    workers = [threading.Thread(target=load, args=(name,)) for name in ("one", "two")]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert apps["one"][0] is apps["one"][1] and apps["two"][0] is apps["two"][1]
    assert apps["one"][0] is not apps["two"][0]

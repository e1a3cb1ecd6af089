"""MigrateFunction as CloudFormation's `DatabaseMigrations` custom resource: the response protocol
(one PUT of the documented JSON to the pre-signed URL), SUCCESS/FAILED, a stable
PhysicalResourceId, Delete as a no-op, and a rollback over a newer schema."""

from __future__ import annotations

import copy
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.local.invoke import invoke
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event

pytestmark = pytest.mark.integration


class _ResponseUrl(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the pre-signed S3 URL CloudFormation listens on."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_ResponseUrl,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/stack%7CDatabaseMigrations%7Creq?X-Amz-Signature=abc", received
    server.shutdown()
    server.server_close()


def _request(kind: str, url: str, physical_id: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("migrate_custom_resource_create.json"))
    event.update(RequestType=kind, ResponseURL=url)
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def _versions(url: str) -> list[str]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return [r["version"] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_create_migrates_and_answers_success_by_put_to_the_presigned_url(empty_db: str, response_url: Any) -> None:
    url, received = response_url
    result = invoke("MigrateFunction", _request("Create", url))
    expected = sorted(p.name[:4] for p in (ROOT / "sql").glob("*.sql"))
    assert result == {"applied": expected}
    assert _versions(empty_db) == expected
    [put] = received
    assert put["path"].endswith("X-Amz-Signature=abc")  # the URL exactly as given, signature included
    assert put["headers"].get("Content-Type") == ""  # what the pre-signed URL was signed for
    body = put["body"]
    sample = load_event("migrate_custom_resource_create.json")
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == "flywheel-schema"
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == (
        sample["StackId"],
        sample["RequestId"],
        "DatabaseMigrations",
    )
    assert body["Data"] == {"Applied": ",".join(expected)}


def test_update_with_nothing_pending_succeeds_and_keeps_the_physical_id(empty_db: str, response_url: Any) -> None:
    url, received = response_url
    invoke("MigrateFunction", _request("Create", url))
    invoke("MigrateFunction", _request("Update", url, physical_id="flywheel-schema"))
    assert [r["body"]["Status"] for r in received] == ["SUCCESS", "SUCCESS"]
    # the same id on update: CloudFormation would otherwise "replace" the schema and send a Delete
    assert received[1]["body"]["PhysicalResourceId"] == "flywheel-schema"
    assert received[1]["body"]["Data"] == {"Applied": ""}


def test_a_failing_migration_answers_failed_with_the_error_and_applies_nothing_of_it(
    empty_db: str, response_url: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = response_url
    for path in (ROOT / "sql").glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nALTER TABLE no_such_table ADD x int;\n"
    )
    monkeypatch.setenv("FLYWHEEL_SQL_DIR", str(tmp_path))
    result = invoke("MigrateFunction", _request("Update", url, physical_id="flywheel-schema"))
    [put] = received
    assert put["body"]["Status"] == "FAILED"
    assert "no_such_table" in put["body"]["Reason"]  # what the operator reads in the stack events
    assert put["body"]["PhysicalResourceId"] == "flywheel-schema"
    assert "error" in result
    assert "9999" not in _versions(empty_db)
    with psycopg.connect(empty_db) as conn:  # the failed file's transaction was rolled back whole
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)


def test_delete_is_a_no_op_that_answers_success(empty_db: str, response_url: Any) -> None:
    url, received = response_url
    invoke("MigrateFunction", _request("Create", url))
    before = _versions(empty_db)
    invoke("MigrateFunction", _request("Delete", url, physical_id="flywheel-schema"))
    assert received[-1]["body"]["Status"] == "SUCCESS"
    assert received[-1]["body"]["PhysicalResourceId"] == "flywheel-schema"
    assert _versions(empty_db) == before


def test_a_rollback_over_a_newer_schema_succeeds(
    empty_db: str, response_url: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = response_url
    invoke("MigrateFunction", _request("Create", url))
    with psycopg.connect(empty_db, autocommit=True) as conn:  # what a newer release had applied
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ('9998', 'newer', 'x')")
    invoke("MigrateFunction", _request("Update", url, physical_id="flywheel-schema"))
    assert received[-1]["body"]["Status"] == "SUCCESS"


def test_an_unreachable_database_answers_failed(response_url: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = response_url
    monkeypatch.setenv("DATABASE_URL", "postgresql://flywheel@127.0.0.1:1/flywheel?connect_timeout=1")
    reset_settings()
    invoke("MigrateFunction", _request("Create", url))
    [put] = received
    assert put["body"]["Status"] == "FAILED"
    assert "database unavailable" in put["body"]["Reason"]
    reset_settings()

"""Migrations against a real PostgreSQL: ordered, idempotent, locked, checksum-guarded."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal.migrations import migrate
from flywheel.errors import MigrationError
from flywheel.local.embedded import create_database
from flywheel.local.invoke import invoke
from tests.conftest import ROOT, load_event


@pytest.fixture
def empty_db(pg_admin_url: str) -> str:
    return create_database(pg_admin_url, f"flywheel_empty_{uuid.uuid4().hex[:10]}")


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def test_applies_all_then_is_a_no_op(empty_db: str) -> None:
    with connect(empty_db) as conn:
        applied = migrate(conn, ROOT / "sql")
        assert applied == sorted(p.name[:4] for p in (ROOT / "sql").glob("*.sql"))
        assert migrate(conn, ROOT / "sql") == []
        tables = {
            r["table_name"]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
        assert {"organizations", "outcome_labels", "outcome_events", "schema_migrations"} <= tables
        checksums = conn.execute("SELECT count(*) AS n FROM schema_migrations WHERE length(checksum) = 64").fetchone()
        assert checksums is not None and checksums["n"] == len(applied)


def test_refuses_to_run_when_an_applied_file_changed(empty_db: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    with connect(empty_db) as conn:
        migrate(conn, sql_dir)
        first = sorted(sql_dir.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after release\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(conn, sql_dir)


def test_a_failing_migration_rolls_back_alone(empty_db: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    (sql_dir / "9998_good.sql").write_text("CREATE TABLE good_one (id int);")
    (sql_dir / "9999_bad.sql").write_text("CREATE TABLE half_done (id int); SELECT no_such_function();")
    with connect(empty_db) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate(conn, sql_dir)
        versions = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        assert "9998" in versions and "9999" not in versions
        assert conn.execute("SELECT to_regclass('half_done') AS t").fetchone() == {"t": None}


def test_concurrent_runs_apply_each_migration_once(empty_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(empty_db) as conn:
                results.append(migrate(conn, ROOT / "sql"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = [v for r in results for v in r]
    assert sorted(applied) == sorted(p.name[:4] for p in (ROOT / "sql").glob("*.sql"))


def test_migrate_function_applies_pending_migrations(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_db)
    result = invoke("MigrateFunction", load_event("migrate.json"), ROOT / "template.yaml")
    assert result["applied"] and result["applied"][0] == "0001"
    assert invoke("MigrateFunction", load_event("migrate.json"), ROOT / "template.yaml") == {"applied": []}

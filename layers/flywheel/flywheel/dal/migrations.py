"""Ordered SQL migrations: each file once, in a transaction, under an advisory lock."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from flywheel.dal.connection import Connection
from flywheel.errors import MigrationError

# Any fixed 64-bit number, shared by every migrator of this schema.
ADVISORY_LOCK_KEY = 0x666C7977686C  # "flywhl"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def default_sql_dir() -> Path:
    """FLYWHEEL_SQL_DIR, else the Lambda task root (MigrateFunction ships sql/), else the repo."""
    if env := os.environ.get("FLYWHEEL_SQL_DIR"):
        return Path(env)
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and any(Path(task_root).glob("*.sql")):
        return Path(task_root)
    return Path(__file__).resolve().parents[4] / "sql"


def discover(sql_dir: Path) -> list[Migration]:
    migrations = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        migrations.append(Migration(match.group(1), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def migrate(
    conn: Connection, sql_dir: Path | None = None, *, allow_newer_database: bool = False, lock_timeout_s: int = 120
) -> list[str]:
    """Apply pending migrations; returns the versions applied (empty when up to date).

    `allow_newer_database`: a database that has migrations this code does not know is accepted
    (logged) instead of refused. That is what a CloudFormation rollback looks like: the previous
    code comes back over the newer, expand-only schema, which it is written to run on.
    """
    migrations = discover(sql_dir or default_sql_dir())
    # A SET pins this session to one server connection behind RDS Proxy, so the session-level
    # advisory lock and its unlock reach the same backend; it also bounds the wait for the lock.
    conn.execute(f"SET lock_timeout = '{int(lock_timeout_s)}s'")
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    text PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["version"]: row["checksum"]
            for row in conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        }
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is not None and recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.path.name} was changed after it was applied; add a new migration instead",
                    version=migration.version,
                )
        known = {m.version for m in migrations}
        if unknown := sorted(set(applied) - known):
            if not allow_newer_database:
                raise MigrationError(f"database has migrations this code does not know: {unknown}")
            from flywheel.observability import logger

            logger.warning(
                "database is ahead of this code (expand-only schema: carrying on)", extra={"unknown_versions": unknown}
            )
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            done.append(migration.version)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute("RESET lock_timeout")


def schema_version(conn: Connection) -> str | None:
    """The newest migration applied (the health check reports it)."""
    row = conn.execute("SELECT max(version) AS version FROM schema_migrations").fetchone()
    return row["version"] if row else None

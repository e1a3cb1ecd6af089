"""Bringing the database schema up to date."""

from __future__ import annotations

from pathlib import Path

import psycopg

from flywheel.dal.connection import get_connection
from flywheel.dal.migrations import migrate
from flywheel.errors import DependencyUnavailable


def apply_migrations(sql_dir: Path | None = None, *, allow_newer_database: bool = False) -> list[str]:
    try:
        return migrate(get_connection(), sql_dir, allow_newer_database=allow_newer_database)
    except psycopg.OperationalError as exc:  # e.g. the lock wait timed out, the connection dropped
        raise DependencyUnavailable("database unavailable while migrating", reason=str(exc).strip()) from exc

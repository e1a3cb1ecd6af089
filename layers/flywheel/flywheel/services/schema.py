"""Bringing the database schema up to date."""

from __future__ import annotations

from pathlib import Path

from flywheel.dal.connection import get_connection
from flywheel.dal.migrations import migrate


def apply_migrations(sql_dir: Path | None = None) -> list[str]:
    return migrate(get_connection(), sql_dir)

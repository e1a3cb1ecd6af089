"""One PostgreSQL connection per execution environment (thread), opened lazily, reopened when lost.

`prepare_threshold=None` keeps psycopg from creating server-side prepared statements, which
RDS Proxy (and PgBouncer in transaction mode) cannot share between clients.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flywheel.errors import DependencyUnavailable
from flywheel.settings import Settings, get_settings

Connection = psycopg.Connection[dict]

# One connection per thread: a Lambda execution environment runs one request at a time on one
# thread; the local API server runs requests side by side on its worker threads, each with its own
# connection, as separate execution environments would.
_local = threading.local()
# connections a forked child inherited: the parent's sessions, never used (nor closed, which would
# end the parent's session) by the child
_inherited: list[Connection] = []


def _forget_after_fork() -> None:
    if getattr(_local, "connection", None) is not None:
        _inherited.append(_local.connection)
    _local.connection, _local.url = None, None


os.register_at_fork(after_in_child=_forget_after_fork)


def conninfo(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    if settings.database_secret_arn:
        from flywheel.clients.secrets import get_json_secret

        secret = get_json_secret(settings.database_secret_arn)
        return make_conninfo(
            host=secret["host"],
            port=str(secret.get("port", 5432)),
            user=secret["username"],
            password=secret["password"],
            dbname=secret.get("dbname", "postgres"),
            sslmode=secret.get("sslmode", "require"),
        )
    raise DependencyUnavailable("no database configured: set DATABASE_URL or DATABASE_SECRET_ARN")


def connect(url: str, *, timeout_s: int = 5) -> Connection:
    try:
        return psycopg.connect(
            url,
            autocommit=True,  # transactions are explicit: `with transaction():`
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=timeout_s,
            application_name="flywheel",
        )
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable("database unavailable", reason=str(exc).strip()) from exc


def get_connection() -> Connection:
    """This thread's connection; reopened when lost or when the target changed."""
    settings = get_settings()
    url = conninfo(settings)
    current: Connection | None = getattr(_local, "connection", None)
    if current is None or current.closed or current.broken or url != getattr(_local, "url", None):
        close_connection()
        current = connect(url, timeout_s=settings.db_connect_timeout_s)
        _local.connection, _local.url = current, url
    return current


def close_connection() -> None:
    current: Connection | None = getattr(_local, "connection", None)
    if current is not None and not current.closed:
        current.close()
    _local.connection, _local.url = None, None


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction on the shared connection; a lost connection surfaces as 503-able."""
    conn = get_connection()
    try:
        with conn.transaction():
            yield conn
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable("database unavailable", reason=str(exc).strip()) from exc


def jsonb(value: object) -> Jsonb:
    """A JSONB parameter; datetimes, UUIDs and decimals are sent as their text forms."""
    return Jsonb(value, dumps=lambda v: json.dumps(v, default=str))

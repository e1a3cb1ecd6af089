"""One PostgreSQL connection per execution environment, opened lazily, reopened when lost.

`prepare_threshold=None` keeps psycopg from creating server-side prepared statements, which
RDS Proxy (and PgBouncer in transaction mode) cannot share between clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flywheel.errors import DependencyUnavailable
from flywheel.settings import Settings, get_settings

Connection = psycopg.Connection[dict]

_connection: Connection | None = None
_connection_url: str | None = None


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
    """The execution environment's connection; reopened when lost or when the target changed."""
    global _connection, _connection_url
    settings = get_settings()
    url = conninfo(settings)
    if _connection is None or _connection.closed or _connection.broken or url != _connection_url:
        close_connection()
        _connection = connect(url, timeout_s=settings.db_connect_timeout_s)
        _connection_url = url
    return _connection


def close_connection() -> None:
    global _connection, _connection_url
    if _connection is not None and not _connection.closed:
        _connection.close()
    _connection, _connection_url = None, None


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction on the shared connection; a lost connection surfaces as 503-able."""
    conn = get_connection()
    try:
        with conn.transaction():
            yield conn
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable("database unavailable", reason=str(exc).strip()) from exc


@contextmanager
def single_statement() -> Iterator[Connection]:
    """The shared connection for one statement that is its own transaction (autocommit): no
    BEGIN/COMMIT round trips, for single reads on hot paths. A lost connection surfaces as 503-able."""
    conn = get_connection()
    try:
        yield conn
    except psycopg.OperationalError as exc:
        raise DependencyUnavailable("database unavailable", reason=str(exc).strip()) from exc


def jsonb(value: object) -> Jsonb:
    """A JSONB parameter; datetimes, UUIDs and decimals are sent as their text forms."""
    return Jsonb(value, dumps=lambda v: json.dumps(v, default=str))

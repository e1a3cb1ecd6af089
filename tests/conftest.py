"""Shared fixtures: a real PostgreSQL (embedded or DATABASE_URL), a fresh database per test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

# the suites read what they just wrote: GET /suppressions and /quarantine list rows at once here
# (production waits LISTING_SETTLE_S; tests/integration/test_paging.py tests that wait itself)
os.environ.setdefault("LISTING_SETTLE_S", "0")

from flywheel.dal.connection import close_connection
from flywheel.dal.migrations import migrate
from flywheel.local.embedded import create_database, throwaway_server
from flywheel.local.server import LocalApi
from flywheel.services.experiments import forget_cache
from flywheel.settings import reset_settings

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures" / "providers"


def run_command(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """A command run from the project's root, its output captured as text (the caller checks it)."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def planted_context(item: dict[str, Any]) -> Any:
    """The redaction context of an item of tests/data/pii_planted.jsonl."""
    from flywheel.domain import redaction as rd

    c = item["context"]
    return rd.build_context(
        lead=c["lead"],
        colleagues=rd.names_in(c["lead_context"]),
        sender=c["sender"],
        regions=[c["lead_country"], (c["sender"] or {}).get("country")],
    )


@contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Fails with TimeoutError naming `what` when the block takes longer than `seconds` (SIGALRM):
    for code that could hang or take minutes on hostile input."""

    def expired(*_: object) -> None:
        raise TimeoutError(what)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def in_processes(
    targets: list[tuple[Callable[..., None], tuple[Any, ...]]], timeout: float
) -> tuple[list[str], list[int | None]]:
    """Each target run in a forked process of its own, side by side (each is given an error queue as
    its last argument, for the tracebacks it catches); returns those tracebacks and the exit codes."""
    import multiprocessing

    close_connection()  # children must not share the parent's socket
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    workers = [context.Process(target=target, args=(*args, errors)) for target, args in targets]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout)
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found, [worker.exitcode for worker in workers]


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    # stopped and deleted at the end of the session (not at exit: xdist may end a worker abruptly)
    with throwaway_server("flywheel-pg-") as url:
        # a throwaway server: a commit need not wait for its WAL to reach the disk (7 ms each on this
        # machine's disks); what a commit makes visible, and every lock, is the same
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("SELECT pg_reload_conf()")
        yield url


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    name = f"flywheel_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = create_database(pg_admin_url, name)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        migrate(conn, ROOT / "sql")
    return name


@contextmanager
def throwaway_database(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, template: str | None) -> Iterator[str]:
    """A new database (a copy of `template`, or empty) that the code under test uses, dropped after."""
    name = f"flywheel_t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_admin_url, name, template=template)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    reset_settings()
    forget_cache()  # the routing cache of the previous test's database
    yield url
    close_connection()
    reset_settings()
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with throwaway_database(pg_admin_url, monkeypatch, template_db) as url:
        yield url


@pytest.fixture
def empty_db(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database without any migration applied."""
    with throwaway_database(pg_admin_url, monkeypatch, None) as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A separate connection for assertions (never the one the code under test uses)."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


class ApiClient:
    """Drives the template's routes exactly as `flywheel start-api` does, minus the socket."""

    def __init__(self) -> None:
        self.api = LocalApi(ROOT / "template.yaml")

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, list[str]]]:
        raw = body if body is not None else (json.dumps(json_body).encode() if json_body is not None else b"")
        hdrs = {"Content-Type": ["application/json"]}
        hdrs.update({k: [v] for k, v in (headers or {}).items()})
        status, out_headers, payload = self.api.handle(method, path, hdrs, raw)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode()
        return status, parsed, out_headers

    def post(self, path: str, json_body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, parsed, _ = self.request("POST", path, json_body, **kw)
        return status, parsed

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, parsed, _ = self.request("GET", path, **kw)
        return status, parsed


@pytest.fixture
def api(db_url: str) -> ApiClient:
    return ApiClient()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def count(conn: psycopg.Connection[dict[str, Any]], table: str) -> int:
    row = conn.execute(psycopg.sql.SQL("SELECT count(*) AS n FROM {}").format(psycopg.sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row["n"])

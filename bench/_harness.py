"""Shared benchmark set-up: a throwaway embedded PostgreSQL (or DATABASE_URL), migrated."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "flywheel"))  # run as a plain script, without install

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", category=UserWarning)


_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A step that takes a while, on stderr (stdout ends with the headline)."""
    print(f"  [{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


_servers: list[str] = []


def fresh_database() -> str:
    """A new, migrated database (on one server per run); exported as DATABASE_URL for the code
    under test. Without BENCH_DATABASE_URL, on a throwaway server deleted when the benchmark exits."""
    from flywheel.dal.connection import connect
    from flywheel.dal.migrations import migrate
    from flywheel.local.embedded import create_database, throwaway_server
    from flywheel.settings import reset_settings

    admin = os.environ.get("BENCH_DATABASE_URL") or (_servers[0] if _servers else None)
    if not admin:
        progress("starting a throwaway PostgreSQL")
        server = throwaway_server("flywheel-bench-")
        admin = server.__enter__()
        _servers.append(admin)
        atexit.register(server.__exit__, None, None, None)  # stopped and deleted when the benchmark ends
        _exit_on_sigterm()
    url = create_database(admin, f"bench_{uuid.uuid4().hex[:10]}")
    with connect(url) as conn:
        migrate(conn, ROOT / "sql")
    os.environ["DATABASE_URL"] = url
    reset_settings()
    return url


def _exit_on_sigterm() -> None:
    """SIGTERM (`timeout`, a CI runner, `kill`) ends a benchmark as Ctrl-C does, through the exit
    handlers: by default it ends the process at once and leaves the server's folder behind."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def timed(fn: Callable[[], object]) -> float:
    """Seconds fn takes; the handlers' EMF metric lines are discarded, as CloudWatch would read them."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

"""Shared benchmark set-up: a throwaway embedded PostgreSQL (or DATABASE_URL), migrated."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
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


_servers: list[str] = []


def fresh_database() -> str:
    """A new, migrated database (on one server per run); exported as DATABASE_URL for the code under test."""
    from flywheel.dal.connection import connect
    from flywheel.dal.migrations import migrate
    from flywheel.local.embedded import create_database, start_embedded
    from flywheel.settings import reset_settings

    admin = os.environ.get("BENCH_DATABASE_URL") or (_servers[0] if _servers else None)
    if not admin:
        folder = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
        folder.chmod(0o755)
        # atexit runs last-registered first: the server stops, then its data directory goes
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        admin = start_embedded(folder / "data")
        _servers.append(admin)
    url = create_database(admin, f"bench_{uuid.uuid4().hex[:10]}")
    with connect(url) as conn:
        migrate(conn, ROOT / "sql")
    os.environ["DATABASE_URL"] = url
    reset_settings()
    return url


def timed(fn: Callable[[], object]) -> float:
    """Seconds fn takes; the handlers' EMF metric lines are discarded, as CloudWatch would read them."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

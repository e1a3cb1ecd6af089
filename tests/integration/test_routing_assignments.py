"""Routing reads before it writes: an assigned lead costs one primary-key read in a cold container,
and a write happens only at first assignment, race-safe across processes."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flywheel.dal.connection import close_connection, get_connection
from flywheel.services import experiments, training

LEADS = [f"lead-{i}" for i in range(40)]


@pytest.fixture
def experiment(db, db_url) -> Any:
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  provider_model_id, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'arn', 'amazon.nova-micro-v1:0:128k')""",
            (f"m-{version}", version, minor),
        )
    training.deploy_model("m-v1.0.0", canary_percentage=50, actor="test", reason="first model")
    deployed = training.deploy_model("m-v1.1.0", canary_percentage=50, actor="test", reason="challenger")
    experiments.forget_cache()
    yield deployed["experiment_id"]
    experiments.forget_cache()


def _cold_container_routes(url: str, leads: list[str], start: Any, results: Any) -> None:
    """A fresh process (a cold container): routes the leads as soon as every process is ready."""
    os.environ["DATABASE_URL"] = url
    from flywheel.services import experiments as routing

    routing.route("warm-org", "warm-lead")  # load the registry before the race
    start.wait()
    results.put({lead: routing.route("acme", lead)["arm"] for lead in leads})


def test_cold_containers_racing_on_first_assignment_record_one_arm_per_lead(db, db_url, experiment) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    # each process walks the leads in another order, so first assignments collide in every way
    orders = [LEADS, LEADS[::-1], LEADS[1::2] + LEADS[::2], LEADS[::2] + LEADS[1::2]]
    procs = [ctx.Process(target=_cold_container_routes, args=(db_url, order, start, results)) for order in orders]
    for p in procs:
        p.start()
    answers = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    stored = {
        r["lead_id"]: r["arm"]
        for r in db.execute("SELECT lead_id, arm FROM assignments WHERE org_id = 'acme'").fetchall()
    }
    assert sorted(stored) == sorted(LEADS)  # one row per lead
    for answer in answers:
        assert answer == stored  # every container answered the recorded arm
    assert {"champion", "challenger"} <= set(stored.values())


def _round_trips(trace: Path) -> list[str]:
    """The statements a libpq trace shows the client sending, one per round trip."""
    return [
        line.split("\t", 3)[3].strip()
        for line in trace.read_text().splitlines()
        if line.startswith("F\t") and ("\tParse\t" in line or "\tQuery\t" in line)
    ]


def test_an_assigned_lead_costs_one_primary_key_read_in_a_cold_container(db, experiment, tmp_path) -> None:
    for lead in LEADS[:5]:
        experiments.route("acme", lead)
    before = db.execute("SELECT lead_id, arm, xmin::text AS xmin, ctid::text AS ctid FROM assignments").fetchall()

    # a cold container: nothing cached but the registry snapshot every lead shares
    close_connection()
    experiments.forget_cache()
    experiments.route("acme", "another-lead")
    conn = get_connection()
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as sink:
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        answers = {lead: experiments.route("acme", lead)["arm"] for lead in LEADS[:5]}
        conn.pgconn.untrace()

    sent = _round_trips(trace)
    assert len(sent) == 5, sent  # one statement per lead: no BEGIN, COMMIT or INSERT
    assert all("SELECT arm FROM assignments WHERE experiment_id = $1" in s for s in sent), sent
    after = db.execute(
        "SELECT lead_id, arm, xmin::text AS xmin, ctid::text AS ctid FROM assignments WHERE lead_id <> 'another-lead'"
    ).fetchall()
    assert after == before  # the rows were not rewritten (an upsert would give them a new xmin)
    assert answers == {r["lead_id"]: r["arm"] for r in before}


def test_first_assignment_writes_once_then_reads(db, experiment, tmp_path) -> None:
    conn = get_connection()
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as sink:
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        first = experiments.route("acme", "new-lead")
        experiments.forget_cache()
        again = experiments.route("acme", "new-lead")
        conn.pgconn.untrace()
    sent = _round_trips(trace)
    inserts = [s for s in sent if "INSERT INTO assignments" in s]
    assert len(inserts) == 1, sent
    assert first["arm"] == again["arm"]
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'new-lead'").fetchone()["n"] == 1


def test_a_connection_the_server_closed_while_idle_is_reopened_for_the_read(db, db_url, experiment) -> None:
    first = experiments.route("acme", "idle-lead")
    experiments.forget_cache()
    experiments.route("acme", "warm-up")  # the registry snapshot, as a container keeps it
    backend = get_connection().execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert backend is not None
    db.execute("SELECT pg_terminate_backend(%s)", (backend["pid"],))  # what idle_session_timeout does
    assert experiments.route("acme", "idle-lead")["arm"] == first["arm"]  # read again, not a 503


def _promote_elsewhere(errors: Any) -> None:
    """Another container ends the experiment (its own process: this one's snapshot stays as it was)."""
    try:
        training.promote_winner(force=True, reason="ops call", actor="op")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(repr(exc))


def test_a_lead_met_after_another_container_ended_the_experiment_is_not_assigned_to_it(db, experiment) -> None:
    """A warm container's registry snapshot is up to 30 s old. A lead it meets first after another
    container promoted the challenger is routed as the registry now stands (the new champion, no
    experiment), and nothing is recorded in the ended experiment."""
    from tests.conftest import in_processes

    experiments.route("acme", "lead-before")  # this container's snapshot: the experiment running
    errors, codes = in_processes([(_promote_elsewhere, ())], timeout=60)
    assert errors == [] and codes == [0]
    assert (
        db.execute("SELECT status FROM experiments WHERE experiment_id = %s", (experiment,)).fetchone()["status"]
        != "running"
    )
    after = experiments.route("acme", "lead-after")
    assert after["experiment_id"] is None and after["model"]["model_registry_id"] == "m-v1.1.0", after
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'lead-after'").fetchone()["n"] == 0
    # a lead assigned while it ran keeps its arm in it (the read path is unchanged)
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'lead-before'").fetchone()["n"] == 1


def test_an_assignment_waits_for_an_experiment_being_ended_and_then_records_nothing(db, db_url, experiment) -> None:
    """The evaluator ends an experiment holding its row FOR UPDATE: a first assignment made meanwhile
    waits, then sees it ended and records nothing (before, it was recorded in the ended one)."""
    import threading

    from flywheel.dal import experiments as experiments_dal
    from flywheel.dal.connection import transaction

    with psycopg.connect(db_url, autocommit=False) as ender:
        ender.execute("SELECT 1 FROM experiments WHERE experiment_id = %s FOR UPDATE", (experiment,))
        got: dict[str, Any] = {}

        def assign() -> None:
            with transaction() as conn:
                got["arm"] = experiments_dal.assign(conn, experiment, "acme", "lead-waits", "challenger", 1, "s", 0)

        waiting = threading.Thread(target=assign)
        waiting.start()
        waiting.join(timeout=1.5)
        assert waiting.is_alive()  # it waits for the ender's lock
        ender.execute("UPDATE experiments SET status = 'promoted' WHERE experiment_id = %s", (experiment,))
        ender.commit()
        waiting.join(timeout=10)
    assert got == {"arm": None}
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'lead-waits'").fetchone()["n"] == 0


def test_a_recorded_arm_outlives_a_change_of_the_bucketing_hash(db, experiment) -> None:
    """The bucketing hash changed (FNV-1a 32 → SHA-256) under running experiments. A lead already
    routed keeps the arm recorded for it, whatever the current hash would choose: routing reads the
    recorded arm and never re-derives it (the evaluator counts arms from `assignments` too). Here
    every lead is recorded in the arm the current hash would NOT choose; only a lead never routed is
    bucketed by the current hash."""
    from flywheel.domain import routing

    row = db.execute("SELECT salt, allocation, stage, segment FROM experiments WHERE experiment_id = %s", (experiment,))
    exp = row.fetchone()
    recorded = {}
    for lead in LEADS:
        wanted = routing.arm_for(routing.bucket(exp["salt"], f"acme:{lead}"), float(exp["allocation"]))
        recorded[lead] = "champion" if wanted == "challenger" else "challenger"
        db.execute(
            """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
               VALUES (%s, 'acme', %s, %s, 0, %s, %s)""",
            (experiment, lead, recorded[lead], exp["stage"], exp["segment"]),
        )
    experiments.forget_cache()
    assert {lead: experiments.route("acme", lead)["arm"] for lead in LEADS} == recorded
    stored = db.execute("SELECT lead_id, arm FROM assignments WHERE org_id = 'acme' AND lead_id = ANY(%s)", (LEADS,))
    assert {r["lead_id"]: r["arm"] for r in stored} == recorded
    fresh = experiments.route("acme", "never-routed")["arm"]
    assert fresh == routing.arm_for(routing.bucket(exp["salt"], "acme:never-routed"), float(exp["allocation"]))

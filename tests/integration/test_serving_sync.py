"""Serving syncs side by side, each in a process of its own on real PostgreSQL, with a provider that
takes its time (as Bedrock does): one deployment per restore however many syncs run, a registry
change made during a provider call is acted on rather than overwritten, and a sync killed mid-call
leaves a claim that expires so the next sync repairs the model."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flywheel.clients import finetune
from flywheel.clients.finetune import BedrockFineTuner, Serving
from flywheel.dal.connection import close_connection
from flywheel.local.aws import SERVING, local_aws
from flywheel.services import experiments, serving, training
from tests.conftest import ROOT, in_processes

pytestmark = pytest.mark.integration

FORK = multiprocessing.get_context("fork")
CUSTOM_MODEL = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/aaaaaaaaaaaa"


class SlowProvider:
    """Bedrock as seen by several processes: each call is written to a shared file (one line, one
    append) and takes `seconds`; `inside` is set once a call of the kind named `signal_on` began."""

    name = "bedrock"

    def __init__(self, log: Path, seconds: float, signal_on: str = "") -> None:
        self.log, self.seconds, self.signal_on = log, seconds, signal_on
        self.inside = FORK.Event()

    def _call(self, line: str) -> int:
        with self.log.open("a") as out:
            out.write(line + "\n")
        if line.startswith(self.signal_on or "\0"):
            self.inside.set()
        time.sleep(self.seconds)
        return len(self.calls())

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def serve(self, model_id: str, name: str, tags: dict[str, str]) -> Serving:
        self._call(f"serve {tags['model_id']} {name}")
        return Serving(f"arn:aws:bedrock:us-east-1:1:provisioned-model/{name}", "provisioned", "creating")

    def retire(self, serving_id: str, kind: str) -> None:
        self._call(f"retire {serving_id}")

    def serving_status(self, serving_id: str, kind: str) -> Serving:
        return Serving(serving_id, kind, "creating")


@pytest.fixture
def slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlowProvider:
    fake = SlowProvider(tmp_path / "calls.log", seconds=1.5, signal_on="retire")
    monkeypatch.setattr(finetune, "provider_for", lambda name, settings: fake)  # forked children inherit it
    return fake


def insert(db: Any, model_id: str, minor: int, status: str, role: str | None, serving_status: str) -> None:
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, role, provider,
                                       provider_model_id, base_model, traffic_percentage, deployed_at,
                                       serving_model_id, serving_kind, serving_status)
           VALUES (%s, %s, 1, %s, 0, %s, %s, 'bedrock', %s, 'amazon.nova-micro-v1:0:128k', %s, now(), %s,
                   'provisioned', %s)""",
        (
            model_id,
            f"v1.{minor}.0",
            minor,
            status,
            role,
            f"arn:custom-model/{model_id}",
            100 if role == "champion" else 0,
            f"arn:pt/{model_id}-first",
            serving_status,
        ),
    )


def promoted_over_v1_0_0(db: Any) -> None:
    """v1.1.0 was promoted over v1.0.0, whose deployment is still there (its deletion pending): a
    rollback to v1.0.0 is possible."""
    insert(db, "flywheel-v1.0.0", 0, "archived", None, "active")
    db.execute(
        """INSERT INTO model_history (model_id, action, to_status, to_role, actor, at)
           VALUES ('flywheel-v1.0.0', 'deployed', 'deployed', 'champion', 'test', now() - interval '1 day')"""
    )
    insert(db, "flywheel-v1.1.0", 1, "deployed", "champion", "active")
    db.execute(
        """INSERT INTO model_history (model_id, action, to_status, to_role, actor)
           VALUES ('flywheel-v1.1.0', 'promoted', 'deployed', 'champion', 'test')"""
    )


def history(db: Any, model_id: str) -> list[str]:
    rows = db.execute("SELECT action FROM model_history WHERE model_id = %s ORDER BY history_id", (model_id,))
    return [row["action"] for row in rows]


def _sync(actor: str, start: Any, errors: Any) -> None:
    try:
        start.wait(30)  # every process claims at the same moment
        serving.sync(actor=actor)
        close_connection()
    except Exception:  # reported to the parent, which fails the test
        errors.put(traceback.format_exc())


def _rollback(provider: SlowProvider, errors: Any) -> None:
    try:
        assert provider.inside.wait(30), "the sync never began retiring"
        training.rollback(actor="operator", reason="a bad week", model_id="flywheel-v1.1.0")
        close_connection()
    except Exception:
        errors.put(traceback.format_exc())


def test_syncs_in_three_processes_restore_a_deleted_deployment_once(db: Any, slow: SlowProvider) -> None:
    """The restored champion's deployment was deleted; the training API's, the evaluator's and the
    pipeline's syncs run at once. One provisioned throughput is created (each one is billed by the
    hour), and it is the one the registry routes to."""
    insert(db, "flywheel-v1.0.0", 0, "deployed", "champion", "deleted")
    start = FORK.Barrier(3)
    errors, codes = in_processes([(_sync, (actor, start)) for actor in ("api", "evaluator", "training")], timeout=60)
    assert not errors and codes == [0, 0, 0], (errors, codes)

    served = [call for call in slow.calls() if call.startswith("serve")]
    assert served == ["serve flywheel-v1.0.0 fw-flywheel-v1.0.0-r0"], slow.calls()
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert (model["serving_status"], model["serving_model_id"]) == (
        "creating",
        "arn:aws:bedrock:us-east-1:1:provisioned-model/fw-flywheel-v1.0.0-r0",
    )
    assert model["serving_claimed_by"] is None  # given back
    assert history(db, "flywheel-v1.0.0") == ["serving_restoring"]


def test_syncs_in_three_processes_retire_an_idle_ready_models_throughput_once(db: Any, slow: SlowProvider) -> None:
    """A ready model past its grace period (its provisioned throughput billed by the hour for no
    traffic): syncs running at once delete it once, and only one records it."""
    insert(db, "flywheel-v1.0.0", 0, "ready", None, "active")
    db.execute("UPDATE model_registry SET created_at = now() - interval '2 hours'")
    start = FORK.Barrier(3)
    errors, codes = in_processes([(_sync, (actor, start)) for actor in ("api", "evaluator", "training")], timeout=60)
    assert not errors and codes == [0, 0, 0], (errors, codes)
    assert slow.calls() == ["retire arn:pt/flywheel-v1.0.0-first"]
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert (model["status"], model["serving_status"], model["serving_generation"]) == ("ready", "deleted", 1)
    assert model["serving_claimed_by"] is None
    assert history(db, "flywheel-v1.0.0") == ["serving_retired"]


def test_a_rollback_during_a_slow_retire_leaves_the_restored_champion_served(db: Any, slow: SlowProvider) -> None:
    """v1.1.0 was promoted over v1.0.0, whose deployment is still there (its deletion pending). A sync
    starts deleting it; while Bedrock works, an operator rolls v1.1.0 back, which restores v1.0.0
    as champion — and the rollback's own sync sees v1.0.0 still active. v1.0.0 must end served:
    the first sync records the deletion, sees the champion it just unserved, and serves it again."""
    promoted_over_v1_0_0(db)
    errors, codes = in_processes([(_sync, ("evaluator", FORK.Barrier(1))), (_rollback, (slow,))], timeout=60)
    assert not errors and codes == [0, 0], (errors, codes)

    rows = {r["model_id"]: r for r in db.execute("SELECT * FROM model_registry")}
    restored, withdrawn = rows["flywheel-v1.0.0"], rows["flywheel-v1.1.0"]
    assert (restored["status"], restored["role"], restored["serving_status"]) == ("deployed", "champion", "creating")
    assert restored["serving_model_id"] == "arn:aws:bedrock:us-east-1:1:provisioned-model/fw-flywheel-v1.0.0-r1"
    assert (withdrawn["status"], withdrawn["serving_status"]) == ("archived", "deleted")
    assert sorted(slow.calls()) == [
        "retire arn:pt/flywheel-v1.0.0-first",
        "retire arn:pt/flywheel-v1.1.0-first",
        "serve flywheel-v1.0.0 fw-flywheel-v1.0.0-r1",
    ]
    assert history(db, "flywheel-v1.0.0")[-2:] == ["serving_retired", "serving_restoring"]
    experiments.forget_cache()
    assert experiments.route("acme", "lead-1")["model"]["model_registry_id"] == "flywheel-v1.0.0"


def _archive_during_serve(provider: SlowProvider, url: str, errors: Any) -> None:
    try:
        assert provider.inside.wait(30), "the sync never began serving"
        with psycopg.connect(url, autocommit=True) as conn:  # the registry's change, as a second client
            conn.execute("UPDATE model_registry SET status = 'archived', role = NULL, traffic_percentage = 0")
    except Exception:
        errors.put(traceback.format_exc())


def test_a_model_archived_during_its_restore_does_not_keep_the_new_deployment(
    db: Any, db_url: str, slow: SlowProvider
) -> None:
    """The other direction: while Bedrock creates the restored deployment, the model is archived.
    The sync records what it made and, the row now asking for no deployment, deletes it at once
    (provisioned throughput is billed by the hour) instead of leaving it to the next daily sync."""
    insert(db, "flywheel-v1.0.0", 0, "deployed", "champion", "deleted")
    slow.signal_on = "serve"
    errors, codes = in_processes(
        [(_sync, ("api", FORK.Barrier(1))), (_archive_during_serve, (slow, db_url))], timeout=60
    )
    assert not errors and codes == [0, 0], (errors, codes)
    made = "arn:aws:bedrock:us-east-1:1:provisioned-model/fw-flywheel-v1.0.0-r0"
    assert slow.calls() == ["serve flywheel-v1.0.0 fw-flywheel-v1.0.0-r0", f"retire {made}"]
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert (model["status"], model["serving_status"], model["serving_model_id"]) == ("archived", "deleted", made)
    assert history(db, "flywheel-v1.0.0") == ["serving_restoring", "serving_retired"]


def _sync_until_killed(errors: Any) -> None:
    serving.sync(actor="api")  # killed inside the provider call: never returns


def test_a_sync_killed_mid_call_is_repaired_once_its_claim_expires(db: Any, slow: SlowProvider) -> None:
    """A Lambda killed at its timeout while Bedrock creates the deployment: the model stays claimed,
    so a sync meanwhile leaves it to the one presumed still running; once the claim has outlived any
    Lambda, the next sync (at the latest the daily one) restores it."""
    insert(db, "flywheel-v1.0.0", 0, "deployed", "champion", "deleted")
    slow.signal_on, slow.seconds = "serve", 60
    close_connection()
    worker = FORK.Process(target=_sync_until_killed, args=(None,))
    worker.start()
    assert worker.pid is not None
    try:
        assert slow.inside.wait(30)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)

    slow.seconds = 0
    meanwhile = serving.sync(actor="evaluator")
    assert len(slow.calls()) == 1  # left alone: its claim is live
    assert meanwhile["busy"] == ["flywheel-v1.0.0"]
    db.execute("UPDATE model_registry SET serving_claimed_until = now() - interval '1 second'")  # 900 s later
    assert serving.sync(actor="evaluator")["restoring"] == ["flywheel-v1.0.0"]
    # the same name (so the same request token) as the killed call: Bedrock answers with what it made
    assert slow.calls() == ["serve flywheel-v1.0.0 fw-flywheel-v1.0.0-r0"] * 2
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert (model["serving_status"], model["serving_claimed_by"]) == ("creating", None)


@pytest.fixture
def aws(db_url: str) -> Any:
    with local_aws(ROOT / "template.yaml"):
        experiments.forget_cache()
        yield
        experiments.forget_cache()


@pytest.mark.parametrize("kind", ["on_demand", "provisioned"])
def test_a_restore_retried_after_its_result_was_lost_creates_nothing_new(
    db: Any, aws: None, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Bedrock made the deployment but the sync died before recording it: the retry (a later second,
    after Bedrock forgot the request token too) gets that deployment back, not a second one."""
    monkeypatch.setattr(
        finetune, "provider_for", lambda name, settings: BedrockFineTuner("arn:aws:iam::1:role/b", kind)
    )
    insert(db, "flywheel-v1.0.0", 0, "deployed", "champion", "deleted")
    db.execute("UPDATE model_registry SET provider_model_id = %s", (CUSTOM_MODEL,))
    assert serving.sync()["restoring"] == ["flywheel-v1.0.0"]
    made = db.execute("SELECT serving_model_id FROM model_registry").fetchone()["serving_model_id"]
    assert list(SERVING.resources) == [made]

    lost = "UPDATE model_registry SET serving_status = 'deleted', serving_model_id = 'arn:pt/flywheel-v1.0.0-first'"
    time.sleep(1.1)  # the clock is not in the name
    db.execute(lost)
    assert serving.sync()["restoring"] == ["flywheel-v1.0.0"]  # same token: the same resource
    db.execute(lost)
    SERVING.resources[made].pop("token")  # Bedrock no longer remembers the token: the name is taken
    assert serving.sync()["restoring"] == ["flywheel-v1.0.0"]
    assert list(SERVING.resources) == [made]
    assert db.execute("SELECT serving_model_id FROM model_registry").fetchone()["serving_model_id"] == made


def _sync_alone(errors: Any) -> None:
    try:
        serving.sync(actor="evaluator")
        close_connection()
    except Exception:
        errors.put(traceback.format_exc())


def _rollback_after(acted: Any, rolled: Any, errors: Any) -> None:
    try:
        assert acted.wait(30), "the first sync never recorded its retire"
        training.rollback(actor="operator", reason="a bad week", model_id="flywheel-v1.1.0")  # its own sync too
        close_connection()
    except Exception:
        errors.put(traceback.format_exc())
    finally:
        rolled.set()


def test_a_rollback_after_a_syncs_last_result_but_before_it_lets_go_is_still_served(
    db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(An outside review's case.) A sync has recorded its retire of v1.0.0 and still holds the claim
    when an operator rolls back to v1.0.0: the rollback's own sync finds the model claimed and skips
    it. The first sync lets go only in the transaction that finds nothing more to do, so it sees
    the rollback and restores the champion's deployment (before, it let go without looking, and the
    champion stayed without a deployment until the daily sync)."""
    fake = SlowProvider(tmp_path / "calls.log", seconds=0.05)
    monkeypatch.setattr(finetune, "provider_for", lambda name, settings: fake)
    acted, rolled = FORK.Event(), FORK.Event()
    original = serving._bring_in_step

    def paused(model: dict[str, Any], owner: str, actor: str, done: dict[str, list[str]]) -> None:
        original(model, owner, actor, done)
        if model["model_id"] == "flywheel-v1.0.0" and actor == "evaluator" and not acted.is_set():
            acted.set()  # its result is committed, the claim still held
            rolled.wait(30)

    monkeypatch.setattr(serving, "_bring_in_step", paused)
    promoted_over_v1_0_0(db)
    errors, codes = in_processes([(_sync_alone, ()), (_rollback_after, (acted, rolled))], timeout=60)
    assert not errors and codes == [0, 0], (errors, codes)
    model = db.execute("SELECT * FROM model_registry WHERE model_id = 'flywheel-v1.0.0'").fetchone()
    assert (model["status"], model["role"]) == ("deployed", "champion")
    assert model["serving_status"] in ("creating", "active") and model["serving_claimed_by"] is None, model
    assert [c.split()[0] for c in fake.calls()].count("serve") == 1, fake.calls()

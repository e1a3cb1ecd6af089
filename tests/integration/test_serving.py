"""Serving in step with the registry, on real PostgreSQL and the Bedrock emulation (which, like
Bedrock, refuses inference on a custom model's own ARN): archiving a model deletes its deployment,
restoring an archived model creates a new one, and routing hands out what serves the model."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.clients.finetune import BedrockFineTuner, ProviderRefused
from flywheel.local.aws import SERVING, complete_bedrock_jobs, local_aws
from flywheel.services import experiments, serving, training
from flywheel.settings import reset_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

MODEL_A = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/aaaaaaaaaaaa"
MODEL_B = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/bbbbbbbbbbbb"


@pytest.fixture
def aws(db_url: str) -> Any:
    with local_aws(ROOT / "template.yaml"):
        experiments.forget_cache()
        yield
        experiments.forget_cache()


def _register(db: Any, model_id: str, minor: int, custom_model: str, role: str | None) -> str:
    served = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock").serve(custom_model, f"fw-{model_id}", {})
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, role, provider, provider_model_id,
                                      base_model, traffic_percentage, deployed_at, serving_model_id, serving_kind,
                                      serving_status)
           VALUES (%s, %s, 1, %s, 0, %s, %s, 'bedrock', %s, 'amazon.nova-micro-v1:0:128k', %s, now(), %s, 'on_demand',
                   'creating')""",
        (
            model_id,
            f"v1.{minor}.0",
            minor,
            "deployed" if role else "ready",
            role,
            custom_model,
            100 if role == "champion" else 0,
            served.model_id,
        ),
    )
    if role:
        db.execute(
            "INSERT INTO model_history (model_id, action, to_role, actor) VALUES (%s, 'deployed', %s, 'test')",
            (model_id, role),
        )
    return served.model_id


def _model(db: Any, model_id: str) -> dict[str, Any]:
    return db.execute("SELECT * FROM model_registry WHERE model_id = %s", (model_id,)).fetchone()


def test_inference_on_a_custom_models_own_arn_is_refused_as_bedrock_does(aws: None) -> None:
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock")
    with pytest.raises(ProviderRefused, match="ValidationException"):
        tuner.smoke_test(MODEL_A, [{"role": "user", "content": "hi"}])
    deployment = tuner.serve(MODEL_A, "fw-a", {}).model_id
    with pytest.raises(ProviderRefused, match="not ready"):  # still Creating
        tuner.smoke_test(deployment, [{"role": "user", "content": "hi"}])
    complete_bedrock_jobs()
    assert tuner.smoke_test(deployment, [{"role": "user", "content": "hi"}]).startswith("Subject:")


def test_archiving_deletes_the_deployment_and_restoring_creates_a_new_one(db: Any, aws: None) -> None:
    first = _register(db, "flywheel-v1.0.0", 0, MODEL_A, "champion")
    assert serving.sync()["active"] == [] and complete_bedrock_jobs() == 1
    assert serving.sync()["active"] == ["flywheel-v1.0.0"]
    route = experiments.route("acme", "lead-1")
    assert route["model"]["serving_model_id"] == first  # what the generator passes as modelId

    second = _register(db, "flywheel-v1.1.0", 1, MODEL_B, None)
    complete_bedrock_jobs()
    serving.sync()
    training.deploy_model("flywheel-v1.1.0", canary_percentage=10, actor="test", reason="canary")
    training.promote("flywheel-v1.1.0", actor="test", reason="won")
    # the old champion is archived, and with it goes its deployment (it costs while it exists)
    archived = _model(db, "flywheel-v1.0.0")
    assert (archived["status"], archived["serving_status"]) == ("archived", "deleted")
    assert first not in SERVING.resources and second in SERVING.resources
    actions = [
        r["action"]
        for r in db.execute("SELECT action FROM model_history WHERE model_id = 'flywheel-v1.0.0' ORDER BY history_id")
    ]
    assert actions[-2:] == ["archived", "serving_retired"]

    # a rollback restores the archived champion: a new deployment, not usable until active
    training.rollback(actor="test", reason="regression", model_id="flywheel-v1.1.0")
    restored = _model(db, "flywheel-v1.0.0")
    assert (restored["status"], restored["role"], restored["serving_status"]) == ("deployed", "champion", "creating")
    assert restored["serving_model_id"] not in (None, first)
    assert _model(db, "flywheel-v1.1.0")["serving_status"] == "deleted"
    experiments.forget_cache()
    assert experiments.route("acme", "lead-1")["model"]["serving_model_id"] is None  # use your default meanwhile
    complete_bedrock_jobs()
    assert serving.sync()["active"] == ["flywheel-v1.0.0"]
    experiments.forget_cache()
    assert experiments.route("acme", "lead-1")["model"]["serving_model_id"] == restored["serving_model_id"]


def test_a_failed_model_loses_its_deployment(db: Any, aws: None) -> None:
    deployment = _register(db, "flywheel-v1.0.0", 0, MODEL_A, None)
    db.execute("UPDATE model_registry SET status = 'failed' WHERE model_id = 'flywheel-v1.0.0'")
    assert serving.sync()["retired"] == ["flywheel-v1.0.0"]
    assert deployment not in SERVING.resources
    assert serving.sync() == {"retired": [], "restoring": [], "active": [], "failed": [], "errors": [], "busy": []}


def _ready(db: Any, model_id: str, minor: int, kind: str, run_status: str | None, ended_ago: str) -> str:
    """A ready model (no role: it serves no traffic) whose run ended `ended_ago` (or is still
    `run_status`), served as the pipeline serves it: an active deployment or provisioned throughput."""
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock", kind)
    custom = MODEL_B[:-12] + f"{minor:012d}"
    served = tuner.serve(custom, f"fw-{model_id}", {})
    run = db.execute(
        """INSERT INTO training_runs (scope, status, model_id, finished_at)
           VALUES (%s, %s, %s, CASE WHEN %s THEN now() - %s::interval END) RETURNING run_id""",
        (f"scope-{model_id}", run_status or "succeeded", model_id, run_status is None, ended_ago),
    ).fetchone()["run_id"]
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, provider_model_id,
                                      base_model, run_id, created_at, serving_model_id, serving_kind, serving_status)
           VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', %s, 'amazon.nova-micro-v1:0:128k', %s,
                   now() - interval '30 days', %s, %s, 'active')""",
        (model_id, f"v1.{minor}.0", minor, custom, run, served.model_id, kind),
    )
    complete_bedrock_jobs()
    return served.model_id


@pytest.mark.parametrize(
    ("kind", "within", "past"),
    [("provisioned", "50 minutes", "61 minutes"), ("on_demand", "6 days 23 hours", "7 days 1 minute")],
)
def test_a_ready_model_loses_its_deployment_after_its_grace_and_gets_it_back_when_deployed(
    db: Any, aws: None, monkeypatch: pytest.MonkeyPatch, kind: str, within: str, past: str
) -> None:
    """(An outside review's case.) The weekly model stays ready while another challenger is in its
    experiment (most Mondays) or when the run did not deploy: it serves no traffic, yet its
    provisioned throughput (billed by the hour) or on-demand deployment stayed until someone
    archived it. Now the daily sync deletes it once the run has been over for the grace period of
    its kind (an hour; a week), and deploying the model later creates it again."""
    monkeypatch.setenv("BEDROCK_SERVING", kind)
    reset_settings()
    _register(db, "flywheel-v1.0.0", 0, MODEL_A, "champion")
    kept = _ready(db, "flywheel-v1.1.0", 1, kind, None, within)
    stale = _ready(db, "flywheel-v1.2.0", 2, kind, None, past)
    done = serving.sync(actor="evaluator")
    assert done["retired"] == ["flywheel-v1.2.0"], done
    assert stale not in SERVING.resources and kept in SERVING.resources
    retired = _model(db, "flywheel-v1.2.0")
    assert (retired["status"], retired["serving_status"], retired["serving_generation"]) == ("ready", "deleted", 1)
    last = db.execute(
        "SELECT action, reason FROM model_history WHERE model_id = 'flywheel-v1.2.0' ORDER BY history_id DESC LIMIT 1"
    ).fetchone()
    assert last["action"] == "serving_retired" and "serving no traffic" in last["reason"], last
    assert _model(db, "flywheel-v1.1.0")["serving_status"] == "active"
    assert serving.sync()["retired"] == []  # in step now: nothing more to do

    # the operator deploys the retired model once the experiment has ended: it is served again
    deployed = training.deploy_model("flywheel-v1.2.0", canary_percentage=10, actor="test", reason="canary")
    assert deployed["role"] == "challenger"
    again = _model(db, "flywheel-v1.2.0")
    assert (again["status"], again["serving_status"], again["serving_kind"]) == ("deployed", "creating", kind)
    assert again["serving_model_id"] not in (None, stale) and again["serving_model_id"] in SERVING.resources
    complete_bedrock_jobs()
    assert serving.sync()["active"] == ["flywheel-v1.2.0"]
    experiments.forget_cache()
    challenger = next(
        r for r in (experiments.route("acme", f"lead-{i}") for i in range(200)) if r["arm"] == "challenger"
    )
    assert challenger["model"]["serving_model_id"] == again["serving_model_id"]


def test_a_ready_model_whose_run_is_still_in_flight_keeps_its_deployment(db: Any, aws: None) -> None:
    """The pipeline's own model is ready while its run smoke-tests and deploys it (the deployment
    can take up to two hours to come up): however long that takes, the sync leaves it alone."""
    for minor, status in enumerate(("serving", "smoke_testing")):
        _ready(db, f"flywheel-v1.{minor}.0", minor, "provisioned", status, "0 seconds")
    assert serving.sync()["retired"] == []
    assert {r["serving_status"] for r in db.execute("SELECT serving_status FROM model_registry")} == {"active"}
    db.execute("UPDATE training_runs SET status = 'succeeded', finished_at = now() - interval '2 hours'")
    assert serving.sync()["retired"] == ["flywheel-v1.0.0", "flywheel-v1.1.0"]


def test_a_ready_model_deployed_while_the_sync_retires_it_is_served(
    db: Any, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator deploys the ready model while Bedrock deletes its throughput (the deploy sees
    it still active, so its own sync has nothing to do): the retiring sync records the deletion,
    finds a deployed model without serving and creates it again in the same sync."""
    stale = _ready(db, "flywheel-v1.0.0", 0, "provisioned", None, "2 hours")
    original = BedrockFineTuner.retire

    def retire_while_deployed(self: BedrockFineTuner, serving_id: str, kind: str) -> None:
        original(self, serving_id, kind)
        training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="operator", reason="now")

    monkeypatch.setattr(BedrockFineTuner, "retire", retire_while_deployed)
    done = serving.sync(actor="evaluator")
    assert (done["retired"], done["restoring"]) == (["flywheel-v1.0.0"], ["flywheel-v1.0.0"]), done
    model = _model(db, "flywheel-v1.0.0")
    assert (model["status"], model["role"], model["serving_status"]) == ("deployed", "champion", "creating")
    assert model["serving_model_id"] not in (None, stale) and list(SERVING.resources) == [model["serving_model_id"]]
    assert model["serving_claimed_by"] is None

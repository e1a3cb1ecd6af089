"""Serving in step with the registry, on real PostgreSQL and the Bedrock emulation (which, like
Bedrock, refuses inference on a custom model's own ARN): archiving a model deletes its deployment,
restoring an archived model creates a new one, and routing hands out what serves the model."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.clients.finetune import BedrockFineTuner, ProviderRefused
from flywheel.local.aws import SERVING, complete_bedrock_jobs, local_aws
from flywheel.services import experiments, serving, training
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

"""The weekly training pipeline: the real ASL executed by moto, its Lambda tasks run in-process."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx2
import pytest

from flywheel.clients import finetune
from flywheel.local.aws import complete_bedrock_jobs, create_weekly_training, local_aws
from flywheel.local.invoke import invoke
from flywheel.services import training as training_service
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event
from tests.training_helpers import run_state_machine, seed_outcomes

FAST = {"wait_seconds": 0, "min_quality_score": 0.6, "deploy": True, "canary_percentage": 10}


@pytest.fixture
def aws(db_url: str, monkeypatch: pytest.MonkeyPatch):
    with local_aws(ROOT / "template.yaml"):
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="flywheel-training")
        monkeypatch.setenv("TRAINING_BUCKET", "flywheel-training")
        monkeypatch.setenv("BEDROCK_ROLE_ARN", "arn:aws:iam::123456789012:role/bedrock-customization")
        monkeypatch.setenv("FINETUNE_PROVIDER", "bedrock")
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        reset_settings()
        yield
    reset_settings()


def run(db, payload: dict[str, Any] | None = None, on_tick: Any = None) -> tuple[dict, dict]:
    execution = run_state_machine({**FAST, **(payload or {})}, on_tick=on_tick)
    row = db.execute("SELECT * FROM training_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    return execution, row


def s3_text(uri: str) -> str:
    bucket, _, key = uri[5:].partition("/")
    return boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_success_registers_smoke_tests_and_deploys_a_challenger(db, aws) -> None:
    seed_outcomes(db, 80)
    db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, role, provider,
                                              base_model, traffic_percentage, deployed_at)
                  VALUES ('flywheel-v1.0.0', 'v1.0.0', 1, 0, 0, 'deployed', 'champion', 'bedrock',
                          'amazon.nova-micro-v1:0:128k', 100, now())""")
    # the weekly schedule's input, with no wait between polls
    execution, row = run(
        db, {**load_event("training_weekly_schedule.json"), "wait_seconds": 0}, on_tick=complete_bedrock_jobs
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert row["status"] == "succeeded" and row["execution_arn"] == execution["executionArn"]
    assert row["job_id"] == f"flywheel-fw-{row['run_id']}" and row["trigger"] == "schedule"
    assert [h["status"] for h in row["status_history"]] == [
        "pending",
        "building",
        "uploading",
        "training",
        "registering",
        "serving",
        "smoke_testing",
        "succeeded",
    ]
    model = db.execute("SELECT * FROM model_registry WHERE model_id = %s", (row["model_id"],)).fetchone()
    assert (model["version"], model["status"], model["role"], float(model["traffic_percentage"])) == (
        "v1.1.0",
        "deployed",
        "challenger",
        10.0,
    )
    assert ":custom-model/amazon.nova-micro-v1:0:128k/" in model["provider_model_id"]
    assert model["dataset_hash"] == row["dataset_hash"]
    # served through an on-demand deployment, which the smoke test went through (the emulation,
    # like Bedrock, refuses inference on the custom model's own ARN)
    assert ":custom-model-deployment/" in model["serving_model_id"]
    assert (model["serving_kind"], model["serving_status"]) == ("on_demand", "active")
    champion = db.execute("SELECT traffic_percentage FROM model_registry WHERE model_id = 'flywheel-v1.0.0'").fetchone()
    assert float(champion["traffic_percentage"]) == 90.0
    # the dataset and its manifest sit side by side in S3, in Nova's conversation format
    manifest = json.loads(s3_text(row["dataset_uri"] + "/manifest.json"))
    counts = manifest["counts"]
    assert (
        manifest == row["manifest"]
        and counts["train"] + counts["validation"] + counts["duplicates_dropped"]["near_duplicate"] == 80
        and counts["validation"] > 0
        and manifest["residual_scan"]["passed"]
    )
    train = s3_text(row["dataset_uri"] + "/train.jsonl") + s3_text(row["dataset_uri"] + "/validation.jsonl")
    assert json.loads(train.splitlines()[0])["schemaVersion"] == "bedrock-conversation-2024"
    # the seeded outcomes carry names, companies, emails, phones and tracking links: none survives
    for planted in ("Dana1", "Reyes1", "Northwind1", "@northwind", "sam@acme.example", "415 555", "utm_content"):
        assert planted not in train, planted
    assert manifest["redactions"]["phone"] == 80 and manifest["redactions"]["link"] == 80
    actions = [r["action"] for r in db.execute("SELECT action FROM model_history ORDER BY history_id").fetchall()]
    assert actions == [
        "registered",
        "serving_started",
        "serving_active",
        "smoke_test_passed",
        "traffic_to_challenger",
        "deployed_as_challenger",
        "experiment_started",
    ]


def test_a_weekly_model_trained_during_an_experiment_waits_ready(db, aws) -> None:
    """The Monday run finishes while last week's challenger is still in its experiment (they run up
    to 56 days): the new model is registered, smoke-tested and left ready for a later deploy, and the
    run succeeds. (The Deploy step's 409 used to fail the run and the model — every week of every
    experiment.)"""
    from flywheel.services import training

    seed_outcomes(db, 80)
    for model_id, minor in (("flywheel-v1.0.0", 0), ("flywheel-v1.1.0", 1)):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'amazon.nova-micro-v1:0:128k')""",
            (model_id, f"v1.{minor}.0", minor),
        )
        training.deploy_model(model_id, canary_percentage=10, actor="test", reason="earlier weeks")
    execution, row = run(
        db, {**load_event("training_weekly_schedule.json"), "wait_seconds": 0}, on_tick=complete_bedrock_jobs
    )
    assert execution["status"] == "SUCCEEDED" and row["status"] == "succeeded", (execution, row)
    model = db.execute("SELECT * FROM model_registry WHERE model_id = %s", (row["model_id"],)).fetchone()
    assert (model["status"], model["role"], model["serving_status"]) == ("ready", None, "active")
    deferred = db.execute(
        "SELECT reason FROM model_history WHERE model_id = %s AND action = 'deploy_deferred'", (row["model_id"],)
    ).fetchone()
    assert "flywheel-v1.1.0" in deferred["reason"] and "/training/deploy/" in deferred["reason"]
    roles = {r["model_id"]: r["role"] for r in db.execute("SELECT model_id, role FROM model_registry")}
    assert roles == {"flywheel-v1.0.0": "champion", "flywheel-v1.1.0": "challenger", row["model_id"]: None}
    assert db.execute("SELECT count(*) AS n FROM experiments WHERE status = 'running'").fetchone()["n"] == 1


def test_insufficient_data_ends_cleanly(db, aws) -> None:
    seed_outcomes(db, 30)
    seed_outcomes(db, 100, org="private", opt_in=False, prefix="p")  # never trained on
    execution, row = run(db)
    assert execution["status"] == "SUCCEEDED"
    assert row["status"] == "insufficient_data" and "30 examples available" in row["error"]
    assert db.execute("SELECT count(*) AS n FROM model_registry").fetchone()["n"] == 0


def test_failed_job_records_the_failure(db, aws) -> None:
    seed_outcomes(db, 60)
    execution, row = run(db, on_tick=lambda: complete_bedrock_jobs("Failed", "training data has invalid rows"))
    assert execution["status"] == "FAILED"
    assert row["status"] == "failed" and row["error"] == "training data has invalid rows"
    assert db.execute("SELECT count(*) AS n FROM model_registry").fetchone()["n"] == 0


def test_poll_timeout_cancels_the_job(db, aws) -> None:
    seed_outcomes(db, 60)
    execution, row = run(db, {"max_wait_seconds": 0})
    assert execution["status"] == "FAILED"
    assert row["status"] == "cancelled" and "cancelled" in row["error"]
    job = boto3.client("bedrock", region_name="us-east-1").get_model_customization_job(jobIdentifier=row["job_id"])
    assert job["status"] == "Stopped"


def test_dpo_on_bedrock_fails_early_with_a_clear_reason(db, aws) -> None:
    seed_outcomes(db, 60)
    execution, row = run(db, {"method": "dpo"})
    assert execution["status"] == "FAILED" and row["status"] == "failed"
    assert "use method 'supervised' with bedrock" in row["error"] and row["dataset_uri"] is None


def test_a_residual_scan_hit_fails_the_run_and_uploads_nothing(db, aws, monkeypatch) -> None:
    from functools import partial

    from flywheel.domain.redaction import DEFAULT_DETECTORS, Redactor
    from flywheel.services import dataset
    from flywheel.services.dataset import build_dataset

    weak = Redactor(detectors=[d for d in DEFAULT_DETECTORS if d.name != "phone"])  # forgets phone numbers
    # the build step imports the builder when it runs (cold starts): patch it where it lives
    monkeypatch.setattr(dataset, "build_dataset", partial(build_dataset, redactor=weak))
    seed_outcomes(db, 60)
    execution, row = run(db)
    assert execution["status"] == "FAILED" and row["status"] == "failed" and row["dataset_uri"] is None
    assert "residual scan found personal data" in row["error"] and "415 555" not in row["error"]
    assert row["manifest"]["residual_scan"]["passed"] is False and row["manifest"]["residual_scan"]["hits"] > 0
    keys = [
        o["Key"]
        for o in boto3.client("s3", region_name="us-east-1")
        .list_objects_v2(Bucket="flywheel-training")
        .get("Contents", [])
    ]
    assert keys and all(k.endswith("manifest.json") for k in keys)


def test_a_transient_error_is_absorbed_by_the_retry(db, aws, fast_retries, monkeypatch) -> None:
    seed_outcomes(db, 60)
    calls = {"n": 0}
    real_upload = training_service.STEPS["upload"]

    def flaky(state: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            from flywheel.errors import DependencyUnavailable

            raise DependencyUnavailable("S3 throttled")
        return real_upload(state)

    monkeypatch.setitem(training_service.STEPS, "upload", flaky)
    execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert execution["status"] == "SUCCEEDED" and calls["n"] == 2
    assert row["status"] == "succeeded"
    assert db.execute("SELECT status, role FROM model_registry").fetchone() == {"status": "ready", "role": None}


def openai_error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None, headers: Any = None
) -> httpx2.Response:
    """An error as OpenAI sends it: `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return httpx2.Response(status, headers=headers or {}, json=body)


def quota_exhausted(code: str = "insufficient_quota") -> httpx2.Response:
    """OpenAI's 429 when the account's credits or spend limit are used up (no retry clears it)."""
    return openai_error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        code,
    )


def rate_limited() -> httpx2.Response:
    """OpenAI's 429 for a rate limit (it clears within seconds); the SDK's own retries come at once."""
    return openai_error(
        429,
        "Rate limit reached for gpt-4.1-mini in organization org-1 on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        "rate_limit_exceeded",
        headers={"retry-after-ms": "1"},
    )


class FakeOpenAI:
    """The OpenAI files and fine-tuning endpoints, at the HTTP transport. `answers` puts answers
    (made by the callables, in order) before the normal ones of (method, path ending)."""

    def __init__(
        self,
        refuse: bool = False,
        statuses: tuple[str, ...] = ("queued", "mystery_state", "succeeded"),
        answers: dict[tuple[str, str], list[Any]] | None = None,
    ):
        self.refuse, self.statuses = refuse, list(statuses)
        self.answers = {key: list(made) for key, made in (answers or {}).items()}
        self.requests: list[Any] = []
        self.jobs: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append((request.method, request.url.path, request.content))
        path = request.url.path
        for (method, ending), made in self.answers.items():
            if request.method == method and path.endswith(ending) and made:
                return made.pop(0)()
        if path.endswith("/files"):
            return httpx2.Response(
                200,
                json={
                    "id": f"file-{len(self.requests)}",
                    "object": "file",
                    "bytes": 10,
                    "created_at": 1,
                    "filename": "train.jsonl",
                    "purpose": "fine-tune",
                    "status": "processed",
                },
            )
        if path.endswith("/fine_tuning/jobs") and request.method == "POST":
            if self.refuse:
                return openai_error(
                    403,
                    "Fine-tuning is not available for this organization",
                    "invalid_request_error",
                    "training_not_available",
                )
            created = {
                **self._job("validating_files"),
                "id": f"ftjob-{len(self.jobs) + 1}",
                "metadata": json.loads(request.content).get("metadata"),
            }
            self.jobs.insert(0, created)  # the list is newest first
            return httpx2.Response(200, json=created)
        if path.endswith("/fine_tuning/jobs"):
            return httpx2.Response(200, json={"object": "list", "data": self.jobs, "has_more": False})
        if "/fine_tuning/jobs/" in path:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return httpx2.Response(200, json=self._job(status))
        if path.endswith("/chat/completions"):
            return httpx2.Response(
                200,
                json={
                    "id": "c",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "ft:gpt-4.1-mini:acme:fw",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Subject: hi"},
                        }
                    ],
                },
            )
        return openai_error(404, "Invalid URL", "invalid_request_error", None)

    @staticmethod
    def _job(status: str) -> dict[str, Any]:
        return {
            "id": "ftjob-abc123",
            "object": "fine_tuning.job",
            "created_at": 1,
            "model": "gpt-4.1-mini-2025-04-14",
            "organization_id": "org-1",
            "status": status,
            "training_file": "file-1",
            "validation_file": None,
            "hyperparameters": {"n_epochs": 3},
            "result_files": [],
            "seed": 1,
            "trained_tokens": 12345,
            "fine_tuned_model": "ft:gpt-4.1-mini:acme:fw:abc" if status == "succeeded" else None,
            "error": None,
            "finished_at": None,
        }


@pytest.fixture
def openai_fake(aws, monkeypatch):
    def install(fake: FakeOpenAI) -> FakeOpenAI:
        monkeypatch.setattr(finetune, "TRANSPORT", httpx2.MockTransport(fake))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", "http://fake-openai.local/v1")
        reset_settings()
        return fake

    return install


def test_openai_provider_end_to_end_with_unknown_statuses(db, openai_fake) -> None:
    fake = openai_fake(FakeOpenAI())
    seed_outcomes(db, 60)
    execution, row = run(db, {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14", "deploy": False})
    assert execution["status"] == "SUCCEEDED", execution
    created = next(json.loads(c) for m, p, c in fake.requests if p.endswith("/fine_tuning/jobs") and m == "POST")
    assert created["model"] == "gpt-4.1-mini-2025-04-14" and created["method"]["type"] == "supervised"
    assert created["suffix"].startswith("fw-") and created["metadata"]["run_id"] == str(row["run_id"])
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert model["provider_model_id"] == "ft:gpt-4.1-mini:acme:fw:abc" and model["trained_tokens"] == 12345


def test_training_not_available_fails_with_advice_to_switch(db, openai_fake) -> None:
    openai_fake(FakeOpenAI(refuse=True))
    seed_outcomes(db, 60)
    execution, row = run(db, {"provider": "openai", "base_model": "gpt-4o-mini-2024-07-18"})
    assert execution["status"] == "FAILED"
    assert row["status"] == "failed" and "training_not_available" in row["error"]
    assert "Switch FINETUNE_PROVIDER to 'bedrock'" in row["error"]


def test_training_api_runs_models_deploy_rollback_and_promotion(db, aws, monkeypatch) -> None:
    seed_outcomes(db, 60)
    monkeypatch.setenv("TRAINING_STATE_MACHINE_ARN", create_weekly_training(ROOT))
    reset_settings()

    def call(method: str, path: str, body: Any = None, query: dict | None = None) -> tuple[int, Any]:
        event = json.loads(json.dumps(load_event("training_run_post.json")))
        event.update(
            httpMethod=method,
            path=path,
            resource=path,
            body=json.dumps(body) if body is not None else None,
            queryStringParameters=query,
        )
        event["requestContext"].update(httpMethod=method, path="/dev" + path, resourcePath=path)
        from flywheel.local.server import LocalApi

        api = LocalApi(ROOT / "template.yaml")
        matched = api.match(method, path)
        assert matched is not None
        route, params = matched
        event["resource"], event["pathParameters"] = route.path, params or None
        result = invoke("TrainingApiFunction", event, ROOT / "template.yaml")
        return result["statusCode"], json.loads(result["body"])

    result = invoke("TrainingApiFunction", load_event("training_run_post.json"), ROOT / "template.yaml")
    assert result["statusCode"] == 202, result
    run_id = json.loads(result["body"])["run_id"]
    status, body = call("POST", "/training/run", {"wait_seconds": 0})
    assert status == 409 and body["error"] == "conflict"
    # let the execution finish
    for _ in range(400):
        complete_bedrock_jobs()
        status, run_row = call("GET", f"/training/runs/{run_id}")
        if run_row["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert run_row["status"] == "succeeded", run_row
    status, models = call("GET", "/training/models", query={"status": "deployed"})
    assert [m["role"] for m in models["models"]] == ["champion"]  # the first model has no one to challenge
    champion = models["models"][0]["model_id"]
    status, job = call("GET", f"/training/status/{run_row['job_id']}")
    assert status == 200 and job["state"] == "succeeded"

    # a second model, deployed by hand as a challenger, then promoted by force, then rolled back
    db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
                  VALUES ('flywheel-v1.1.0', 'v1.1.0', 1, 1, 0, 'ready', 'bedrock', 'amazon.nova-micro-v1:0:128k')""")
    status, deployed = call("POST", "/training/deploy/flywheel-v1.1.0", {"canary_percentage": 20})
    assert status == 200 and deployed["role"] == "challenger" and float(deployed["traffic_percentage"]) == 20
    status, refused = call("POST", "/training/promote-winner", {})
    assert status == 409 and refused["message"].startswith("the evaluator does not promote: continue")
    assert refused["decision"]["stage"] == "canary"
    status, promoted = call("POST", "/training/promote-winner", {"force": True, "reason": "sales ops asked"})
    assert status == 200 and promoted == {"promoted": "flywheel-v1.1.0", "archived": champion, "changed": True}
    status, rolled = call("POST", "/training/rollback", {"reason": "reply rate dropped", "model_id": "flywheel-v1.1.0"})
    assert status == 200 and rolled == {"rolled_back": "flywheel-v1.1.0", "champion": champion, "changed": True}
    history = db.execute(
        "SELECT action, reason, actor FROM model_history WHERE model_id = 'flywheel-v1.1.0' ORDER BY history_id"
    ).fetchall()
    assert [h["action"] for h in history] == ["deployed_as_challenger", "experiment_started", "promoted", "rolled_back"]
    assert history[2]["reason"] == "forced: sales ops asked" and history[2]["actor"].startswith("arn:aws:")
    status, stats = call("GET", "/training/stats", query={"min_quality_score": "0.6", "org_id": "acme"})
    assert status == 200 and stats["examples"] == 60 and stats["ready"] and stats["cost_estimate"]["usd"] is not None
    status, board = call("GET", "/training/leaderboard", query={"org_id": "acme"})
    assert status == 200 and {m["model_id"] for m in board["models"]} == {champion, "flywheel-v1.1.0"}
    assert call("GET", "/training/runs/00000000-0000-4000-8000-000000000000")[0] == 404
    assert call("POST", "/training/deploy/nope", {})[0] == 404


@pytest.mark.parametrize("provider", ["bedrock", "openai"])
def test_every_retried_step_is_a_no_op_when_its_work_is_done(
    db, aws, openai_fake, fast_retries, monkeypatch, provider
) -> None:
    """Each step does its work and then fails as a timed-out Lambda would (the answer is lost), so
    Step Functions retries it (the provider steps after their retrier's 15 s, compressed here); and
    the job is started but its recording fails once. The run still ends with one dataset build, one
    job, one model, one smoke test, one deployment."""
    from flywheel.errors import DependencyUnavailable

    fake = openai_fake(FakeOpenAI())
    seed_outcomes(db, 60)
    failed_once: set[str] = set()
    counts = {"build": 0, "bedrock_start": 0, "smoke": 0}

    def after_work(name: str, step: Any) -> Any:
        def wrapped(state: dict[str, Any], *args: Any) -> dict[str, Any]:
            answer = step(state, *args)
            if name not in failed_once:
                failed_once.add(name)
                raise DependencyUnavailable(f"{name}: the answer was lost")
            return answer

        return wrapped

    steps = (
        "check_data",
        "build",
        "upload",
        "start_job",
        "register",
        "start_serving",
        "poll_serving",
        "smoke_test",
        "deploy",
    )
    for name in steps:
        monkeypatch.setitem(training_service.STEPS, name, after_work(name, training_service.STEPS[name]))
    from flywheel.services import dataset as dataset_service

    real_update, real_build = training_service._update, dataset_service.build_dataset

    def update(run_id: str, status: str | None = None, **fields: Any) -> dict[str, Any]:
        if "job_id" in fields and "recording" not in failed_once:
            failed_once.add("recording")  # the job is started, its id is not recorded
            raise DependencyUnavailable("database blinked")
        return real_update(run_id, status, **fields)

    def build(*args: Any, **kwargs: Any) -> Any:
        counts["build"] += 1
        return real_build(*args, **kwargs)

    real_start, real_smoke = finetune.BedrockFineTuner.start, finetune.BedrockFineTuner.smoke_test
    monkeypatch.setattr(training_service, "_update", update)
    monkeypatch.setattr(dataset_service, "build_dataset", build)  # the build step imports it when it runs

    def counted(name: str, real: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(self, *args, **kwargs)

        return call

    monkeypatch.setattr(finetune.BedrockFineTuner, "start", counted("bedrock_start", real_start))
    monkeypatch.setattr(finetune.BedrockFineTuner, "smoke_test", counted("smoke", real_smoke))
    payload = {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14"} if provider == "openai" else {}
    execution, row = run(db, payload, on_tick=complete_bedrock_jobs)
    assert execution["status"] == "SUCCEEDED", execution
    # an OpenAI fine-tune is served as it is: no deployment to wait for
    assert failed_once == {*steps, "recording"} - ({"poll_serving"} if provider == "openai" else set())
    assert row["status"] == "succeeded" and counts["build"] == 1
    if provider == "openai":
        posts = [p for m, p, _ in fake.requests if m == "POST"]
        assert sum(p.endswith("/fine_tuning/jobs") for p in posts) == 1 and row["job_id"] == "ftjob-1"
        assert sum(p.endswith("/files") for p in posts) == 2  # training and validation, once each
        assert sum(p.endswith("/chat/completions") for p in posts) == 1
    else:
        assert counts["bedrock_start"] == 1 and counts["smoke"] == 1
    [model] = db.execute("SELECT * FROM model_registry").fetchall()
    assert model["status"] == "deployed" and model["role"] == "champion"
    actions = [h["action"] for h in db.execute("SELECT action FROM model_history ORDER BY history_id")]
    assert actions.count("smoke_test_passed") == 1 and actions.count("registered") == 1
    assert actions.count("serving_started") == 1 and actions.count("serving_active") == (provider == "bedrock")


def test_stale_runs_are_reconciled_with_their_executions(db, aws, monkeypatch) -> None:
    """A run left `pending` by a crash before StartExecution blocks its scope only for the grace
    period; a run whose execution ended without recording it is closed with the execution's end;
    a StartExecution whose answer was lost after the execution started leaves the run running."""
    from flywheel.clients import stepfunctions
    from flywheel.errors import Conflict, DependencyUnavailable

    machine = boto3.client("stepfunctions", region_name="us-east-1").create_state_machine(
        name="ends-at-once",
        roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    monkeypatch.setenv("TRAINING_STATE_MACHINE_ARN", machine)
    reset_settings()
    crashed = db.execute("""INSERT INTO training_runs (scope, status, trigger, params) VALUES ('global', 'pending',
                            'api', '{}') RETURNING run_id""").fetchone()["run_id"]
    with pytest.raises(Conflict):  # within the grace period it may still be starting
        training_service.start_run({"wait_seconds": 0}, "global")
    db.execute("UPDATE training_runs SET updated_at = now() - interval '10 minutes' WHERE run_id = %s", (crashed,))
    started = training_service.start_run({"wait_seconds": 0, "deploy": False}, "global")
    closed = db.execute("SELECT status, error FROM training_runs WHERE run_id = %s", (crashed,)).fetchone()
    assert closed == {"status": "failed", "error": "the training state machine never started for this run"}

    # its execution ends without recording the run's end: the run says so as soon as someone reads it
    for _ in range(100):
        if stepfunctions.execution_status(started["execution_arn"]) == "SUCCEEDED":
            break
        time.sleep(0.05)
    run_row = training_service.get_run(started["run_id"])
    assert (run_row["status"], run_row["error"]) == (
        "failed",
        "execution ended SUCCEEDED without recording the run's end",
    )

    real_start = stepfunctions.start_execution

    def lost_answer(*args: Any, **kwargs: Any) -> str:
        real_start(*args, **kwargs)
        raise DependencyUnavailable("could not start the training state machine", reason="read timeout")

    monkeypatch.setattr(stepfunctions, "start_execution", lost_answer)
    third = training_service.start_run({"wait_seconds": 0, "deploy": False}, "global")
    row = db.execute("SELECT status, execution_arn FROM training_runs WHERE run_id = %s", (third["run_id"],)).fetchone()
    assert row["status"] != "failed" and row["execution_arn"] == third["execution_arn"]


# --- transient provider errors (throttling, 5xx) during a long run ----------------------------------


@pytest.fixture
def fast_retries(aws):
    """A Task's Retry pauses at most 10 ms (the SmokeTest's waits minutes in AWS)."""
    from flywheel.local.aws import compressed_retries

    with compressed_retries(0.01):
        yield


def _bedrock_answers(operation: str, code: str, times: int = 10**6, after: int = 0, status: int = 429) -> Any:
    """Bedrock answers `times` calls of `operation` (after the first `after`) with `code`, as a busy
    account sees ThrottlingException after botocore's own retries: the error takes the production
    path through the client. Only an error the service model lists for the operation, with its
    HTTP status (what botocore's Stubber checks). A context manager yielding the count of calls seen."""
    from contextlib import contextmanager

    from flywheel.local.aws import _aws_error, boto3_session

    service = "bedrock-runtime" if operation == "InvokeModel" else "bedrock"
    import botocore.session

    service_model = botocore.session.get_session().get_service_model(service)
    listed = {
        shape.name: shape.metadata["error"]["httpStatusCode"]
        for shape in service_model.operation_model(operation).error_shapes
    }
    assert listed.get(code) == status, f"the service model lists {sorted(listed.items())} for {operation}"

    @contextmanager
    def answering() -> Any:
        seen = {"n": 0, "refused": 0}

        def handler(model: Any, **_: Any) -> None:
            if model.name == operation:
                seen["n"] += 1
                if after < seen["n"] <= after + times:
                    seen["refused"] += 1
                    raise _aws_error(code, "Rate exceeded", operation, status)

        event = f"before-call.{service}.{operation}"
        boto3_session().events.register_first(event, handler)
        try:
            yield seen
        finally:
            boto3_session().events.unregister(event, handler)

    return answering()


def _bedrock_job(job_id: str) -> dict[str, Any]:
    return boto3.client("bedrock", region_name="us-east-1").get_model_customization_job(jobIdentifier=job_id)


def test_a_throttling_burst_while_the_job_trains_is_polled_through(db, aws) -> None:
    """Ten throttled polls (an outage far longer than a Task's three quick retries) leave the job
    running: the run keeps polling, then registers and serves its model. (It used to fail after
    four throttled polls, leaving the Bedrock job training, billed, its model never registered.)"""
    seed_outcomes(db, 60)
    # start_job's lookup of an earlier job is the first call: the polls after it are throttled
    with _bedrock_answers("GetModelCustomizationJob", "ThrottlingException", times=10, after=1) as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert seen["refused"] == 10 and seen["n"] > 11
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    model = db.execute("SELECT status, serving_status FROM model_registry").fetchone()
    assert model == {"status": "ready", "serving_status": "active"}
    assert _bedrock_job(row["job_id"])["status"] == "Completed"


def test_a_provider_unreachable_past_max_wait_cancels_the_job(db, aws) -> None:
    """An outage that outlasts max_wait_seconds ends the run as a slow job does: the job is
    cancelled, and the run says the provider did not answer."""
    seed_outcomes(db, 60)
    with _bedrock_answers("GetModelCustomizationJob", "InternalServerException", after=1, status=500) as seen:
        execution, row = run(db, {"deploy": False, "wait_seconds": 1, "max_wait_seconds": 2})
    # one poll a second for two seconds, then CancelJob's question whether the job ended meanwhile
    assert execution["status"] == "FAILED" and seen["refused"] == 3
    assert row["status"] == "cancelled" and "the provider did not answer the last 2 polls" in row["error"]
    assert "InternalServerException" in row["error"]  # (the service model lists no ServiceUnavailable here)
    assert _bedrock_job(row["job_id"])["status"] == "Stopped"


def test_a_refused_poll_fails_the_run_and_stops_its_job(db, aws) -> None:
    """A poll Bedrock refuses (not transient) fails the run at once; RecordFailure stops the job it
    leaves behind rather than let it train, billed, for a run that has ended."""
    seed_outcomes(db, 60)
    with _bedrock_answers("GetModelCustomizationJob", "AccessDeniedException", after=1, status=403):
        execution, row = run(db, {"deploy": False})
    assert execution["status"] == "FAILED"
    assert row["status"] == "failed" and "AccessDeniedException" in row["error"] and row["model_id"] is None
    assert _bedrock_job(row["job_id"])["status"] == "Stopped"


def test_a_throttled_smoke_test_is_retried_not_failed(db, aws, fast_retries) -> None:
    """One ThrottlingException on the smoke test's InvokeModel says nothing about the model: the
    SmokeTest Task's Retry tries again and the run succeeds. (The step used to record it as a failed
    smoke test: the model failed for good and its deployment deleted.)"""
    seed_outcomes(db, 60)
    with _bedrock_answers("InvokeModel", "ThrottlingException", times=1) as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert seen == {"n": 2, "refused": 1}
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    model = db.execute("SELECT status, serving_status FROM model_registry").fetchone()
    assert model == {"status": "ready", "serving_status": "active"}
    actions = [h["action"] for h in db.execute("SELECT action FROM model_history ORDER BY history_id")]
    assert actions.count("smoke_test_passed") == 1 and "smoke_test_failed" not in actions
    assert [h["status"] for h in row["status_history"]].count("smoke_testing") == 1


def test_a_smoke_test_that_never_reaches_the_provider_says_so(db, aws, fast_retries) -> None:
    """Bedrock throttles the smoke test through all of the Task's retries: the run fails saying the
    provider could not be reached (no smoke-test verdict is recorded), and the model, whose run has
    ended, is failed with that reason and its deployment deleted, as for any ended run."""
    seed_outcomes(db, 60)
    with _bedrock_answers("InvokeModel", "ThrottlingException") as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    retries = next(r for r in STATES_SMOKE_RETRY if "DependencyUnavailable" in r["ErrorEquals"])["MaxAttempts"]
    assert seen["n"] == 1 + retries
    assert execution["status"] == "FAILED" and row["status"] == "failed"
    assert row["error"].startswith("the smoke test could not reach the provider: ")
    assert "ThrottlingException" in row["error"] and "retries exhausted" in row["error"]
    model = db.execute("SELECT * FROM model_registry").fetchone()
    assert model["status"] == "failed" and model["serving_status"] == "deleted"
    history = db.execute("SELECT action, reason FROM model_history ORDER BY history_id").fetchall()
    assert not {"smoke_test_failed", "smoke_test_passed"} & {h["action"] for h in history}
    failed = next(h for h in history if h["action"] == "failed")
    assert failed["reason"].startswith("the smoke test could not reach the provider")


STATES_SMOKE_RETRY = json.loads((ROOT / "statemachine" / "weekly_training.asl.json").read_text())["States"][
    "SmokeTest"
]["Retry"]


FAST_RETRY = {"retry-after-ms": "1"}  # the SDK's own retries come at once


def test_openai_5xx_on_the_smoke_test_is_retried(db, openai_fake, fast_retries) -> None:
    """OpenAI answers the smoke test's chat completion 503 three times (the SDK's first try and its
    two retries): the Task's Retry tries again and the run succeeds."""

    class Overloaded(FakeOpenAI):
        def __init__(self) -> None:
            super().__init__(statuses=("running", "succeeded"))
            self.chat_failures = 3

        def __call__(self, request: httpx2.Request) -> httpx2.Response:
            if request.url.path.endswith("/chat/completions") and self.chat_failures:
                self.chat_failures -= 1
                self.requests.append((request.method, request.url.path, request.content))
                return openai_error(503, "The server is overloaded", "server_error", None, headers=FAST_RETRY)
            return super().__call__(request)

    fake = openai_fake(Overloaded())
    seed_outcomes(db, 60)
    execution, row = run(db, {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14", "deploy": False})
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert fake.chat_failures == 0 and sum(p.endswith("/chat/completions") for _, p, _ in fake.requests) == 4
    assert db.execute("SELECT status FROM model_registry").fetchone()["status"] == "ready"


def test_openai_5xx_while_polling_keeps_the_job(db, openai_fake) -> None:
    """OpenAI answers five job polls 500 (each after the SDK's own retries), more than PollJob's
    Retry would absorb: the job is taken as still running and the run polls on."""

    class Flaky(FakeOpenAI):
        def __init__(self) -> None:
            super().__init__(statuses=("running", "succeeded"))
            self.poll_failures = 15  # five polls, each the SDK's try and its two retries

        def __call__(self, request: httpx2.Request) -> httpx2.Response:
            if "/fine_tuning/jobs/" in request.url.path and request.method == "GET" and self.poll_failures:
                self.poll_failures -= 1
                return openai_error(500, "internal error", "server_error", None, headers=FAST_RETRY)
            return super().__call__(request)

    fake = openai_fake(Flaky())
    seed_outcomes(db, 60)
    execution, row = run(db, {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14", "deploy": False})
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert fake.poll_failures == 0
    assert db.execute("SELECT status FROM model_registry").fetchone()["status"] == "ready"


# --- a job that ends while it is being timed out (the outside re-review) ------------------------------


def test_a_job_that_completed_during_a_polling_outage_is_registered_not_cancelled(db, aws) -> None:
    """The job completes while every poll goes unanswered until max_wait_seconds: CancelJob asks the
    provider first and the run goes on to Register. (It used to stop the job; Bedrock refuses to
    stop a completed one, and the run failed with "Cannot stop a job in status Completed", its model
    never registered.)"""
    seed_outcomes(db, 60)
    with _bedrock_answers("GetModelCustomizationJob", "InternalServerException", times=2, after=1, status=500) as seen:
        execution, row = run(
            db, {"deploy": False, "wait_seconds": 1, "max_wait_seconds": 2}, on_tick=complete_bedrock_jobs
        )
    assert seen["refused"] == 2
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert _bedrock_job(row["job_id"])["status"] == "Completed"
    model = db.execute("SELECT status, serving_status, provider_model_id FROM model_registry").fetchone()
    assert (model["status"], model["serving_status"]) == ("ready", "active")
    assert model["provider_model_id"] == _bedrock_job(row["job_id"])["outputModelArn"]


def test_a_job_that_completes_as_it_is_cancelled_is_registered(db, aws) -> None:
    """The job completes between the poll that timed it out and the cancel, which Bedrock refuses
    (ValidationException): the job has ended, so the run registers its model rather than fail."""
    from flywheel.local.aws import SERVING, boto3_session

    def completes_first(**_: Any) -> None:
        complete_bedrock_jobs()

    seed_outcomes(db, 60)
    event = "before-call.bedrock.StopModelCustomizationJob"
    boto3_session().events.register_first(event, completes_first)
    try:
        execution, row = run(db, {"deploy": False, "max_wait_seconds": 0}, on_tick=SERVING.finish)
    finally:
        boto3_session().events.unregister(event, completes_first)
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert _bedrock_job(row["job_id"])["status"] == "Completed"
    assert db.execute("SELECT status FROM model_registry").fetchone()["status"] == "ready"


def test_a_refused_cancel_of_a_running_job_still_fails_the_run(db, aws) -> None:
    """A cancel refused for a job that is still running is a refusal: the run fails with it."""
    seed_outcomes(db, 60)
    with _bedrock_answers("StopModelCustomizationJob", "AccessDeniedException", status=403):
        execution, row = run(db, {"deploy": False, "max_wait_seconds": 0})
    assert execution["status"] == "FAILED"
    assert row["status"] == "failed" and "AccessDeniedException" in row["error"]
    assert db.execute("SELECT count(*) AS n FROM model_registry").fetchone()["n"] == 0


def test_max_wait_ends_a_slow_job_polled_without_waits(db, aws) -> None:
    """With wait_seconds 0 the Wait states add up to nothing: max_wait_seconds is measured on the
    clock from the job's start, so a job that never finishes is cancelled after it. (The Wait(0) ->
    PollJob loop used to spin until the execution's timeout or its event history limit.)"""
    seed_outcomes(db, 60)
    started = time.monotonic()
    execution = run_state_machine({**FAST, "deploy": False, "max_wait_seconds": 2}, timeout_s=30)
    row = db.execute("SELECT * FROM training_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert execution["status"] == "FAILED" and time.monotonic() - started < 30
    assert row["status"] == "cancelled" and "(max 2 s): cancelled" in row["error"], row["error"]
    assert _bedrock_job(row["job_id"])["status"] == "Stopped"


# --- transient provider errors while the model is served (StartServing, PollServing) ----------------

POLL_SERVING_RETRIES = next(
    r["MaxAttempts"]
    for r in json.loads((ROOT / "statemachine" / "weekly_training.asl.json").read_text())["States"]["PollServing"][
        "Retry"
    ]
    if "DependencyUnavailable" in r["ErrorEquals"]
)


@pytest.mark.parametrize(
    ("kind", "operation", "code", "status"),
    [
        ("on_demand", "GetCustomModelDeployment", "ThrottlingException", 429),
        ("provisioned", "GetProvisionedModelThroughput", "InternalServerException", 500),
    ],
)
def test_a_throttling_burst_while_the_deployment_is_created_is_polled_through(
    db, aws, fast_retries, monkeypatch, kind: str, operation: str, code: str, status: int
) -> None:
    """Five unanswered polls of the deployment (or provisioned throughput) being created, more than
    the 3 quick retries PollServing had: its retrier waits them out and the run serves its model.
    (The run used to fail on the fourth, its trained model failed and its deployment deleted.)"""
    monkeypatch.setenv("BEDROCK_SERVING", kind)
    reset_settings()
    seed_outcomes(db, 60)
    with _bedrock_answers(operation, code, times=5, status=status) as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert seen["refused"] == 5 and seen["n"] > 5
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    model = db.execute("SELECT status, serving_kind, serving_status FROM model_registry").fetchone()
    assert model == {"status": "ready", "serving_kind": kind, "serving_status": "active"}


def test_a_throttled_deployment_request_is_retried_and_makes_one_deployment(db, aws, fast_retries) -> None:
    """CreateCustomModelDeployment throttled four times: StartServing's retrier tries again, one
    deployment is made, and the run's history says `serving` once."""
    from flywheel.local.aws import SERVING

    seed_outcomes(db, 60)
    with _bedrock_answers("CreateCustomModelDeployment", "ThrottlingException", times=4) as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
        deployments = [r for r in SERVING.resources.values() if r["kind"] == "deployment"]
    assert seen == {"n": 5, "refused": 4}
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert len(deployments) == 1 and deployments[0]["status"] == "Active"
    assert [h["status"] for h in row["status_history"]].count("serving") == 1


def test_a_serving_poll_that_is_never_answered_fails_after_its_retries(db, aws, fast_retries) -> None:
    """Bedrock throttles every poll of the deployment: the run fails once PollServing's retries run
    out, saying so, and what it had started is wound down (the model failed, its deployment deleted)."""
    seed_outcomes(db, 60)
    with _bedrock_answers("GetCustomModelDeployment", "ThrottlingException") as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert POLL_SERVING_RETRIES >= 5 and seen["n"] == 1 + POLL_SERVING_RETRIES
    assert execution["status"] == "FAILED" and row["status"] == "failed"
    assert "ThrottlingException" in row["error"] and "retries exhausted" in row["error"]
    model = db.execute("SELECT status, serving_status FROM model_registry").fetchone()
    assert model == {"status": "failed", "serving_status": "deleted"}


def test_a_refused_serving_poll_fails_the_run_at_once(db, aws, fast_retries) -> None:
    """A refusal is no transient error: one poll, and the run fails naming it."""
    seed_outcomes(db, 60)
    with _bedrock_answers("GetCustomModelDeployment", "AccessDeniedException", status=403) as seen:
        execution, row = run(db, {"deploy": False}, on_tick=complete_bedrock_jobs)
    assert seen["n"] == 1
    assert execution["status"] == "FAILED" and "AccessDeniedException" in row["error"]
    assert "retries exhausted" not in row["error"]
    model = db.execute("SELECT status, serving_status FROM model_registry").fetchone()
    assert model == {"status": "failed", "serving_status": "deleted"}


# --- OpenAI's two 429s: an exhausted quota (permanent) and a rate limit (transient) -------------------

OPENAI_RUN = {"provider": "openai", "base_model": "gpt-4.1-mini-2025-04-14", "deploy": False}


def _calls(fake: FakeOpenAI, method: str, ending: str) -> int:
    return sum(m == method and p.endswith(ending) for m, p, _ in fake.requests)


def test_an_exhausted_openai_quota_on_the_smoke_test_fails_the_run_at_once_and_says_so(
    db, openai_fake, fast_retries
) -> None:
    """429 insufficient_quota will not clear by retrying: one request (neither the SDK nor the
    SmokeTest retrier repeats it), the run fails naming the exhausted quota, and no smoke-test
    verdict is recorded (the model is failed as the model of an ended run). (It used to be retried
    about 8 minutes, 21 requests, and fail as "could not reach the provider".)"""
    quota = [quota_exhausted for _ in range(30)]
    fake = openai_fake(FakeOpenAI(statuses=("running", "succeeded"), answers={("POST", "/chat/completions"): quota}))
    seed_outcomes(db, 60)
    execution, row = run(db, OPENAI_RUN)
    assert execution["status"] == "FAILED" and row["status"] == "failed"
    assert _calls(fake, "POST", "/chat/completions") == 1
    assert row["error"].startswith("OpenAI quota exhausted (smoke test: 429 insufficient_quota)"), row["error"]
    assert "Add credits or raise the limit" in row["error"] and "retries exhausted" not in row["error"]
    history = db.execute("SELECT action, reason FROM model_history ORDER BY history_id").fetchall()
    assert not {"smoke_test_failed", "smoke_test_passed"} & {h["action"] for h in history}
    assert next(h for h in history if h["action"] == "failed")["reason"].startswith("OpenAI quota exhausted")


@pytest.mark.parametrize("code", ["insufficient_quota", "credit_balance_exhausted"])
def test_an_exhausted_openai_quota_at_job_creation_fails_the_run_at_once(
    db, openai_fake, fast_retries, code: str
) -> None:
    quota = [lambda: quota_exhausted(code) for _ in range(30)]
    fake = openai_fake(FakeOpenAI(answers={("POST", "/fine_tuning/jobs"): quota}))
    seed_outcomes(db, 60)
    execution, row = run(db, OPENAI_RUN)
    assert execution["status"] == "FAILED" and row["status"] == "failed"
    assert _calls(fake, "POST", "/fine_tuning/jobs") == 1
    assert row["error"].startswith(f"OpenAI quota exhausted (job creation: 429 {code})"), row["error"]
    assert row["job_id"] is None and db.execute("SELECT count(*) AS n FROM model_registry").fetchone()["n"] == 0


def test_an_openai_rate_limit_on_the_smoke_test_is_retried(db, openai_fake, fast_retries) -> None:
    """A plain rate limit (429 rate_limit_exceeded) stays transient: the SDK's three tries, then
    the SmokeTest retrier's, and the run succeeds."""
    limited = [rate_limited for _ in range(3)]
    fake = openai_fake(FakeOpenAI(statuses=("running", "succeeded"), answers={("POST", "/chat/completions"): limited}))
    seed_outcomes(db, 60)
    execution, row = run(db, OPENAI_RUN)
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert _calls(fake, "POST", "/chat/completions") == 4
    assert db.execute("SELECT status FROM model_registry").fetchone()["status"] == "ready"


# --- what a lost answer or short waits must not do: bill twice, loop forever ------------------------


def test_a_lost_job_creation_answer_starts_one_job_not_two(db, openai_fake, fast_retries) -> None:
    """OpenAI creates the job but its answer never arrives (a read timeout). The SDK would resend the
    POST itself, without a key OpenAI honours, and start (and bill) a second job; sent once, the
    error goes to StartJob's retrier, whose repeat finds the job by the run id and uses it."""
    fake = FakeOpenAI(statuses=("running", "succeeded"))

    def lost(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/fine_tuning/jobs") and not fake.jobs:
            fake(request)  # created at OpenAI ...
            raise httpx2.ReadTimeout("timed out", request=request)  # ... and the answer is lost
        return fake(request)

    openai_fake(lost)  # type: ignore[arg-type]
    seed_outcomes(db, 60)
    execution, row = run(db, OPENAI_RUN)
    assert execution["status"] == "SUCCEEDED", (row["status"], row["error"])
    assert _calls(fake, "POST", "/fine_tuning/jobs") == 1 and len(fake.jobs) == 1
    assert row["job_id"] == fake.jobs[0]["id"] == "ftjob-1"
    # the file upload is sent once too (two files: training and validation, or just training)
    assert _calls(fake, "POST", "/files") <= 2


class _Creating:
    def serving_status(self, serving_id: str, kind: str) -> finetune.Serving:
        return finetune.Serving(serving_id, kind, "creating")


SERVING_STATE: dict[str, Any] = {
    "run_id": "r1",
    "provider": "bedrock",
    "model_id": "m1",
    "serving_model_id": "arn:dep",
    "serving_kind": "deployment",
    "serving_state": "creating",
    "serving_elapsed_seconds": 0,
    "serving_wait_seconds": 0,  # what start_serving sets for wait_seconds 0
}


@pytest.fixture
def stuck_deployment(monkeypatch):
    """poll_serving against a deployment that stays Creating; the clock moves by `clock['t']`."""
    clock = {"t": 0.0}
    real = training_service.datetime

    class Clock(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return real(2026, 11, 2, tzinfo=UTC) + timedelta(seconds=clock["t"])

    monkeypatch.setenv("SERVING_MAX_WAIT_S", "600")
    reset_settings()
    monkeypatch.setattr(training_service, "datetime", Clock)
    monkeypatch.setattr(training_service, "_recorded", lambda run_id: {"run_id": run_id})
    monkeypatch.setattr(training_service, "provider_for", lambda *a, **k: _Creating())
    yield clock
    reset_settings()


def test_a_deployment_stuck_creating_times_out_by_the_clock_with_wait_seconds_0(stuck_deployment) -> None:
    """With `wait_seconds` 0 the serving Waits last 0 s and their sum never grows: the clock since
    serving started (polls and their retries included) times the deployment out, as for the job."""
    state = {**SERVING_STATE}
    polls = 0
    while state["serving_state"] == "creating" and polls < 100:
        stuck_deployment["t"] += 30  # each poll (with its retries) takes 30 s
        state = training_service.poll_serving(state)
        polls += 1
    assert state["serving_state"] == "timed_out" and polls == 21  # 600 s after the first poll
    assert state["serving_elapsed_seconds"] == 600
    assert state["error"]["Cause"] == "the deployment was not active after 600 s (21 polls)"


def test_a_deployment_polled_back_to_back_times_out_before_the_history_limit(stuck_deployment) -> None:
    """Polls that take no time (locally, or a quick provider) stop at MAX_SERVING_POLLS, well inside
    Step Functions' 25,000 history events, however long SERVING_MAX_WAIT_S is."""
    state = {**SERVING_STATE}
    polls = 0
    while state["serving_state"] == "creating" and polls < 3_000:
        state = training_service.poll_serving(state)
        polls += 1
    assert state["serving_state"] == "timed_out" and polls == training_service.MAX_SERVING_POLLS
    assert 9 * (training_service.MAX_SERVING_POLLS + training_service.MAX_JOB_POLLS) < 25_000 - 2_000


def test_a_job_polled_back_to_back_times_out_before_the_history_limit(monkeypatch) -> None:
    """As for the deployment: the job poll stops at MAX_JOB_POLLS, and CancelJob says why."""

    class Running:
        def status(self, job_id: str) -> finetune.JobStatus:
            return finetune.JobStatus("running", "running")

    monkeypatch.setattr(training_service, "provider_for", lambda *a, **k: Running())
    monkeypatch.setattr(training_service, "_update", lambda *a, **k: {})
    state: dict[str, Any] = {
        "run_id": "r1",
        "provider": "bedrock",
        "job_id": "j1",
        "wait_seconds": 0,
        "max_wait_seconds": 86_400,
        "job_started_at": datetime.now(UTC).isoformat(),
    }
    polls = 0
    while polls < 5_000:
        state = training_service.poll(state)
        polls += 1
        if state["job_state"] != "running":
            break
    assert state["job_state"] == "timed_out" and polls == training_service.MAX_JOB_POLLS

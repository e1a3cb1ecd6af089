"""The weekly training pipeline's steps (each a Task of the state machine) and the registry.

Every step takes the execution's state and returns it updated; the state machine decides what
runs next. Steps are idempotent enough to be retried: each records what it did on the run.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flywheel.clients import stepfunctions
from flywheel.clients.aws import client
from flywheel.clients.finetune import (
    BedrockFineTuner,
    FineTuneProvider,
    ProviderRefused,
    Serving,
    UploadedDataset,
    provider_for,
)
from flywheel.clients.storage import download_file, put_json, upload_file
from flywheel.dal import models as models_dal
from flywheel.dal import training as training_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.errors import (
    Conflict,
    DependencyUnavailable,
    FlywheelError,
    InvalidInput,
    NotFound,
    ProviderQuotaExhausted,
    RunClosed,
)
from flywheel.observability import count, logger
from flywheel.services import experiments, registry, serving
from flywheel.settings import Settings, get_settings

if TYPE_CHECKING:
    from flywheel.services.dataset import DatasetSpec

DEFAULT_PARAMS: dict[str, Any] = {
    "min_quality_score": 0.6,
    "deploy": False,
    "canary_percentage": 10,
    "since_days": 90,
    "wait_seconds": 600,
}


def _params(state: dict[str, Any], settings: Settings) -> dict[str, Any]:
    params = {
        **DEFAULT_PARAMS,
        **{
            k: v
            for k, v in state.items()
            if k in DEFAULT_PARAMS
            or k
            in (
                "provider",
                "base_model",
                "method",
                "max_wait_seconds",
                "scope",
                "serving_wait_seconds",
                "serving_max_wait_seconds",
            )
        },
    }
    params.setdefault("provider", settings.finetune_provider)
    params.setdefault("base_model", settings.base_model_for(params["provider"]))
    params.setdefault("method", settings.finetune_method)
    params.setdefault("max_wait_seconds", settings.training_max_wait_s)
    params.setdefault("scope", "global")
    return params


def _update(run_id: str, status: str | None = None, **fields: Any) -> dict[str, Any]:
    """Record on a run still in flight; RunClosed when it has ended meanwhile."""
    with transaction() as conn:
        run = training_dal.update_run(conn, run_id, status, **fields)
        if run is None:
            raise _closed(conn, run_id)
    return run


def _closed(conn: Connection, run_id: str) -> FlywheelError:
    """The error for a step whose run is no longer in flight (or does not exist)."""
    run = training_dal.get_run(conn, run_id)
    if run is None:
        return NotFound(f"no training run {run_id}")
    return RunClosed(f"training run {run_id} has ended ({run['status']}): the step stops", status=run["status"])


# --- steps -------------------------------------------------------------------------------------


def check_data(state: dict[str, Any]) -> dict[str, Any]:
    """Open (or attach to) the run and count what could be trained on."""
    settings = get_settings()
    params = _params(state, settings)
    with transaction() as conn:
        if state.get("run_id"):
            run = training_dal.get_run(conn, state["run_id"])
            if run is None:
                raise NotFound(f"no training run {state['run_id']}")
        else:
            # a retried first step finds the run its first attempt created for this execution
            run = (
                training_dal.run_for_execution(conn, state["execution_arn"]) if state.get("execution_arn") else None
            ) or training_dal.create_run(conn, params["scope"], "schedule", params, state.get("execution_arn"))
            if run is None:
                raise Conflict(f"a training run is already in progress for scope {params['scope']!r}")
        since = datetime.now(UTC) - timedelta(days=int(params["since_days"]))
        ready = training_dal.readiness(conn, float(params["min_quality_score"]), since)
        arn = {"execution_arn": state["execution_arn"]} if state.get("run_id") and state.get("execution_arn") else {}
        if training_dal.update_run(conn, run["run_id"], "building", **arn) is None:
            raise _closed(conn, str(run["run_id"]))  # e.g. cancelled before its execution got here
    available = sum(int(r["examples"]) for r in ready)
    return {
        **state,
        **params,
        "run_id": str(run["run_id"]),
        "examples_available": available,
        "sufficient": available >= settings.training_min_examples,
        "elapsed_seconds": 0,
    }


def build(state: dict[str, Any], remaining_s: float | None = None) -> dict[str, Any]:
    """Build, validate and store the dataset and its manifest next to it in S3. With the
    invocation's remaining time, a dataset that cannot be built (and uploaded) in it fails the run
    with the reason before the timeout would."""
    settings = get_settings()
    deadline = time.monotonic() + remaining_s - settings.dataset_upload_margin_s if remaining_s else None
    run_id = state["run_id"]
    run = _recorded(run_id)
    if run["dataset_uri"]:  # a retry: the dataset was built and stored (the answer was lost)
        return _built_state(state, run)
    if not state.get("sufficient", True):
        _update(
            run_id,
            "insufficient_data",
            error=f"{state.get('examples_available', 0)} examples available, {settings.training_min_examples} needed",
        )
        count("TrainingRunFinished", status="insufficient_data")
        return {**state, "sufficient": False, "reason": "insufficient data"}
    # NumPy and the dataset builder: only this step needs them, so they load here (cold starts)
    from flywheel.services.dataset import DatasetSpec, DatasetTooLarge, ResidualPersonalData, build_dataset

    provider = provider_for(state["provider"], settings)
    spec = DatasetSpec(
        min_quality=float(state["min_quality_score"]),
        since=datetime.now(UTC) - timedelta(days=int(state["since_days"])),
        method=state["method"],
        dataset_format="bedrock-conversation-2024"
        if provider.dataset_format == "bedrock-conversation-2024"
        else "openai-chat",
        validation_fraction=settings.training_validation_fraction,
        base_model=state["base_model"],
        epochs=settings.training_epochs,
    )
    _refuse_unsupported(spec)  # decided before a single row is read
    from flywheel.clients.comprehend import ComprehendPii  # loads the redaction rules: this step only

    pii_pass = (
        ComprehendPii(settings.dataset_comprehend_language, settings.dataset_comprehend_min_score)
        if settings.dataset_comprehend_pii
        else None
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            built = build_dataset(spec, Path(tmp), settings, pii_pass, deadline=deadline)
        except DatasetTooLarge as exc:
            _update(run_id, "failed", error=exc.message)
            raise
        prefix = f"s3://{_bucket(settings)}/datasets/{run_id}"
        failure = built.failure
        if failure or built.examples < settings.training_min_examples:
            put_json(f"{prefix}/manifest.json", built.manifest)  # the manifest holds counts and ids, no text
            if not built.manifest["residual_scan"]["passed"]:
                _update(run_id, "failed", manifest=built.manifest, error=failure)
                raise ResidualPersonalData(str(failure))
            if built.examples < settings.training_min_examples:
                _update(
                    run_id,
                    "insufficient_data",
                    manifest=built.manifest,
                    error=f"insufficient data: {built.examples} examples after cleaning",
                )
                count("TrainingRunFinished", status="insufficient_data")
                return {**state, "sufficient": False, "reason": "insufficient data"}
            _update(run_id, "failed", manifest=built.manifest, error=f"dataset failed validation: {failure}")
            raise InvalidInput(f"dataset failed validation: {failure}")
        upload_file(built.train_path, f"{prefix}/train.jsonl")
        upload_file(built.validation_path, f"{prefix}/validation.jsonl")
        put_json(f"{prefix}/manifest.json", built.manifest)
    _update(run_id, dataset_uri=prefix, manifest=built.manifest, dataset_hash=built.manifest["dataset_hash"])
    return {
        **state,
        "sufficient": True,
        "dataset_uri": prefix,
        "examples": built.examples,
        "has_validation": built.manifest["counts"]["validation"] > 0,
        "smoke_prompt": built.smoke_prompt,
    }


def _built_state(state: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What `build` answered for a dataset already stored: its counts from the manifest and the
    smoke-test prompt read back from the stored file."""
    counts = (run["manifest"] or {}).get("counts", {})
    has_validation = int(counts.get("validation", 0)) > 0
    from flywheel.services.dataset import smoke_prompt_from

    with tempfile.TemporaryDirectory() as tmp:
        name = "validation.jsonl" if has_validation else "train.jsonl"
        prompt = smoke_prompt_from(download_file(f"{run['dataset_uri']}/{name}", Path(tmp) / name))
    return {
        **state,
        "sufficient": True,
        "dataset_uri": run["dataset_uri"],
        "examples": int(counts.get("train", 0)) + int(counts.get("validation", 0)),
        "has_validation": has_validation,
        "smoke_prompt": prompt,
    }


def _refuse_unsupported(spec: DatasetSpec) -> None:
    """The provider's job must be able to run this method on this base model, in this Region."""
    from flywheel.services.dataset import check_spec

    limits = check_spec(spec)
    if spec.method not in limits.methods:
        raise ProviderRefused(
            f"{spec.base_model} cannot be fine-tuned with {spec.method!r} on {limits.provider}"
            + (
                ": Amazon Bedrock runs supervised fine-tuning of Amazon Nova only; Nova DPO runs on SageMaker AI "
                "(https://docs.aws.amazon.com/nova/latest/userguide/customization.html); use method 'supervised' "
                "with bedrock, or provider 'openai' for DPO"
                if limits.provider == "bedrock"
                else ""
            )
        )
    if limits.regions:
        region = client("bedrock").meta.region_name
        if region not in limits.regions:
            raise ProviderRefused(
                f"Amazon Bedrock fine-tunes {spec.base_model} only in {', '.join(limits.regions)}, "
                f"not {region} (https://docs.aws.amazon.com/bedrock/latest/userguide/"
                "custom-model-fine-tuning.html)"
            )


def upload(state: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    recorded = _recorded(state["run_id"])["provider_files"]
    if recorded:  # a retry: the files are uploaded already
        return {**state, "provider_files": recorded}
    provider = provider_for(state["provider"], settings)
    prefix = state["dataset_uri"]
    if isinstance(provider, BedrockFineTuner):  # Bedrock reads the dataset where it already is
        files = UploadedDataset(
            f"{prefix}/train.jsonl", f"{prefix}/validation.jsonl" if state.get("has_validation") else None
        )
    else:
        with tempfile.TemporaryDirectory() as tmp:
            train = download_file(f"{prefix}/train.jsonl", Path(tmp) / "train.jsonl")
            validation = (
                download_file(f"{prefix}/validation.jsonl", Path(tmp) / "validation.jsonl")
                if state.get("has_validation")
                else None
            )
            files = provider.upload(train, validation, prefix)
    _update(state["run_id"], "uploading", provider_files={"training": files.training, "validation": files.validation})
    return {**state, "provider_files": {"training": files.training, "validation": files.validation}}


def _recorded(run_id: str) -> dict[str, Any]:
    """The run as recorded, while it is in flight (RunClosed once it has ended)."""
    with transaction() as conn:
        run = training_dal.get_run(conn, run_id)
        if run is None or run["status"] not in training_dal.ACTIVE:
            raise _closed(conn, run_id)
    return run


def start_job(state: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    if state["provider"] == "bedrock" and not settings.bedrock_role_arn:
        raise ProviderRefused("BEDROCK_ROLE_ARN is not configured")
    run_id = state["run_id"]
    run = _recorded(run_id)
    if run["job_id"]:  # a retry: the job was started (and paid for) already
        return {**state, "job_id": run["job_id"], "job_state": "running", "job_started_at": _job_started_at(run)}
    provider = provider_for(state["provider"], settings)
    files = UploadedDataset(state["provider_files"]["training"], state["provider_files"].get("validation"))
    hyper: dict[str, Any] = (
        {"n_epochs": settings.training_epochs}
        if provider.name == "openai"
        else {"epochCount": settings.training_epochs}
    )
    # a retry after the job was started but before it was recorded (the database blinked, the
    # function timed out) finds that job instead of paying for a second one
    job_id = provider.find(run_id=run_id, suffix=f"fw-{run_id}") or provider.start(
        files,
        base_model=state["base_model"],
        suffix=f"fw-{run_id}",
        seed=int(UUID(run_id).int % 2**31),
        method=state["method"],
        metadata={"run_id": run_id, "scope": state["scope"]},
        hyperparameters=hyper,
        output_s3=f"s3://{_bucket(settings)}/models/{run_id}/",
    )
    try:
        _update(run_id, "training", job_id=job_id, job_status="started")
    except RunClosed:  # closed while the job was being started: nobody would ever use it
        _cancel_job(state["provider"], job_id, run_id)
        raise
    return {**state, "job_id": job_id, "job_state": "running", "job_started_at": datetime.now(UTC).isoformat()}


def _job_started_at(run: dict[str, Any]) -> str:
    """When the run's job was recorded as started (its move to training), else now."""
    started = next((h["at"] for h in run["status_history"] or [] if h.get("status") == "training"), None)
    return str(started) if started else datetime.now(UTC).isoformat()


# A Wait -> Poll -> Choice round adds 9 events to the execution's history, which Step Functions
# caps at 25,000 (the execution then fails without RecordFailure). Short waits (`wait_seconds` 0)
# would reach it before `max_wait_seconds`: past these many polls the job or the deployment is
# timed out as if its time had run out (1,800 + 400 rounds: 19,800 events, the rest for the others).
MAX_JOB_POLLS = 1_800
MAX_SERVING_POLLS = 400


def _waited(waited: int, started: str | None) -> tuple[int, str]:
    """The larger of the Wait states' sum and the clock since `started` (now, if not known)."""
    started = started or datetime.now(UTC).isoformat()
    since = datetime.fromisoformat(started)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(waited, int((datetime.now(UTC) - since).total_seconds())), started


def _elapsed(state: dict[str, Any]) -> tuple[int, str]:
    """Seconds the job has been waited for, and when it started: the Wait states' sum or the time
    since the job started, whichever is more. The sum alone never grows with `wait_seconds` 0 (the
    Wait -> PollJob loop would spin until the execution's timeout or its event history limit); the
    clock alone would run slow where Wait states are compressed (the local stack). The clock also
    counts the polls themselves and their retries, so `max_wait_seconds` bounds them too."""
    waited = int(state.get("elapsed_seconds", 0)) + int(state.get("wait_seconds", 0))
    return _waited(waited, state.get("job_started_at"))  # none: an execution started before it was kept


def poll(state: dict[str, Any]) -> dict[str, Any]:
    """The job's state. A provider that cannot be reached now (throttling, a 5xx, a timeout: what
    the client raises as DependencyUnavailable) leaves the job as it was, running: the state machine
    waits and polls again, and `max_wait_seconds` bounds an outage as it bounds a slow job (the job
    is then cancelled). A refusal (access denied, no such job) fails the run."""
    elapsed, started = _elapsed(state)
    state = {**state, "job_started_at": started, "job_polls": int(state.get("job_polls", 0)) + 1}
    try:
        status = provider_for(state["provider"], get_settings()).status(state["job_id"])
    except DependencyUnavailable as exc:
        return _unanswered_poll(state, elapsed, exc)
    job_state = status.state
    if job_state == "running" and _out_of_time(state, elapsed):
        job_state = "timed_out"
    try:
        _update(state["run_id"], job_status=status.provider_status)
    except RunClosed:
        if status.state == "running":  # the run was closed while its job trains: the job is stopped
            _cancel_job(state["provider"], state["job_id"], state["run_id"])
        raise
    return {
        **state,
        "job_state": job_state,
        "elapsed_seconds": elapsed,
        "provider_model_id": status.model_id,
        "trained_tokens": status.trained_tokens,
        "job_error": status.error,
        "poll_errors": 0,
        "poll_error": None,
    }


def _out_of_time(state: dict[str, Any], elapsed: int) -> bool:
    return elapsed >= int(state["max_wait_seconds"]) or int(state["job_polls"]) >= MAX_JOB_POLLS


def _unanswered_poll(state: dict[str, Any], elapsed: int, exc: DependencyUnavailable) -> dict[str, Any]:
    """A poll the provider did not answer: the job is taken to be still running (the error noted
    in the state) unless `max_wait_seconds` has passed, which times it out as usual."""
    try:
        _recorded(state["run_id"])
    except RunClosed:  # the run was closed meanwhile: its job, whatever its state, is stopped
        _cancel_job(state["provider"], state["job_id"], state["run_id"])
        raise
    errors = int(state.get("poll_errors", 0)) + 1
    logger.warning(
        "the provider did not answer a job poll; polling again",
        extra={"run_id": state["run_id"], "job_id": state["job_id"], "error": exc.message, "consecutive": errors},
    )
    timed_out = _out_of_time(state, elapsed)
    return {
        **state,
        "job_state": "timed_out" if timed_out else "running",
        "elapsed_seconds": elapsed,
        "poll_errors": errors,
        "poll_error": exc.message,
    }


def cancel_job(state: dict[str, Any]) -> dict[str, Any]:
    """Stop a job that ran past `max_wait_seconds`. One whose polls went unanswered may have ended
    meanwhile, so the provider is asked first; and a cancel the provider refuses is checked the
    same way (Bedrock refuses to stop a job that has completed). A job that succeeded goes on to
    Register (`job_state` succeeded), one that failed or was stopped to RecordFailure with its
    state; only a job still running is cancelled (the run ends cancelled)."""
    provider = provider_for(state["provider"], get_settings())
    if state.get("poll_errors"):
        ended = _ended(state, provider)
        if ended is not None:
            return ended
    try:
        provider.cancel(state["job_id"])
    except ProviderRefused:
        ended = _ended(state, provider)
        if ended is None:  # refused, and still running: the refusal fails the run
            raise
        return ended
    unanswered = (
        f"; the provider did not answer the last {state['poll_errors']} polls ({state.get('poll_error')})"
        if state.get("poll_errors")
        else ""
    )
    _update(
        state["run_id"],
        "cancelled",
        job_status="cancelled",
        error=f"no result after {state['elapsed_seconds']} s (max {state['max_wait_seconds']} s"
        + (f", or {MAX_JOB_POLLS} polls" if int(state.get("job_polls", 0)) >= MAX_JOB_POLLS else "")
        + "): cancelled"
        + unanswered,
    )
    return {**state, "job_state": "cancelled"}


def _ended(state: dict[str, Any], provider: FineTuneProvider) -> dict[str, Any] | None:
    """The state of a job that has ended, as a poll answers it (None while it runs, or when the
    provider cannot be reached: it is then cancelled as it would have been)."""
    try:
        status = provider.status(state["job_id"])
    except DependencyUnavailable as exc:
        logger.warning(
            "the provider did not answer before the job is cancelled",
            extra={"run_id": state["run_id"], "job_id": state["job_id"], "error": exc.message},
        )
        return None
    if status.state == "running":
        return None
    _update(state["run_id"], job_status=status.provider_status)
    logger.info(
        "the job ended before it was cancelled",
        extra={"run_id": state["run_id"], "job_id": state["job_id"], "job_state": status.state},
    )
    return {
        **state,
        "job_state": status.state,
        "provider_model_id": status.model_id,
        "trained_tokens": status.trained_tokens,
        "job_error": status.error,
        "poll_errors": 0,
        "poll_error": None,
    }


def register(state: dict[str, Any]) -> dict[str, Any]:
    run_id = state["run_id"]
    with transaction() as conn:
        run = training_dal.get_run(conn, run_id, lock=True)
        if run is None or run["status"] not in training_dal.ACTIVE:  # the lock holds it in flight until commit
            raise _closed(conn, run_id)
        if run["model_id"]:  # a retry: registered in the same transaction as the model row
            existing = models_dal.get_model(conn, run["model_id"])
            assert existing is not None
            return {**state, "model_id": existing["model_id"], "version": existing["version"]}
        major, minor, patch = models_dal.next_version(conn)
        version = f"v{major}.{minor}.{patch}"
        model = models_dal.insert_model(
            conn,
            {
                "model_id": f"flywheel-{version}",
                "version": version,
                "major": major,
                "minor": minor,
                "patch": patch,
                "status": "ready",
                "provider": state["provider"],
                "provider_model_id": state["provider_model_id"],
                "base_model": state["base_model"],
                "run_id": run_id,
                "dataset_hash": run["dataset_hash"],
                "example_count": state.get("examples"),
                "trained_tokens": state.get("trained_tokens"),
                "notes": {"job_id": state["job_id"]},
            },
        )
        models_dal.change(conn, model["model_id"], "registered", actor="training", reason=f"run {run_id}")
        training_dal.update_run(conn, run_id, "registering", model_id=model["model_id"], job_status="succeeded")
    return {**state, "model_id": model["model_id"], "version": version}


def start_serving(state: dict[str, Any]) -> dict[str, Any]:
    """Make the new model invocable: a Bedrock on-demand deployment (or provisioned throughput),
    which the state machine then waits for; an OpenAI fine-tune is served as it is."""
    provider = provider_for(state["provider"], get_settings())
    run = _recorded(state["run_id"])
    with transaction() as conn:
        model = models_dal.get_model(conn, state["model_id"])
    if model and model["serving_model_id"]:  # a retry: serving was started and recorded
        serving = Serving(model["serving_model_id"], model["serving_kind"], model["serving_status"])
    else:
        if run["status"] != "serving":  # a retry after the provider was unreachable is recorded once
            _update(state["run_id"], "serving")
        serving = provider.serve(
            state["provider_model_id"],
            f"fw-{state['run_id']}",
            {"run_id": state["run_id"], "model_id": state["model_id"]},
        )
        with transaction() as conn:
            models_dal.change(
                conn,
                state["model_id"],
                "serving_started",
                actor="training",
                reason=serving.kind,
                evidence={"serving_model_id": serving.model_id},
                serving_model_id=serving.model_id,
                serving_kind=serving.kind,
                serving_status=serving.state,
            )
        _recorded(state["run_id"])  # closed while the deployment was started: run_step winds it down
    return {
        **state,
        "serving_model_id": serving.model_id,
        "serving_kind": serving.kind,
        "serving_state": serving.state,
        "serving_elapsed_seconds": 0,
        "serving_polls": 0,
        # a retry keeps the first attempt's start: the clock bounds the polls and their retries too
        "serving_started_at": state.get("serving_started_at") or datetime.now(UTC).isoformat(),
        # poll the deployment every minute at most (it takes minutes), never slower than the job
        "serving_wait_seconds": int(state.get("serving_wait_seconds", min(60, int(state.get("wait_seconds", 60))))),
    }


def poll_serving(state: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    _recorded(state["run_id"])
    serving = provider_for(state["provider"], settings).serving_status(state["serving_model_id"], state["serving_kind"])
    # as for the job: the Wait states' sum or the clock since serving started, whichever is more
    # (the sum alone stays 0 with `serving_wait_seconds` 0; the clock alone runs slow locally)
    elapsed, started = _waited(
        int(state.get("serving_elapsed_seconds", 0)) + int(state.get("serving_wait_seconds", 0)),
        state.get("serving_started_at"),  # none: an execution started before it was kept
    )
    polls = int(state.get("serving_polls", 0)) + 1
    state = {**state, "serving_started_at": started, "serving_polls": polls}
    serving_state = serving.state
    if serving_state == "creating" and (
        elapsed >= int(state.get("serving_max_wait_seconds", settings.serving_max_wait_s)) or polls >= MAX_SERVING_POLLS
    ):
        serving_state = "timed_out"
    if serving.state != "creating":
        with transaction() as conn:
            model = models_dal.get_model(conn, state["model_id"], lock=True)
            if model and model["serving_status"] != serving.state:  # else a retry: recorded already
                models_dal.change(
                    conn,
                    state["model_id"],
                    f"serving_{serving.state}",
                    actor="training",
                    reason=serving.error or "deployment active",
                    serving_status=serving.state,
                    serving_error=serving.error,
                )
    result = {**state, "serving_state": serving_state, "serving_elapsed_seconds": elapsed}
    if serving_state in ("failed", "timed_out"):
        result["error"] = {
            "Error": "ServingFailed",
            "Cause": serving.error or f"the deployment was not active after {elapsed} s ({polls} polls)",
        }
    return result


def smoke_test(state: dict[str, Any]) -> dict[str, Any]:
    """One inference on a validation prompt, through what serves the model; an empty answer or a
    refusal marks it failed. A provider that cannot be reached (throttling, a 5xx, a timeout) says
    nothing about the model: the error goes to the state machine, whose Retry tries again. An
    exhausted quota says nothing about it either, and no retry clears it: the run fails at once
    (RecordFailure), no verdict recorded."""
    run = _recorded(state["run_id"])
    with transaction() as conn:
        verdict = next(
            (
                h
                for h in models_dal.history(conn, state["model_id"])  # newest first
                if h["action"] in ("smoke_test_passed", "smoke_test_failed")
            ),
            None,
        )
    if verdict:  # a retry: the model was tested already, its verdict stands
        ok = verdict["action"] == "smoke_test_passed"
        return {
            **state,
            "smoke_ok": ok,
            **({} if ok else {"error": {"Error": "SmokeTestFailed", "Cause": verdict["reason"]}}),
        }
    provider = provider_for(state["provider"], get_settings())
    if run["status"] != "smoke_testing":  # a retry after the provider was unreachable is recorded once
        _update(state["run_id"], "smoke_testing")
    try:
        answer = provider.smoke_test(
            state.get("serving_model_id") or state["provider_model_id"],
            state.get("smoke_prompt")
            or [{"role": "user", "content": "Write a two-line outbound email to {{first_name}} at {{company}}."}],
        )
        problem = None if answer.strip() else "empty answer"
    except ProviderQuotaExhausted:  # says nothing about the model either, and retrying will not help
        raise
    except ProviderRefused as exc:
        answer, problem = "", exc.message
    except DependencyUnavailable as exc:  # no verdict: the state machine retries the step
        raise DependencyUnavailable(f"the smoke test could not reach the provider: {exc.message}") from exc
    if problem:
        with transaction() as conn:
            models_dal.change(
                conn, state["model_id"], "smoke_test_failed", actor="training", reason=problem, status="failed"
            )
        return {**state, "smoke_ok": False, "error": {"Error": "SmokeTestFailed", "Cause": problem}}
    with transaction() as conn:
        models_dal.change(
            conn, state["model_id"], "smoke_test_passed", actor="training", evidence={"answer": answer[:500]}
        )
    return {**state, "smoke_ok": True}


def deploy(state: dict[str, Any]) -> dict[str, Any]:
    """Deploy and mark the run succeeded in one transaction; a retry after that is a no-op. The run's
    row lock, taken first, holds it in flight until the commit: a cancel (reconcile_run) either
    closed it before (nothing is deployed) or waits and then finds it succeeded."""
    with transaction() as conn:
        run = training_dal.get_run(conn, state["run_id"], lock=True)
        if run is not None and run["status"] == "succeeded":
            return {**state, "deployed": bool(state.get("deploy"))}
        if run is None or run["status"] not in training_dal.ACTIVE:
            raise _closed(conn, state["run_id"])
        deferred = _deploy_deferred(conn, state["model_id"]) if state.get("deploy") else None
        if state.get("deploy") and deferred is None:
            deploy_in(
                conn,
                state["model_id"],
                canary_percentage=float(state.get("canary_percentage", 10)),
                actor="training",
                reason=f"weekly run {state['run_id']}",
                experiment_config=state.get("experiment_config"),
            )
        training_dal.update_run(conn, state["run_id"], "succeeded")
    count("TrainingRunFinished", status="succeeded")
    return {
        **state,
        "deployed": bool(state.get("deploy")) and deferred is None,
        **({"deploy_deferred": deferred} if deferred else {}),
    }


def _deploy_deferred(conn: Connection, model_id: str) -> str | None:
    """Why the run's model cannot become the challenger now (another challenger is still in its
    experiment, which runs up to its maximum runtime), recorded on the model; None when it can. The
    model stays ready: an operator deploys it once the experiment ends."""
    running = experiments.lock_running(conn)  # the lock order: the experiment, then the registry
    challenger = models_dal.by_role(conn, "challenger")
    if running is None and challenger is None:
        return None
    holder = challenger["model_id"] if challenger else running["challenger_model_id"]  # type: ignore[index]
    reason = (
        f"not deployed: {holder} is the challenger"
        + (f" in experiment {running['experiment_id']}" if running else "")
        + f"; deploy this model when it ends (POST /training/deploy/{model_id})"
    )
    models_dal.change(conn, model_id, "deploy_deferred", actor="training", reason=reason)
    logger.info(
        "weekly model left ready: a challenger is still in its experiment",
        extra={"model_id": model_id, "challenger": holder},
    )
    return reason


def record_failure(state: dict[str, Any]) -> dict[str, Any]:
    """The Catch of every Task lands here: the run keeps the error; a registered model is failed
    (and its deployment deleted); a provider job still training for it is cancelled."""
    error = state.get("error") or {}
    cause = error.get("Cause") if isinstance(error, dict) else str(error)
    try:  # Lambda errors arrive as a JSON string in Cause
        parsed = json.loads(cause) if isinstance(cause, str) else {}
        message = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
    except ValueError:
        message = cause
    message = message or state.get("job_error") or f"job ended as {state.get('job_state')}"
    if isinstance(error, dict) and error.get("Error") == "DependencyUnavailable":
        message = f"{message} (a dependency could not be reached, retries exhausted)"
    closed = None
    if state.get("run_id"):
        with transaction() as conn:
            # a run that already ended (a step's retry failed after its work was done, an operator
            # cancelled it) keeps its end
            closed = training_dal.close_if_active(conn, state["run_id"], "failed", str(message)[:2000])
            if state.get("model_id"):
                model = models_dal.get_model(conn, state["model_id"])
                # a model that is serving traffic (or was) is never failed by a pipeline error
                if model is not None and model["status"] in ("training", "ready"):
                    models_dal.change(
                        conn, state["model_id"], "failed", actor="training", reason=str(message)[:500], status="failed"
                    )
    logger.error("training run failed", extra={"run_id": state.get("run_id"), "error": message})
    if closed is not None or not state.get("run_id"):  # a run that had ended was counted then
        count("TrainingRunFinished", status="failed")
    # a job of this run that may still be training (billed) and whose model nobody will register
    # is stopped, as reconcile_run does for a run it closes (a job that has ended is left alone)
    if (
        closed is not None
        and closed["job_id"]
        and not closed["model_id"]
        and state.get("job_state") not in ("succeeded", "failed", "cancelled")
    ):
        _cancel_job(closed["provider"] or state.get("provider"), closed["job_id"], state["run_id"])
    if state.get("model_id"):
        serving.sync(actor="training")  # a failed model's deployment is deleted (retried daily if this fails)
    return {**state, "failure": str(message)}


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "check_data": check_data,
    "build": build,
    "upload": upload,
    "start_job": start_job,
    "poll": poll,
    "cancel_job": cancel_job,
    "register": register,
    "start_serving": start_serving,
    "poll_serving": poll_serving,
    "smoke_test": smoke_test,
    "deploy": deploy,
    "record_failure": record_failure,
}


def run_step(step: str, state: dict[str, Any], remaining_s: float | None = None) -> dict[str, Any]:
    """One step; `remaining_s` is the invocation's time left (the build plans with it)."""
    if step not in STEPS:
        raise InvalidInput(f"unknown step {step!r}")
    try:
        if step == "build":
            return STEPS["build"](state, remaining_s)
        return STEPS[step](state)
    except RunClosed as exc:  # the run ended while this step ran: what it started is wound down
        _wind_down(state.get("model_id"), exc.message)
        raise


def _cancel_job(provider: str | None, job_id: str, run_id: str) -> None:
    """Stop the provider job of a run that has ended (best effort: a job that has just finished
    cannot be cancelled, and is left as it is)."""
    try:
        settings = get_settings()
        provider_for(provider or settings.finetune_provider, settings).cancel(job_id)
    except FlywheelError as exc:
        logger.warning(
            "could not cancel the job of an ended run", extra={"run_id": run_id, "job_id": job_id, "error": exc.message}
        )
    else:
        logger.info("cancelled the job of an ended run", extra={"run_id": run_id, "job_id": job_id})


def _wind_down(model_id: str | None, reason: str) -> None:
    """The model of a run that ended before it was deployed is never used: it fails with the reason
    (unless it serves traffic already) and its deployment is deleted (the daily sync retries that)."""
    if not model_id:
        return
    with transaction() as conn:
        model = models_dal.get_model(conn, model_id, lock=True)
        if model is not None and model["status"] in ("training", "ready"):
            models_dal.change(conn, model_id, "failed", actor="training", reason=reason[:500], status="failed")
    if model is not None and model["serving_model_id"]:
        try:
            serving.sync(actor="training")
        except FlywheelError as exc:
            logger.warning("serving sync after an ended run failed", extra={"model_id": model_id, "error": exc.message})


def _bucket(settings: Settings) -> str:
    if not settings.training_bucket:
        raise DependencyUnavailable("TRAINING_BUCKET is not configured")
    return settings.training_bucket


# --- registry operations (training API; the registry service does the work) -------------------------


def deploy_model(
    model_id: str, *, canary_percentage: float, actor: str, reason: str, experiment_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ready model becomes the challenger at the canary share and an experiment starts (its plan
    and any warning that the planned lift cannot be detected in time come back in the answer), or
    the model becomes champion when there is none. An archived model deployed again gets its
    deployment back (serving.sync)."""
    with transaction() as conn:
        result = deploy_in(
            conn,
            model_id,
            canary_percentage=canary_percentage,
            actor=actor,
            reason=reason,
            experiment_config=experiment_config,
        )
    if result.get("serving_status") == "deleted":
        serving.sync(actor=actor)
    return result


def deploy_in(
    conn: Connection,
    model_id: str,
    *,
    canary_percentage: float,
    actor: str,
    reason: str,
    experiment_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """deploy_model inside the caller's transaction (the pipeline's Deploy step marks its run in it)."""
    deployed = registry.deploy_in(conn, model_id, canary_percentage=canary_percentage, actor=actor, reason=reason)
    if deployed["role"] != "challenger":
        return {**deployed["model"], "experiment": None, "warnings": []}
    experiment = experiments.start(
        conn, deployed["champion_id"], model_id, canary_percentage, experiment_config, actor=actor
    )
    return {
        **deployed["model"],
        "experiment_id": experiment["experiment_id"],
        "experiment": {"experiment_id": experiment["experiment_id"], "plan": experiment["plan"]},
        "warnings": experiment["warnings"],
    }


def promote(model_id: str, *, actor: str, reason: str, evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    with transaction() as conn:
        running = experiments.lock_running(conn)  # the lock order: the experiment, then the registry
        done = registry.promote_in(conn, model_id, actor=actor, reason=reason, evidence=evidence)
        if done["changed"]:
            experiments.end_running(conn, running, "promoted", actor=actor, reason=reason)
    serving.sync(actor=actor)  # the archived champion's deployment is deleted
    return done


def rollback(*, actor: str, reason: str, model_id: str | None = None) -> dict[str, Any]:
    with transaction() as conn:
        running = experiments.lock_running(conn)  # the lock order: the experiment, then the registry
        done = registry.rollback_in(conn, actor=actor, reason=reason, expected_model_id=model_id)
        if done["changed"]:
            experiments.end_running(conn, running, "rolled_back", actor=actor, reason=reason)
    serving.sync(actor=actor)  # the withdrawn model's deployment goes; a restored champion's comes back
    return done


def start_run(params: dict[str, Any], scope: str) -> dict[str, Any]:
    """POST /training/run: a run row (409 while one is in flight), then the state machine."""
    settings = get_settings()
    if not settings.training_state_machine_arn:
        raise DependencyUnavailable("TRAINING_STATE_MACHINE_ARN is not configured")
    with transaction() as conn:
        run = training_dal.create_run(conn, scope, "api", params)
        active = training_dal.active_run(conn, scope) if run is None else None
    if active is not None and reconcile_run(active["run_id"])["status"] not in training_dal.ACTIVE:
        with transaction() as conn:  # the blocking run was stale: it is closed now
            run = training_dal.create_run(conn, scope, "api", params)
    if run is None:
        raise Conflict(f"a training run is already in progress for scope {scope!r}")
    run_id = str(run["run_id"])
    try:
        arn = stepfunctions.start_execution(
            settings.training_state_machine_arn, f"run-{run_id}", {**params, "run_id": run_id, "scope": scope}
        )
    except DependencyUnavailable:
        # the call may have failed after Step Functions started the execution (a timeout on the
        # answer): the execution's deterministic name tells
        arn = stepfunctions.execution_arn(settings.training_state_machine_arn, f"run-{run_id}")
        if stepfunctions.execution_status(arn) is None:
            with transaction() as conn:
                training_dal.close_if_active(conn, run_id, "failed", "could not start the state machine")
            raise
    with transaction() as conn:
        training_dal.record_execution(conn, run_id, arn)
    return {"run_id": run_id, "execution_arn": arn, "status": "pending"}


# a pending run whose execution does not exist this long after it was created never started
# (the API call that created it crashed before StartExecution)
PENDING_GRACE = timedelta(minutes=5)
EXECUTION_END = {"FAILED": "failed", "TIMED_OUT": "failed", "ABORTED": "cancelled", "SUCCEEDED": "failed"}


def reconcile_run(run_id: UUID | str) -> dict[str, Any]:
    """A run still marked in flight is checked against its Step Functions execution: one that never
    started, or whose execution has ended without the run recording it, is closed with the reason."""
    with transaction() as conn:
        run = training_dal.get_run(conn, run_id)
    if run is None:
        raise NotFound(f"no training run {run_id}")
    machine = get_settings().training_state_machine_arn
    if run["status"] not in training_dal.ACTIVE or not (run["execution_arn"] or machine):
        return run
    arn = run["execution_arn"] or stepfunctions.execution_arn(str(machine), f"run-{run['run_id']}")
    status = stepfunctions.execution_status(arn)
    if status is None:
        if run["status"] != "pending" or datetime.now(UTC) - run["updated_at"] < PENDING_GRACE:
            return run
        ended, error = "failed", "the training state machine never started for this run"
    elif status in EXECUTION_END:
        ended, error = EXECUTION_END[status], f"execution ended {status} without recording the run's end"
    else:
        if run["execution_arn"] is None:
            with transaction() as conn:
                return training_dal.record_execution(conn, run["run_id"], arn) or run
        return run
    with transaction() as conn:
        closed = training_dal.close_if_active(conn, run["run_id"], ended, error)
    if closed is None:  # a step recorded the run's end first
        with transaction() as conn:
            return training_dal.get_run(conn, run["run_id"]) or run
    logger.warning(
        "stale training run reconciled",
        extra={"run_id": str(run["run_id"]), "status": ended, "execution_status": status},
    )
    # what its execution had started and no step will finish: a job without a model is stopped,
    # a model not yet deployed is failed (a step still running finds the run closed and stops)
    if closed["job_id"] and not closed["model_id"]:
        _cancel_job(closed["provider"], closed["job_id"], str(closed["run_id"]))
    _wind_down(closed["model_id"], f"run {closed['run_id']} {ended}: {error}")
    return closed


def get_run(run_id: UUID) -> dict[str, Any]:
    """A run as operators see it through the API: the manifest's per-organisation counts stay in
    S3 (the API never tells one organisation about another's data)."""
    run = reconcile_run(run_id)
    if isinstance(run.get("manifest"), dict):
        run["manifest"] = {k: v for k, v in run["manifest"].items() if k != "by_org"}
    return run


def job_status(job_id: str) -> dict[str, Any]:
    with transaction() as conn:
        run = training_dal.run_for_job(conn, job_id)
    if run is None:
        raise NotFound(f"no training run has job {job_id}")
    status = provider_for(run["provider"] or get_settings().finetune_provider, get_settings()).status(job_id)
    return {
        "job_id": job_id,
        "run_id": str(run["run_id"]),
        "state": status.state,
        "provider_status": status.provider_status,
        "model": status.model_id,
        "error": status.error,
    }


def list_models(status: str | None) -> list[dict[str, Any]]:
    with transaction() as conn:
        return models_dal.list_models(conn, status)


def training_stats(min_quality: float, since_days: int, org_id: str | None = None) -> dict[str, Any]:
    """Data readiness (of one organisation when given): examples by label, an estimate of tokens
    and of the cost of a run."""
    settings = get_settings()
    since = datetime.now(UTC) - timedelta(days=since_days)
    with transaction() as conn:
        rows = training_dal.readiness(conn, min_quality, since, org_id)
    examples = sum(int(r["examples"]) for r in rows)
    # ~4 characters a token for the email, plus ~120 tokens of prompt and framing per example
    tokens = sum(int(r["characters"]) // 4 for r in rows) + 120 * examples
    from flywheel.domain.dataset_checks import DEFAULT_PRICES, cost_estimate  # the dataset rules: this route only

    prices = {**DEFAULT_PRICES, **json.loads(settings.training_prices_json or "{}")}
    return {
        "examples": examples,
        "by_label": {r["label"]: int(r["examples"]) for r in rows},
        "minimum": settings.training_min_examples,
        "ready": examples >= settings.training_min_examples,
        "estimated_tokens": tokens,
        "token_method": "estimate:chars/4+prompt",
        "cost_estimate": cost_estimate(tokens, settings.base_model, settings.training_epochs, prices),
    }


def leaderboard(org_id: str) -> list[dict[str, Any]]:
    with transaction() as conn:
        return models_dal.leaderboard(conn, org_id)


def promote_winner(*, force: bool, reason: str | None, actor: str) -> dict[str, Any]:
    """The evaluator's decision, applied only when it is a promotion (the same code path as its daily
    schedule): 200 with what was done, or Conflict (409) with the decision and nothing changed.
    `force` with a reason promotes the challenger by hand and records why."""
    if not force:
        return experiments.evaluate(actor=actor, only="promote")
    if not reason:
        raise InvalidInput("a forced promotion needs a reason", field="reason")
    with transaction() as conn:
        challenger = models_dal.by_role(conn, "challenger")
    if challenger is None:
        raise Conflict("there is no challenger to promote")
    return promote(challenger["model_id"], actor=actor, reason=f"forced: {reason}", evidence={"forced": True})

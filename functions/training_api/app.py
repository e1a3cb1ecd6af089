"""TrainingApiFunction: operators' training API (IAM): runs, jobs, models, deploys, rollbacks."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.domain.inputs import IDENTIFIER
from flywheel.models.training import DeployRequest, PromoteRequest, ReasonRequest, RollbackRequest, RunRequest
from flywheel.observability import logger, metrics, tracer
from flywheel.services import experiments, registry, training

app = make_resolver()


def _actor() -> str:
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or "unknown"


@app.post("/training/run")
def start_run(request: Annotated[RunRequest, Body()]) -> tuple[dict[str, Any], int]:
    params = request.model_dump(exclude_none=True, exclude={"scope"})
    return training.start_run(params, request.scope), 202


@app.get("/training/runs/<run_id>")
def get_run(run_id: Annotated[UUID, Path()]) -> dict[str, Any]:
    return training.get_run(run_id)


OrgId = Annotated[str, Query(pattern=IDENTIFIER.pattern, description="the organisation the caller reads for")]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$")]


@app.get("/training/status/<job_id>")
def job_status(job_id: Name) -> dict[str, Any]:
    return training.job_status(job_id)


@app.get("/training/models")
def list_models(
    status: Annotated[str | None, Query(pattern="^(training|ready|deployed|archived|failed)$")] = None,
) -> dict[str, Any]:
    return {"models": training.list_models(status)}


@app.post("/training/deploy/<model_id>")
def deploy(model_id: Name, request: Annotated[DeployRequest, Body()]) -> dict[str, Any]:
    config = request.experiment_config.model_dump(exclude_none=True) if request.experiment_config else None
    return training.deploy_model(
        model_id,
        canary_percentage=request.canary_percentage,
        actor=_actor(),
        reason=request.reason,
        experiment_config=config,
    )


@app.post("/training/archive/<model_id>")
def archive(model_id: Name, request: Annotated[ReasonRequest, Body()]) -> dict[str, Any]:
    return registry.archive(model_id, actor=_actor(), reason=request.reason)


@app.post("/training/rollback")
def rollback(request: Annotated[RollbackRequest, Body()]) -> dict[str, Any]:
    done = training.rollback(actor=_actor(), reason=request.reason, model_id=request.model_id)
    if done["changed"]:  # the reports redraw (ReportFunction), as after the evaluator's runs
        experiments.announce_evaluation({"action": "manual_rolled_back", "reason": request.reason})
    return done


@app.post("/training/promote-winner")
def promote_winner(request: Annotated[PromoteRequest, Body()]) -> dict[str, Any]:
    done = training.promote_winner(force=request.force, reason=request.reason, actor=_actor())
    experiments.announce_evaluation(
        done if "action" in done else {"action": "manual_promoted", "reason": request.reason}
    )
    return done


@app.get("/experiments")
def list_experiments(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return {"experiments": experiments.list_experiments(limit)}


@app.get("/experiments/<experiment_id>")
def get_experiment(experiment_id: str) -> dict[str, Any]:
    return experiments.get_experiment(experiment_id)


@app.get("/experiments/<experiment_id>/evaluations")
def evaluations(
    experiment_id: str,
    snapshots: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    return experiments.evaluation_history(experiment_id, include_snapshots=snapshots, limit=limit)


@app.post("/experiments/<experiment_id>/restart")
def restart(experiment_id: str, request: Annotated[ReasonRequest, Body()]) -> dict[str, Any]:
    return experiments.restart_stage(experiment_id, actor=_actor(), reason=request.reason)


@app.get("/training/stats")
def stats(
    org_id: OrgId,
    min_quality_score: Annotated[float, Query(ge=0, le=1)] = 0.6,
    since_days: Annotated[int, Query(ge=1, le=3650)] = 90,
) -> dict[str, Any]:
    return training.training_stats(min_quality_score, since_days, org_id)


@app.get("/training/leaderboard")
def leaderboard(org_id: OrgId) -> dict[str, Any]:
    return {"org_id": org_id, "models": experiments.leaderboard_with_intervals(training.leaderboard(org_id))}


@app.get("/insights/strategies")
def strategies(
    org_id: OrgId,
    segment: Annotated[str, Query(pattern="^(industry|role)$")] = "industry",
    min_sample: Annotated[int, Query(ge=1, le=100_000)] = 30,
) -> dict[str, Any]:
    return experiments.strategies(org_id, segment, min_sample)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

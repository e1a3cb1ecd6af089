"""ExperimentEvaluatorFunction: the daily look at the running experiment (same path as
POST /training/promote-winner): continue, advance the canary, promote, roll back or end it; then
serving is brought in step with the registry (deployments of archived models deleted). Every run
is announced on the event bus (ExperimentEvaluated), which redraws the reports."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.errors import NotFound
from flywheel.observability import count, logger, metrics, tracer
from flywheel.services import serving
from flywheel.services.experiments import announce_evaluation, evaluate


@logger.inject_lambda_context(correlation_id_path="id")  # the schedule's EventBridge event id
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        decision = evaluate(actor="evaluator")
    except NotFound:
        decision = {"action": "none", "reason": "no experiment is running"}
    else:
        count("ExperimentDecision", action=str(decision["action"]), stage=str(decision.get("stage", "")))
        if decision.get("allocation") is not None:
            metrics.add_metric(
                name="ChallengerTrafficPercent", unit="Percent", value=float(decision["allocation"]) * 100
            )
        # the sample-ratio check as metrics: ExperimentSampleRatioMismatchAlarm raises the alarm
        metrics.add_metric(name="ExperimentSrmPValue", unit="None", value=decision["srm_p_value"])
        metrics.add_metric(name="ExperimentSampleRatioMismatch", unit="Count", value=int(decision["srm"]["alarm"]))
    served = serving.sync(actor="evaluator")
    announce_evaluation(decision)
    return {**decision, "serving": served}

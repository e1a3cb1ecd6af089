"""ExperimentEvaluatorFunction: the daily look at the running experiment (same path as
POST /training/promote-winner): continue, advance the canary, promote, roll back or end it."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.errors import NotFound
from flywheel.observability import logger, metrics, tracer
from flywheel.services.experiments import evaluate


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        decision = evaluate(actor="evaluator")
    except NotFound:
        return {"action": "none", "reason": "no experiment is running"}
    metrics.add_metric(name=f"ExperimentDecision_{decision['action']}", unit="Count", value=1)
    # the sample-ratio check as metrics: ExperimentSampleRatioMismatchAlarm raises the alarm
    metrics.add_metric(name="ExperimentSrmPValue", unit="None", value=decision["srm_p_value"])
    metrics.add_metric(name="ExperimentSampleRatioMismatch", unit="Count", value=int(decision["srm"]["alarm"]))
    return decision

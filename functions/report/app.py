"""ReportFunction: writes each organisation's report to the training bucket after every training
run (Step Functions' own execution-status-change event) and every evaluator run (the evaluator's
ExperimentEvaluated event). `{"org_id": ...}` writes one organisation's report only."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.reports import publish


@logger.inject_lambda_context(correlation_id_path="id")  # the EventBridge event id (absent when invoked by hand)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    org_id = event.get("org_id") or (event.get("detail") or {}).get("org_id")
    logger.append_keys(trigger=event.get("detail-type", "direct"), org_id=org_id)
    result = publish([str(org_id)] if org_id else None)
    metrics.add_metric(name="ReportsWritten", unit="Count", value=len(result["written"]))
    return result

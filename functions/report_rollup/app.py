"""ReportRollupFunction: the daily counts behind the leaderboard and the strategies (hourly schedule)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.report_counts import refresh_daily_counts

SAFETY_MARGIN_S = 30.0  # stop starting steps this long before the function's timeout


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    budget = max(0.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_S)
    result = refresh_daily_counts(time_budget_s=budget)
    metrics.add_metric(name="ReportCountChanges", unit="Count", value=result["changes"])
    metrics.add_metric(name="ReportCountDrift", unit="Count", value=result["cells_corrected"])
    if result["cells_corrected"]:
        # the triggers missed changes (a load with session_replication_role = replica, disabled
        # triggers) or what counts as positive changed: the re-count corrected them
        logger.warning("report counts corrected by the safety-net re-count", extra=result)
    else:
        logger.info("report counts refreshed", extra=result)
    return result

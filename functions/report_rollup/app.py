"""ReportRollupFunction: the daily counts behind the leaderboard and the strategies (hourly schedule)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.report_counts import refresh_daily_counts


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = refresh_daily_counts()
    metrics.add_metric(name="ReportCountRows", unit="Count", value=result["rows_written"])
    logger.info("report counts refreshed", extra=result)
    return result

"""RetentionFunction: raw provider payloads of final outcomes are removed after RAW_EVENT_RETENTION_DAYS,
and the dataset line cache of outcomes older than DATASET_CACHE_DAYS (hourly schedule, in short
batches that never make ingest or a build wait)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.retention import remove_cached_lines, remove_raw_payloads

SAFETY_MARGIN_S = 20.0  # stop starting batches this long before the function's timeout


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def budget() -> float:
        return max(0.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_S)

    result = remove_raw_payloads(time_budget_s=budget())
    result["dataset_cache"] = remove_cached_lines(time_budget_s=budget())
    metrics.add_metric(name="RawPayloadsRemoved", unit="Count", value=result["removed"])
    metrics.add_metric(name="CachedDatasetLinesRemoved", unit="Count", value=result["dataset_cache"]["removed"])
    logger.info("retention pass", extra=result)
    return result

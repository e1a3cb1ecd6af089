"""MeetingsRefreshFunction (hourly): meetings whose end has passed become completed, and outbox
messages a request could not send (queue or event bus down) are sent; those still waiting an hour
on are counted (OutboxStale), and so are the parked ones still unsent (OutboxParkedPending)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.outbox import flush, report_parked, report_stale
from flywheel.services.outcomes import refresh_due_meetings


@logger.inject_lambda_context(correlation_id_path="id")  # the schedule's EventBridge event id
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refreshed = refresh_due_meetings()
    metrics.add_metric(name="MeetingsCompleted", unit="Count", value=refreshed)
    sent = flush()
    return {
        "refreshed": refreshed,
        "outbox_sent": sent,
        "outbox_stale": report_stale(),
        "outbox_parked": report_parked(),
    }

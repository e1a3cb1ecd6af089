"""ReportsApiFunction (IAM): the latest report's short-lived link and one campaign's performance."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.domain.inputs import IDENTIFIER
from flywheel.observability import logger, metrics, tracer
from flywheel.services import insights, reports

app = make_resolver()
# identifiers as they are registered: anything else (a NUL PostgreSQL cannot hold) is a 422
OrgId = Annotated[str, Query(pattern=IDENTIFIER.pattern, description="the organisation the caller reads for")]


@app.get("/reports/latest")
def latest_report(org_id: OrgId) -> dict[str, Any]:
    return reports.latest_url(org_id)


@app.get("/campaigns/<campaign_id>/performance")
def campaign_performance(
    campaign_id: Annotated[str, Path(pattern=IDENTIFIER.pattern)], org_id: OrgId
) -> dict[str, Any]:
    return insights.campaign_performance(org_id, campaign_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

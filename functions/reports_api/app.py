"""ReportsApiFunction (IAM): the latest report's short-lived link and one campaign's performance."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.observability import logger, metrics, tracer
from flywheel.services import insights, reports

app = make_resolver()
OrgId = Annotated[str, Query(min_length=1, max_length=128)]


@app.get("/reports/latest")
def latest_report(org_id: OrgId) -> dict[str, Any]:
    return reports.latest_url(org_id)


@app.get("/campaigns/<campaign_id>/performance")
def campaign_performance(campaign_id: str, org_id: OrgId) -> dict[str, Any]:
    return insights.campaign_performance(org_id, campaign_id)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""ReportsApiFunction (IAM): the latest report's short-lived link and one campaign's performance."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.domain.inputs import IDENTIFIER
from flywheel.observability import logger, metrics, tracer
from flywheel.services import insights, reports

app = make_resolver()
# the organisation ids senders register (a NUL or a space can name none, and PostgreSQL refuses a NUL)
OrgId = Annotated[str, Query(pattern=IDENTIFIER.pattern, description="the organisation the caller reads for")]


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

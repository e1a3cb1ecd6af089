"""RoutingFunction: which model writes to this lead (GET /route, IAM), sticky per experiment."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.observability import logger, metrics, tracer
from flywheel.services.routing import route

app = make_resolver()
Identifier = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")]


@app.get("/route")
def get_route(org_id: Identifier, lead_id: Identifier) -> dict[str, Any]:
    return route(org_id, lead_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

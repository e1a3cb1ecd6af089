"""RepliesApiFunction: replies from other channels (POST /replies) and the suppression list."""

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.domain.inputs import IDENTIFIER
from flywheel.domain.paging import CURSOR_PATTERN, MAX_CURSOR_LENGTH
from flywheel.models.api import CURSOR_DESCRIPTION as CURSOR
from flywheel.models.api import SINCE_DESCRIPTION as SINCE
from flywheel.models.api import SuppressionPage
from flywheel.models.replies import ReplyIn
from flywheel.observability import logger, metrics, tracer
from flywheel.services.replies import submit_reply
from flywheel.services.suppressions import list_suppressions

app = make_resolver()


OrgId = Annotated[str, Query(pattern=IDENTIFIER.pattern, description="the organisation the caller reads for")]
ReplyOrgId = Annotated[
    str,
    Query(
        pattern=IDENTIFIER.pattern,
        description="the organisation whose message was replied to (another organisation's outcome is a 404)",
    ),
]


@app.post("/replies")
def post_reply(org_id: ReplyOrgId, reply: Annotated[ReplyIn, Body()]) -> tuple[dict[str, Any], int]:
    return submit_reply(reply, org_id), 202


@app.get("/suppressions")
def get_suppressions(
    org_id: OrgId,
    since: Annotated[datetime | None, Query(description=SINCE)] = None,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, max_length=MAX_CURSOR_LENGTH, description=CURSOR)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> SuppressionPage:
    return list_suppressions(org_id, since, cursor, limit)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

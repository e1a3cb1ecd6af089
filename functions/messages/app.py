"""MessagesFunction: register sent messages, read an outcome back, correct it (IAM-authenticated)."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Discriminator, Tag

from flywheel.api import make_resolver
from flywheel.domain.inputs import IDENTIFIER
from flywheel.domain.paging import CURSOR_PATTERN, MAX_CURSOR_LENGTH
from flywheel.models.api import CURSOR_DESCRIPTION as CURSOR
from flywheel.models.api import SINCE_DESCRIPTION as SINCE
from flywheel.models.api import QuarantinePage
from flywheel.models.messages import MessageBatch, MessageIn
from flywheel.models.replies import CorrectionIn
from flywheel.observability import logger, metrics, tracer
from flywheel.services.corrections import correct_outcome
from flywheel.services.outcomes import outcome_view, register_messages
from flywheel.services.quarantine import list_quarantine

app = make_resolver()

RegisterBody = Annotated[
    Annotated[MessageBatch, Tag("batch")] | Annotated[MessageIn, Tag("single")],
    Discriminator(
        lambda v: "batch" if isinstance(v, MessageBatch) or (isinstance(v, dict) and "messages" in v) else "single"
    ),
]


@app.post("/messages")
def post_messages(body: Annotated[RegisterBody, Body()]) -> tuple[dict[str, Any], int]:
    messages = body.messages if isinstance(body, MessageBatch) else [body]
    result = register_messages(messages, batch=isinstance(body, MessageBatch))
    metrics.add_metric(name="MessagesRegistered", unit="Count", value=result.created)
    return result.model_dump(mode="json"), 201 if result.created else 200


OrgId = Annotated[str, Query(pattern=IDENTIFIER.pattern, description="the organisation the caller reads for")]


@app.get("/messages/<outcome_id>")
def get_message(outcome_id: Annotated[UUID, Path()], org_id: OrgId) -> dict[str, Any]:
    return outcome_view(outcome_id, org_id)


@app.get("/quarantine")
def get_quarantine(
    org_id: OrgId,
    since: Annotated[datetime | None, Query(description=SINCE)] = None,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, max_length=MAX_CURSOR_LENGTH, description=CURSOR)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> QuarantinePage:
    return list_quarantine(org_id, since, cursor, limit)


@app.post("/outcomes/<outcome_id>/corrections")
def post_correction(
    outcome_id: Annotated[UUID, Path()], org_id: OrgId, correction: Annotated[CorrectionIn, Body()]
) -> tuple[dict[str, Any], int]:
    result = correct_outcome(outcome_id, org_id, correction)
    return result, 200 if result["duplicate"] else 201


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

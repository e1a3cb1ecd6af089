"""WebhooksFunction: one public route per provider, each verified by that provider's scheme."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.observability import logger, metrics, tracer
from flywheel.services import webhooks
from flywheel.settings import get_settings
from flywheel.webhooks.http import WebhookRequest

app = make_resolver(json_bodies=False, public=True)


def _request() -> WebhookRequest:
    return WebhookRequest.from_event(app.current_event.raw_event, get_settings().max_body_bytes)


@app.post("/webhooks/sendgrid")
def sendgrid_events() -> dict[str, Any]:
    return webhooks.receive_sendgrid(_request())


@app.post("/webhooks/sendgrid/inbound/<token>")
def sendgrid_inbound(token: str) -> dict[str, Any]:
    return webhooks.receive_inbound_reply(_request(), token)


@app.post("/webhooks/calendly")
def calendly_events() -> dict[str, Any]:
    return webhooks.receive_calendly(_request())


@app.post("/webhooks/crm/hubspot")
def hubspot_events() -> dict[str, Any]:
    return webhooks.receive_hubspot(_request())


@app.post("/webhooks/crm/pipedrive")
def pipedrive_events() -> dict[str, Any]:
    return webhooks.receive_pipedrive(_request())


@app.post("/webhooks/crm/salesforce/<token>")
def salesforce_outbound_message(token: str):  # type: ignore[no-untyped-def]  # a return type would be validated
    ack = webhooks.receive_salesforce(_request(), token)
    return Response(200, "text/xml; charset=utf-8", ack)


@app.post("/webhooks/crm/deals")
def crm_deals() -> dict[str, Any]:
    return webhooks.receive_generic(_request(), "deals")


@app.post("/webhooks/crm/meetings")
def crm_meetings() -> dict[str, Any]:
    return webhooks.receive_generic(_request(), "meetings")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

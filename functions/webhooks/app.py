"""WebhooksFunction: one public route per provider, each verified by that provider's scheme."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.api import make_resolver
from flywheel.observability import logger, metrics, tracer
from flywheel.services import webhooks
from flywheel.settings import get_settings
from flywheel.webhooks.http import WebhookRequest

app = make_resolver()


def _request() -> WebhookRequest:
    return WebhookRequest.from_event(app.current_event.raw_event, get_settings().max_body_bytes)


@app.post("/webhooks/sendgrid")
def sendgrid_events() -> dict[str, Any]:
    return webhooks.receive_sendgrid(_request())


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""MigrateFunction: apply pending SQL migrations. Its code package is `sql/` itself."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.observability import logger, metrics, tracer
from flywheel.services.schema import apply_migrations


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    applied = apply_migrations()
    logger.info("migrations applied", extra={"applied": applied})
    return {"applied": applied}

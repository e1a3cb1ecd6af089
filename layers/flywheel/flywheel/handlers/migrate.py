"""MigrateFunction: apply pending SQL migrations. Its code package is `sql/` itself.

Invoked two ways:
- by CloudFormation, as the `DatabaseMigrations` custom resource, on every deploy that ships new
  code or migrations: Create/Update migrate and answer SUCCESS, or FAILED with the error (the
  deploy fails and rolls back, the error shows in the stack's events); Delete is a no-op (the
  schema and its data outlive the resource);
- directly (`aws lambda invoke`, `flywheel invoke MigrateFunction`): migrate and return the versions.
"""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel.clients.cloudformation import send_response
from flywheel.observability import logger, metrics, tracer
from flywheel.services.schema import apply_migrations

PHYSICAL_ID = "flywheel-schema"
# answer FAILED this long before the function times out, rather than leave CloudFormation waiting
TIMEOUT_MARGIN_S = 10


def _custom_resource(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    physical_id = str(event.get("PhysicalResourceId") or PHYSICAL_ID)  # never changes: no replacement
    answered = threading.Lock()

    def answer(status: str, reason: str, data: dict[str, str] | None = None) -> None:
        if answered.acquire(blocking=False):
            logger.info("answering CloudFormation", extra={"status": status, "reason": reason[:500]})
            send_response(event, status, physical_id, reason, data)

    remaining_s = context.get_remaining_time_in_millis() / 1000 - TIMEOUT_MARGIN_S
    late = "migrations did not finish before the function's timeout (is another migration holding the lock?)"
    guard = threading.Timer(max(remaining_s, 1), answer, ("FAILED", late))
    guard.daemon = True
    guard.start()
    try:
        if event["RequestType"] == "Delete":
            answer("SUCCESS", "nothing to do: the schema is kept when the resource is deleted")
            return {"applied": []}
        applied = apply_migrations(allow_newer_database=True)
    except Exception as exc:  # every failure must reach CloudFormation, with its message
        logger.exception("migrations failed")
        answer("FAILED", f"migrations failed: {type(exc).__name__}: {exc}")
        return {"error": str(exc)}
    finally:
        guard.cancel()
    answer("SUCCESS", f"applied {', '.join(applied) or 'nothing (up to date)'}", {"Applied": ",".join(applied)})
    return {"applied": applied}


@logger.inject_lambda_context(correlation_id_path="RequestId")
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "ResponseURL" in event and "RequestType" in event:
        return _custom_resource(event, context)
    applied = apply_migrations()
    logger.info("migrations applied", extra={"applied": applied})
    return {"applied": applied}

"""API glue shared by every API function: one resolver, one exception -> HTTP status map.

Error bodies are always JSON: {"error": <code>, "message": <text>, ...details}.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit

from flywheel import errors
from flywheel.observability import logger, metrics

STATUS: dict[type[errors.FlywheelError], int] = {
    errors.MalformedPayload: 400,
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.DependencyUnavailable: 503,
}

# Union members of a request body are tagged; the tag is not part of the field path.
BODY_TAGS = {"single", "batch"}


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    body = {"error": code, "message": message, **details}
    return Response(status, "application/json", json.dumps(body, default=str))


def field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "batch", "messages", 1, "lead_email")` -> `messages.1.lead_email`."""
    where = loc[0] if loc and loc[0] in ("body", "path", "query", "header") else None
    parts = [str(p) for p in (loc[1:] if where else loc) if str(p) not in BODY_TAGS]
    return ".".join(parts) or str(where or "body")


def make_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
            logger.info("rejected request", extra={"reason": "malformed_json"})
            return error_response(400, "malformed_json", "request body is not valid JSON")
        fields = [{"field": field_path(tuple(p["loc"])), "message": p["msg"]} for p in problems]
        metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
        logger.info("rejected request", extra={"reason": "validation", "fields": fields})
        first = fields[0]
        return error_response(
            422, "validation_error", f"{first['field']}: {first['message']}", fields=fields
        )

    @app.exception_handler(errors.FlywheelError)
    def _domain(exc: errors.FlywheelError) -> Response:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
        metrics.add_metadata("rejection", exc.code)
        if status >= 500:
            # details of a dependency failure stay in the log, not in the response
            logger.error("request failed", extra={"error": exc.code, "details": exc.details})
            response = error_response(status, exc.code, exc.message)
            response.headers["Retry-After"] = "30"
            return response
        logger.info("request refused", extra={"error": exc.code, "reason": exc.message})
        return error_response(status, exc.code, exc.message, **exc.details)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the request was not applied")

    _health_routes(app)
    return app


def _health_routes(app: APIGatewayRestResolver) -> None:
    """Every API function answers health on its own code path: `GET /health` and
    `GET /health/<function>` (public: status only), `GET /health/<function>/deep` (IAM: the database,
    the queue and the secrets this function uses, by name, with timings)."""
    from flywheel.services import health

    @app.get("/health")
    def _shallow() -> dict[str, str]:
        return health.shallow()

    @app.get("/health/<component>")
    def _shallow_component(component: str) -> dict[str, str]:
        return health.shallow()

    @app.get("/health/<component>/deep")
    def _deep(component: str):  # type: ignore[no-untyped-def]  # a return type would be validated
        healthy, report = health.deep()
        if not healthy:
            failed = sorted(name for name, check in report["checks"].items() if not check["ok"])
            response = error_response(503, "unhealthy", f"failing: {', '.join(failed)}", checks=report["checks"])
            response.headers["Retry-After"] = "30"
            return response
        return Response(200, "application/json", json.dumps(report))

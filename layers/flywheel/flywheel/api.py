"""API glue shared by every API function: one resolver, one exception -> HTTP status map.

Error bodies are always JSON: {"error": <code>, "message": <text>, ...details}.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from flywheel import errors
from flywheel.domain import callers
from flywheel.observability import logger, metrics
from flywheel.settings import ConfigurationError, get_settings

STATUS: dict[type[errors.FlywheelError], int] = {
    errors.MalformedPayload: 400,
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.DependencyUnavailable: 503,
    errors.ProviderRefused: 503,  # the fine-tuning provider is not configured or refuses: an operator's problem
    # an invalid setting (or secret): the operator's to fix, not the caller's; as a missing webhook
    # secret (DependencyUnavailable) it answers 503 + Retry-After, naming the variable, never its value
    ConfigurationError: 503,
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


def strict_json(text: str) -> Any:
    """The request body parser: strict JSON (no NaN / Infinity, no number that overflows, no nesting
    deep enough to exhaust the stack); anything else is the 400 of a malformed body."""
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:  # ValueError: integers over the digit limit
        raise json.JSONDecodeError(f"unacceptable JSON: {type(exc).__name__}", str(text)[:1], 0) from exc


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def error_log(exc: BaseException) -> dict[str, Any]:
    """What an unexpected error logs: its type, SQLSTATE and where it happened, never its message
    (a database error's text can quote the row: lead emails, reply text)."""
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    return {
        "error_type": type(exc).__name__,
        "sqlstate": getattr(exc, "sqlstate", None),
        "where": [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames],
    }


class FlywheelResolver(APIGatewayRestResolver):
    """Validation on, strict JSON bodies, and (for JSON APIs) 415 for a body of another media type.
    `public`: the function's routes are public (webhooks: no IAM caller, each provider's credential
    decides the organisation), so API_CALLER_ORGS_JSON does not apply to them."""

    def __init__(self, json_bodies: bool = True, public: bool = False) -> None:
        super().__init__(enable_validation=True, json_body_deserializer=strict_json)
        self.json_bodies = json_bodies
        self.public = public

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if self.json_bodies and event.get("body"):
            headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items() if v is not None}
            if not is_json_media_type(headers.get("content-type", "application/json")):
                return _refusal(415, "unsupported_media_type", "the body must be application/json")
            try:
                raw = event["body"]
                (base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw).encode()).decode("utf-8")
            except (ValueError, UnicodeError):
                return _refusal(400, "malformed_json", "request body is not UTF-8 JSON")
        return super().resolve(event, context)


def _refusal(status: int, code: str, message: str) -> dict[str, Any]:
    """A refusal decided before routing, as the API Gateway proxy response."""
    metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
    logger.info("rejected request", extra={"reason": code})
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": code, "message": message}),
        "isBase64Encoded": False,
    }


# the health routes name no organisation: shallow is public, deep (IAM) is for every authenticated caller
HEALTH_ROUTES = frozenset({"/health", "/health/<component>", "/health/<component>/deep"})


def check_caller_orgs(app: FlywheelResolver, next_middleware: Any) -> Response:
    """The one place every IAM route goes through, after the request is validated and before its
    handler runs (README "Tenancy"): with API_CALLER_ORGS_JSON set, the caller (its IAM role or user,
    from requestContext.identity.userArn, which API Gateway fills in and no client header can) must
    be mapped to every org_id the request names (query string, body: each message of a batch), and to
    "*" for a route that names none (training, models, experiments). Refused: 403, nothing done."""
    route = app.context.get("_route")
    # a path no route serves reaches the not-found handler through the middlewares too: its 404 stands
    if (
        app.public
        or route is None
        or route.path in HEALTH_ROUTES
        or not any(route is r for r in (*app._static_routes, *app._dynamic_routes))
    ):
        return next_middleware(app)
    settings = get_settings()
    mapping = settings.api_caller_orgs
    if settings.api_caller_orgs_arn:
        # imported here: the secrets client (Powertools parameters) costs a cold start only where used
        from flywheel.clients.secrets import api_caller_orgs

        mapping = api_caller_orgs()
    if mapping:
        identity = (app.current_event.raw_event.get("requestContext") or {}).get("identity") or {}
        reason = callers.refusal(
            mapping, identity.get("userArn"), callers.requested_orgs(app.context.get("_route_args") or {})
        )
        if reason is not None:
            raise errors.Forbidden(reason)
    return next_middleware(app)


def make_resolver(json_bodies: bool = True, public: bool = False) -> FlywheelResolver:
    app = FlywheelResolver(json_bodies, public)
    app.use(middlewares=[check_caller_orgs])

    @app.not_found
    def _no_route(exc: Exception) -> Response:
        return error_response(404, "not_found", "no such route")

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(exc: RequestUnsupportedContentType) -> Response:
        return error_response(415, "unsupported_media_type", "the body must be application/json")

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
        return error_response(422, "validation_error", f"{first['field']}: {first['message']}", fields=fields)

    @app.exception_handler(errors.FlywheelError)
    def _domain(exc: errors.FlywheelError) -> Response:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
        metrics.add_metadata("rejection", exc.code)
        if status >= 500:
            # details of a dependency failure stay in the log, not in the response (they carry
            # connection errors and status codes, never a provider's or the database's data)
            logger.error("request failed", extra={"error": exc.code, "details": exc.details})
            response = error_response(status, exc.code, exc.message)
            response.headers["Retry-After"] = "30"
            return response
        logger.info("request refused", extra={"error": exc.code, "reason": exc.message})
        return error_response(status, exc.code, exc.message, **exc.details)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.error("unhandled error", extra=error_log(exc))
        return error_response(500, "internal_error", "internal error; the request was not applied")

    _health_routes(app)
    return app


def _health_routes(app: FlywheelResolver) -> None:
    """Every API function answers health on its own code path: `GET /health` and
    `GET /health/<function>` (public: status only), `GET /health/<function>/deep` (IAM: its settings,
    the database, the queue and the secrets this function uses, by name, with timings). The health service is
    imported on a health request: it loads the secrets client (Powertools' parameters utility, with
    boto3's DynamoDB helpers), which a cold start of any other route does not need."""

    @app.get("/health")
    def _shallow() -> dict[str, str]:
        from flywheel.services import health

        return health.shallow()

    @app.get("/health/<component>")
    def _shallow_component(component: str) -> dict[str, str]:
        from flywheel.services import health

        return health.shallow()

    @app.get("/health/<component>/deep")
    def _deep(component: str):  # type: ignore[no-untyped-def]  # a return type would be validated
        from flywheel.services import health

        healthy, report = health.deep(caller_scoped=not app.public)
        if not healthy:
            failed = sorted(
                f"{name} ({', '.join(check['invalid'])})" if check.get("invalid") else name
                for name, check in report["checks"].items()
                if not check["ok"]
            )
            response = error_response(503, "unhealthy", f"failing: {', '.join(failed)}", checks=report["checks"])
            response.headers["Retry-After"] = "30"
            return response
        return Response(200, "application/json", json.dumps(report))

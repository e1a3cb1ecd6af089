"""API glue shared by every API function: one resolver, one exception -> HTTP status map.

Error bodies are always JSON: {"error": <code>, "message": <text>, ...details}.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

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
        # the request being answered, per thread (see current_event): set before Powertools' __init__,
        # which assigns self.context
        self._request = threading.local()
        super().__init__(enable_validation=True, json_body_deserializer=strict_json)
        self.json_bodies = json_bodies
        self.public = public
        # where each route names an organisation (README "Tenancy"), read from its signature once
        self.org_scopes: dict[int, OrgScope] = {}
        # Powertools puts its request validation first in every route's middleware stack, before the
        # middlewares `use` adds: replacing it is how the caller check comes before validation
        # (tests/integration/test_caller_orgs.py fails if an upgrade stops calling it)
        self._request_validation_middleware = AuthoriseThenValidate()

    # Powertools keeps the request being answered in class attributes (BaseRouter.current_event and
    # lambda_context, shared by every resolver of the process) and in one routing `context` dict per
    # resolver. In Lambda one execution environment answers one request at a time, so that is safe;
    # the local API server (flywheel start-api) answers requests side by side on worker threads in
    # one process, where a request would be checked, validated and answered with another's caller,
    # org_id or route. Each thread's request is kept here instead (Powertools' own HttpResolver does
    # the same with a ContextVar). tests/integration/test_local_runner.py races two callers.

    @property  # type: ignore[override]
    def current_event(self) -> Any:
        return self._request.event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._request.event = value

    @property  # type: ignore[override]
    def lambda_context(self) -> Any:
        return self._request.lambda_context

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._request.lambda_context = value

    @property  # type: ignore[override]
    def context(self) -> dict[str, Any]:
        if not hasattr(self._request, "context"):
            self._request.context = {}
        return self._request.context  # type: ignore[no-any-return]

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request.context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.lambda_context = context
        return super().resolve(event, context)

    def _to_proxy_event(self, event: dict[str, Any]) -> Any:
        # resolve() puts the event it converts here in BaseRouter.current_event, the process's one
        proxy = super()._to_proxy_event(event)
        self.current_event = proxy
        return proxy

    def refuse_body(self) -> Response | None:
        """A body that is not UTF-8 JSON (415, 400), refused before it is parsed."""
        event = self.current_event
        if not self.json_bodies or not event.body:
            return None
        media = event.headers.get("content-type")
        if not is_json_media_type("application/json" if media is None else str(media)):
            return _refusal(415, "unsupported_media_type", NOT_JSON)
        try:
            raw = event.body
            (base64.b64decode(raw) if event.is_base64_encoded else str(raw).encode()).decode("utf-8")
        except (ValueError, UnicodeError):
            return _refusal(400, "malformed_json", "request body is not UTF-8 JSON")
        return None


class AuthoriseThenValidate(OpenAPIRequestValidationMiddleware):
    """The first middleware of every route: the caller check (check_caller_before_validation), then
    a body that is not UTF-8 JSON refused, then Powertools' request validation."""

    def handler(self, app: Any, next_middleware: Any) -> Response:
        check_caller_before_validation(app)
        refused = app.refuse_body()
        if refused is not None:
            return refused
        return super().handler(app, next_middleware)

    def _get_body(self, app: Any) -> dict[str, Any]:
        # Powertools reads a body as JSON only when its Content-Type starts with "application/json",
        # case-sensitively; a media type is case-insensitive (RFC 9110 8.3.1), and a structured
        # `application/<type>+json` is JSON too (is_json_media_type): both are parsed as JSON
        media = app.current_event.headers.get("content-type")
        if media is not None and is_json_media_type(str(media)):
            return self._parse_json_data(app)
        return super()._get_body(app)


def _refusal(status: int, code: str, message: str) -> Response:
    metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
    logger.info("rejected request", extra={"reason": code})
    return error_response(status, code, message)


# the answer to a body of another media type (refuse_body, and Powertools' own refusal)
NOT_JSON = "the body must be JSON (application/json or application/<type>+json)"

# the health routes name no organisation: shallow is public, deep (IAM) is for every authenticated caller
HEALTH_ROUTES = frozenset({"/health", "/health/<component>", "/health/<component>/deep"})


class OrgScope(NamedTuple):
    """Where a route's request names organisations: an `org_id` query parameter, and the paths to
    each `org_id` field of its body model (("messages", "*", "org_id") for a batch). A route with
    neither is a platform route."""

    query: bool
    body_paths: tuple[tuple[str, ...], ...]

    @property
    def org_scoped(self) -> bool:
        return self.query or bool(self.body_paths)


def org_scope(route: Any) -> OrgScope:
    """The OrgScope of a route, from the parameters its handler declares."""
    dependant = route.dependant
    query = any(param.alias == "org_id" for param in dependant.query_params)
    paths: set[tuple[str, ...]] = set()
    bodies = dependant.body_params
    for param in bodies:
        # one body parameter is the whole body (Powertools embeds it under its name otherwise)
        root = () if len(bodies) == 1 and not getattr(param.field_info, "embed", False) else (param.alias,)
        _org_paths(param.field_info.annotation, root, paths, frozenset())
    return OrgScope(query, tuple(sorted(paths)))


def _org_paths(annotation: Any, prefix: tuple[str, ...], found: set[tuple[str, ...]], seen: frozenset[type]) -> None:
    """Every path to an `org_id` field in a body type: through models, unions and lists, never into
    a free-form dict (what a client puts there is not an org_id)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        _org_paths(get_args(annotation)[0], prefix, found, seen)
    elif origin in (Union, UnionType):
        for member in get_args(annotation):
            _org_paths(member, prefix, found, seen)
    elif origin in (list, tuple, set, frozenset, Sequence):
        for item in get_args(annotation):
            if item is not Ellipsis:
                _org_paths(item, (*prefix, "*"), found, seen)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        for name, field in annotation.model_fields.items():
            key = field.alias or name
            if name == "org_id":
                found.add((*prefix, key))
            else:
                _org_paths(field.annotation, (*prefix, key), found, seen | {annotation})


def _checked_route(app: FlywheelResolver) -> Any:
    """The route of this request when the caller check applies to it: an IAM route this function
    serves, but the health checks; None for a public function, a health check, or a path no route
    serves (see _resource_route)."""
    route = app.context.get("_route")
    if app.public or route is None or route.path in HEALTH_ROUTES or not _served(app, route):
        return None
    return route


def _served(app: FlywheelResolver, route: Any) -> bool:
    return any(route is r for r in (*app._static_routes, *app._dynamic_routes))


# an API Gateway path parameter in a resource ({outcome_id}, greedy {proxy+}), Powertools' <outcome_id>
_RESOURCE_PARAMETER = re.compile(r"\{([^{}+]+)\+?\}")


def _resource_route(app: FlywheelResolver) -> Any:
    """The route this function serves for the resource API Gateway matched (the event's `resource`,
    `/messages/{outcome_id}`), or None. Powertools finds no route (its not-found route) when a path
    parameter holds a character its route pattern does not take (a quote, a backslash, a backtick,
    an emoji) though API Gateway matched, authorised and sent the request."""
    event = app.current_event
    resource = _RESOURCE_PARAMETER.sub(r"<\1>", str(event.resource or ""))
    method = event.http_method.upper()
    return next(
        (r for r in (*app._static_routes, *app._dynamic_routes) if r.path == resource and r.method == method), None
    )


def caller_mapping() -> Mapping[str, frozenset[str]]:
    settings = get_settings()
    if settings.api_caller_orgs_arn:
        # imported here: the secrets client (Powertools parameters) costs a cold start only where used
        from flywheel.clients.secrets import api_caller_orgs

        return api_caller_orgs()
    return settings.api_caller_orgs


def _user_arn(app: FlywheelResolver) -> str | None:
    identity = (app.current_event.raw_event.get("requestContext") or {}).get("identity") or {}
    return identity.get("userArn")


def check_caller_before_validation(app: FlywheelResolver) -> None:
    """Authorisation before input validation (README "Tenancy"), as API Gateway's IAM authoriser
    answers 403 before a function sees the request: a caller API_CALLER_ORGS_JSON does not name is
    refused on every IAM route whatever it sent, a caller not mapped to "*" on every platform route,
    and any other caller when an org_id the raw request names (query string; body, along its model's
    org_id fields) is not one of its organisations. A request that names no readable org_id (a body
    that is not JSON, an org_id missing) is left to validation (400, 422), and once validated to
    check_caller_orgs. Refused: 403, nothing read or done.

    A request no route of this function takes (Powertools' not-found route) is checked too before
    its 404: against the route of the resource API Gateway matched (a path parameter Powertools'
    pattern does not take) as any request of that route; for a resource this function does not
    serve (API Gateway never sends one), a caller the mapping does not name is refused, any other
    gets the 404."""
    route = app.context.get("_route")
    if app.public or route is None:
        return
    if not _served(app, route):
        route = _resource_route(app)
    if route is not None and route.path in HEALTH_ROUTES:
        return
    mapping = caller_mapping()
    if not mapping:
        return
    if route is None:  # no resource of this function: only who the caller is can be checked
        reason = callers.refusal_before_validation(mapping, _user_arn(app), org_scoped=True, named=[])
        if reason is not None:
            raise errors.Forbidden(reason)
        return
    scope = app.org_scopes.get(id(route))
    if scope is None:
        scope = app.org_scopes[id(route)] = org_scope(route)
    named: list[Any] = []
    if scope.query:
        event = app.current_event
        named += (event.multi_value_query_string_parameters or {}).get("org_id") or []
        named.append((event.query_string_parameters or {}).get("org_id"))
    if scope.body_paths and app.current_event.body:
        # a body that is not JSON names nothing readable (JSONDecodeError is a ValueError)
        with contextlib.suppress(ValueError, UnicodeError, RecursionError):
            named += callers.values_at(app.current_event.json_body, scope.body_paths)
    reason = callers.refusal_before_validation(mapping, _user_arn(app), org_scoped=scope.org_scoped, named=named)
    if reason is not None:
        raise errors.Forbidden(reason)


def check_caller_orgs(app: FlywheelResolver, next_middleware: Any) -> Response:
    """The caller check again on the validated request, before its handler runs: the org_ids the
    handler will read (query string, body: each message of a batch) must all be the caller's, and a
    route that names none is for callers mapped to "*" only. Refused: 403, nothing done."""
    if _checked_route(app) is None:
        return next_middleware(app)
    mapping = caller_mapping()
    if mapping:
        reason = callers.refusal(mapping, _user_arn(app), callers.requested_orgs(app.context.get("_route_args") or {}))
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
        return error_response(415, "unsupported_media_type", NOT_JSON)

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

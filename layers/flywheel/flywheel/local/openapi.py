"""One OpenAPI 3 document for every route of the template, generated from each API function's
Powertools resolver (its request models, parameters and response models) and from the provider
models the webhook adapters validate with. `make openapi` writes it; `flywheel start-api` serves it
at /openapi.json with a Swagger UI page at /docs."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from flywheel import __name__ as _package  # noqa: F401 - the package must be importable
from flywheel.local.invoke import find_template, function_environment, load_handler
from flywheel.local.template import Route, read_template
from flywheel.models.api import ErrorBody, IngestSummary

TITLE = "Flywheel API"
VERSION = "1.0.0"
ERRORS = {
    400: "malformed body",
    401: "signature or credentials do not verify",
    403: "wrong path token or foreign account",
    404: "not found (or another organisation's)",
    409: "conflict",
    413: "body over MAX_BODY_BYTES",
    415: "body is not of the route's media type",
    422: "a field is invalid",
    503: "a dependency is down, or a setting is invalid (configuration_error): retry (Retry-After)",
}


def _webhook_bodies() -> dict[str, tuple[str, dict[str, Any]]]:
    """Request bodies of the webhook routes (they read raw bytes, so the resolver cannot know them)."""
    from flywheel.webhooks import calendly, generic, hubspot, pipedrive, sendgrid

    def array(model: Any) -> dict[str, Any]:
        return {"type": "array", "items": model.model_json_schema(ref_template="#/components/schemas/{model}")}

    form = {
        "type": "object",
        "properties": {
            name: {"type": "string"}
            for name in (
                "headers",
                "from",
                "to",
                "cc",
                "subject",
                "text",
                "html",
                "envelope",
                "email",
                "charsets",
                "SPF",
                "dkim",
            )
        },
    }
    return {
        "/webhooks/sendgrid": ("application/json", array(sendgrid.SendGridEvent)),
        "/webhooks/sendgrid/inbound/{token}": ("multipart/form-data", form),
        "/webhooks/calendly": ("application/json", calendly.Envelope.model_json_schema()),
        "/webhooks/crm/hubspot": ("application/json", {**array(hubspot.HubSpotEvent), "maxItems": hubspot.MAX_EVENTS}),
        "/webhooks/crm/pipedrive": ("application/json", pipedrive.Body.model_json_schema()),
        "/webhooks/crm/salesforce/{token}": (
            "text/xml",
            {"type": "string", "description": "a SOAP Outbound Message (notifications)"},
        ),
        "/webhooks/crm/deals": ("application/json", generic.CrmEvent.model_json_schema()),
        "/webhooks/crm/meetings": ("application/json", generic.CrmEvent.model_json_schema()),
    }


def _inline_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    return json.loads(json.dumps(schema).replace("#/$defs/", "#/components/schemas/"))


def _deployed_paths(path: str, deployed: set[str]) -> list[str]:
    """The template's paths a resolver route serves: itself, or (a route with a parameter such as
    `/health/{component}`, deployed once per function) each concrete path it matches, with that
    parameter dropped from the operation."""
    if path in deployed or "{" not in path:
        return [path]
    pattern = Route("GET", path, "").pattern
    return sorted(p for p in deployed if "{" not in p and pattern.match(p))


def build_document(template_path: Path | None = None) -> dict[str, Any]:
    template_path = template_path or find_template()
    template = read_template(template_path)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    public = set()
    for logical_id, spec in sorted(template.functions().items()):
        if not spec.routes:
            continue
        with function_environment(spec):
            app = inspect.unwrap(load_handler(spec)).__globals__["app"]
        doc = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
        deployed = {r.path for r in spec.routes}
        for path, operations in doc["paths"].items():
            for operation in operations.values():
                operation["tags"] = [logical_id.removesuffix("Function")]
            for concrete in _deployed_paths(path, deployed):
                copied = json.loads(json.dumps(operations))
                for operation in copied.values():
                    params = [
                        p
                        for p in operation.get("parameters", [])
                        if p.get("in") != "path" or f"{{{p['name']}}}" in concrete
                    ]
                    if params:
                        operation["parameters"] = params
                    else:
                        operation.pop("parameters", None)
                paths.setdefault(concrete, {}).update(copied)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two functions define different schemas named {name}")
            schemas[name] = schema
        public |= {r.path for r in spec.routes if r.path.startswith("/webhooks/")}
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    schemas["IngestSummary"] = IngestSummary.model_json_schema()
    bodies = _webhook_bodies()
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in bodies:
                media, schema = bodies[path]
                operation["requestBody"] = {
                    "required": True,
                    "content": {media: {"schema": _inline_defs(schema, schemas)}},
                }
                ok = (
                    {"text/xml": {"schema": {"type": "string", "description": "the SOAP Ack"}}}
                    if media == "text/xml"
                    else {"application/json": {"schema": {"$ref": "#/components/schemas/IngestSummary"}}}
                )
                responses["200"] = {
                    "description": "stored (duplicates and malformed batch events included)",
                    "content": ok,
                }
                operation["security"] = []
                codes: tuple[int, ...] = (400, 401, 403, 413, 415, 422, 503)
            elif path.startswith("/health") and not path.endswith("/deep"):  # public, status only
                operation["security"] = []
                codes = (503,)
            else:
                operation["security"] = [{"sigv4": []}]
                codes = (400, 404, 409, 415, 422, 503) if method == "post" else (404, 422, 503)
            for code in codes:
                responses.setdefault(
                    str(code),
                    {
                        "description": ERRORS[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    },
                )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Every route of template.yaml. Internal routes are IAM (SigV4) authenticated and "
            "read one organisation's data per call (org_id); with API_CALLER_ORGS_JSON set, a caller "
            "may pass only the org_ids its IAM role is mapped to (403 otherwise), and only a caller "
            'mapped to "*" may call the routes that take none. Webhook routes are public and '
            "verified the way each provider signs.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "AWS SigV4 (API Gateway AWS_IAM)",
                }
            },
        },
    }


def swagger_page(spec_url: str = "/openapi.json") -> str:
    """Swagger UI with its assets inlined (Powertools ships them), so it works offline."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    return generate_swagger_html(
        json.dumps(build_document()),
        (assets / "swagger-ui-bundle.min.js").read_text(),
        (assets / "swagger-ui.min.css").read_text(),
        "",
        None,
    )


def write(path: Path, template_path: Path | None = None) -> None:
    path.write_text(json.dumps(build_document(template_path), indent=2, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":  # make openapi
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi.json")
    write(target)
    print(f"wrote {target}")

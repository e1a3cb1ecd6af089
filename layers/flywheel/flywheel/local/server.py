"""`flywheel start-api`: serve every API route of the template over HTTP, without Docker.

Each request becomes an API Gateway (REST, proxy integration) event; the handler's answer
becomes the HTTP response, as `sam local start-api` does. Requests run side by side on a pool of
worker threads, each an execution environment of its own as in production (one Lambda execution
environment per concurrent request): its own instance of each function's module, one request at a
time, its own database connection (flywheel.local.invoke.invoke_in_place). Each request reads its
function's own settings (the template's variables for that function, under the process's), as in
AWS: never another API function's, nor those of a queue or schedule invocation running meanwhile in
this process.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flywheel.dal.connection import close_connection
from flywheel.local.invoke import (
    between_invocations,
    function_spec,
    invoke,
    invoke_in_place,
    shared_environment,
    template_environment,
)
from flywheel.local.sigv4 import AuthFailure, SigV4Verifier
from flywheel.local.template import Route, read_template
from flywheel.settings import reset_settings, settings_environment

DOCS = ("/openapi.json", "/docs")  # the API's OpenAPI document and its Swagger UI page
# Local only: the IAM principal a request acts as (README "Tenancy"), e.g.
# `arn:aws:sts::123456789012:assumed-role/acme-sender/me`, put where API Gateway puts the caller's
# identity (requestContext.identity.userArn). In AWS a header is only a header: API Gateway fills the
# identity in from the signature, and the functions never read this one.
PRINCIPAL_HEADER = "X-Flywheel-Principal"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def _is_binary(content_type: str, binary_types: list[str], body: bytes) -> bool:
    media = content_type.split(";")[0].strip().lower()
    if any(fnmatch.fnmatch(media, pattern) for pattern in binary_types):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def build_event(
    method: str,
    raw_path: str,
    headers: dict[str, list[str]],
    body: bytes,
    route: Route,
    path_params: dict[str, str],
    binary_types: list[str],
    source_ip: str = "127.0.0.1",
    stage: str = "local",
    caller: str | None = None,
) -> dict[str, Any]:
    url = urlsplit(raw_path)
    query = parse_qs(url.query, keep_blank_values=True)
    binary = bool(body) and _is_binary(
        headers.get("Content-Type", headers.get("content-type", [""]))[0], binary_types, body
    )
    principal = next((v[-1] for k, v in headers.items() if k.lower() == PRINCIPAL_HEADER.lower() and v), None)
    account = principal.split(":")[4] if principal and principal.count(":") >= 5 else None
    return {
        "resource": route.path,
        "path": url.path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            # the path as called, as behind a custom domain: the URL a webhook provider signs
            # (HubSpot) is the URL the handler reconstructs
            "path": url.path,
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", [""])[0],
                "accessKey": caller,
                "caller": caller,
                "userArn": principal if route.auth == "AWS_IAM" else None,
                "accountId": account if route.auth == "AWS_IAM" else None,
            },
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8")) if body else None,
        "isBase64Encoded": binary,
    }


class LocalApi:
    """The template's API. With a `verifier`, IAM routes need valid SigV4 signatures (see
    flywheel.local.sigv4); without one they are open, as with `sam local start-api`."""

    def __init__(self, template_path: Path, verifier: SigV4Verifier | None = None) -> None:
        self.template_path = template_path
        template = read_template(template_path)
        self.routes = [r for spec in template.functions().values() for r in spec.routes]
        self.binary_types = template.binary_media_types()
        self.verifier = verifier
        # a function's own environment, which its requests read their settings from (the server's:
        # see LocalApiServer.own_environment)
        self.environment_of: Callable[[str], dict[str, str]] | None = None

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        # literal routes before parameterised ones, as API Gateway does
        for route in sorted(self.routes, key=lambda r: (r.path.count("{"), -len(r.path))):
            found = route.pattern.match(path)
            if found and route.method in (method, "ANY"):
                return route, found.groupdict()
        return None

    def handle(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, list[str]],
        body: bytes,
        source_ip: str = "127.0.0.1",
        side_by_side: bool = False,
    ) -> tuple[int, dict[str, list[str]], bytes]:
        """One request; `side_by_side` when the caller set up the shared environment (the server)."""
        matched = self.match(method, urlsplit(raw_path).path)
        if matched is None:
            return 403, {"Content-Type": ["application/json"]}, b'{"message":"Missing Authentication Token"}'
        route, params = matched
        caller = None
        if route.auth == "AWS_IAM" and self.verifier is not None:
            checked = self.verifier.check(method, raw_path, headers, body)
            if isinstance(checked, AuthFailure):
                return (
                    checked.status,
                    {"Content-Type": ["application/json"], "x-amzn-ErrorType": [checked.error_type]},
                    json.dumps({"message": checked.message}).encode(),
                )
            caller = checked.access_key
        event = build_event(method, raw_path, headers, body, route, params, self.binary_types, source_ip, caller=caller)
        if side_by_side:
            environment = self.environment_of(route.function) if self.environment_of else None
            with settings_environment(environment) if environment is not None else nullcontext():
                result = invoke_in_place(function_spec(route.function, self.template_path), event)
        else:
            result = invoke(route.function, event, self.template_path)
        return self.to_http(result)

    @staticmethod
    def to_http(result: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
        out_headers: dict[str, list[str]] = {k: [str(v)] for k, v in (result.get("headers") or {}).items()}
        for k, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[k] = [str(v) for v in values]
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
        return int(result.get("statusCode", 200)), out_headers, payload

    def route_lines(self) -> list[str]:
        width = max((len(r.path) for r in self.routes), default=0)
        return [
            f"{r.method:<6} {r.path:<{width}}  {r.function} ({'IAM' if r.auth == 'AWS_IAM' else 'public'})"
            for r in sorted(self.routes, key=lambda r: (r.path, r.method))
        ]


class LocalApiServer(ThreadingHTTPServer):
    """The HTTP server, its worker threads, and the API functions' environment for its lifetime."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: LocalApi, workers: int
    ) -> None:
        self._saved: dict[str, str | None] | None = None
        self._shared: dict[str, str] = {}  # what prepare() set in os.environ
        self._own: dict[str, dict[str, str]] = {}  # each API function's template variables
        self._process: dict[str, str] = {}  # os.environ without them, as last read between invocations
        self._preparing = threading.Lock()
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-env")
        super().__init__(address, handler)
        self.api = api

    def prepare(self) -> None:
        """Set the API functions' environment up at the first request: by then the local stack
        (`flywheel start-api`) runs and resolves the template's Refs."""
        if self.api.environment_of is not None:  # prepared (set last)
            return
        with self._preparing, between_invocations():
            if self._saved is None:
                functions = sorted({r.function for r in self.api.routes})
                specs = [function_spec(f, self.api.template_path) for f in functions]
                self._own = {spec.logical_id: template_environment(spec) for spec in specs}
                # what reads os.environ itself (the AWS SDK, Powertools, the settings outside a
                # request) sees the API functions' variables together
                environment = shared_environment(specs)
                self._saved = {k: os.environ.get(k) for k in environment}
                self._shared = environment
                os.environ.update(environment)
                reset_settings()
                self._process = self._read_process()
                self.api.environment_of = self.own_environment

    def _read_process(self) -> dict[str, str]:
        """os.environ as it would be without prepare(): a variable it set and nobody changed since
        is back to its value before (or absent)."""
        process = dict(os.environ)
        for key, value in self._shared.items():
            if process.get(key) == value:
                before = (self._saved or {}).get(key)
                if before is None:
                    process.pop(key, None)
                else:
                    process[key] = before
        return process

    def own_environment(self, function: str) -> dict[str, str]:
        """What `function`'s request reads its settings from, as `flywheel invoke` would give it:
        the process's variables over the function's template variables. The process's are read
        again when no invocation runs (a change made meanwhile, as `make demo` makes, is seen);
        while a queue or schedule invocation has its own variables in os.environ, the last ones."""
        with between_invocations(wait=False) as quiet:
            if quiet:
                self._process = self._read_process()
        process = self._process
        return {**process, **{k: process.get(k, v) for k, v in self._own[function].items()}}

    def shutdown(self) -> None:
        super().shutdown()
        # each worker thread closes its own connection
        gate = threading.Barrier(self.workers)
        for done in [self.pool.submit(_close_on_worker, gate) for _ in range(self.workers)]:
            done.result(timeout=30)
        self.pool.shutdown()
        with between_invocations():
            for key, value in (self._saved or {}).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_settings()


def _close_on_worker(gate: threading.Barrier) -> None:
    close_connection()
    gate.wait(timeout=30)  # one task per worker thread


def make_server(
    template_path: Path,
    host: str,
    port: int,
    *,
    verifier: SigV4Verifier | None = None,
    log: Callable[[str], None] | None = None,
    workers: int = 4,
) -> LocalApiServer:
    """The HTTP server; `workers` requests run side by side (more wait for a free worker); `log`
    gets one line per request (method, path, status, milliseconds)."""
    api = LocalApi(template_path, verifier)

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body are two writes: without this, a kept-alive client waits out a delayed ACK
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            started = time.perf_counter()
            if self.command == "GET" and urlsplit(self.path).path in DOCS:
                return self._docs(urlsplit(self.path).path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers: dict[str, list[str]] = {}
            for key, value in self.headers.items():
                headers.setdefault(key, []).append(value)
            try:
                assert isinstance(self.server, LocalApiServer)
                self.server.prepare()
                status, out_headers, payload = self.server.pool.submit(
                    api.handle, self.command, self.path, headers, body, self.client_address[0], True
                ).result()
            except Exception as exc:  # a crashed handler is a 502 from API Gateway
                status, out_headers = 502, {"Content-Type": ["application/json"]}
                payload = json.dumps({"message": "Internal server error", "detail": repr(exc)}).encode()
            if log is not None:  # before answering: a client that got its answer finds the line logged
                log(f"{self.command} {self.path} {status} {(time.perf_counter() - started) * 1000:.0f} ms")
            self.send_response(status)
            for key, values in out_headers.items():
                for value in values:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _docs(self, path: str) -> None:
            from flywheel.local import openapi

            if path == "/openapi.json":
                payload, media = json.dumps(openapi.build_document(template_path)).encode(), "application/json"
            else:
                payload, media = openapi.swagger_page().encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def __getattr__(self, name: str) -> Any:
            # every method reaches the router: API Gateway answers an undefined one with 403, never 501
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    return LocalApiServer((host, port), RequestHandler, api, workers)

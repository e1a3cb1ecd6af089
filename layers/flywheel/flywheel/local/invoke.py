"""Invoke a template's function in-process, as `sam local invoke` would, without Docker."""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flywheel.local.template import FunctionSpec, read_template
from flywheel.settings import reset_settings

Handler = Callable[[dict[str, Any], Any], Any]

# Environment changes are process-wide: one invocation at a time.
_INVOKE_LOCK = threading.RLock()
_LOCAL_DEFAULTS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    timeout_s: int = 30
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def find_template(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").exists():
            return folder / "template.yaml"
    package_root = Path(__file__).resolve().parents[4]
    if (package_root / "template.yaml").exists():
        return package_root / "template.yaml"
    raise FileNotFoundError("template.yaml not found in this folder or its parents")


def function_spec(logical_id: str, template_path: Path | None = None) -> FunctionSpec:
    functions = read_template(template_path or find_template()).functions()
    if logical_id not in functions:
        raise KeyError(f"no function {logical_id!r} in the template; known: {', '.join(sorted(functions))}")
    return functions[logical_id]


_loaded: dict[str, Handler] = {}


def load_handler(spec: FunctionSpec, *, fresh: bool = False) -> Handler:
    """Import the handler from the function's code folder, or from the layer when it lives there.
    Loaded once per process; `fresh`: a new instance of the function's module, as a new execution
    environment loads it (its own module globals: resolver, caches), not shared with other callers."""
    cache_key = f"{spec.code_dir}:{spec.handler}"
    if cache_key in _loaded and not fresh:
        return _loaded[cache_key]
    module_path, _, attribute = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    if source.exists():
        name = f"flywheel_fn_{spec.logical_id}"
        module_spec = importlib.util.spec_from_file_location(name, source)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        # a handler of the layer's package (the migration custom resource) is the process's one
        module = importlib.import_module(module_path)
    handler: Handler = getattr(module, attribute)
    if not fresh:
        _loaded[cache_key] = handler
    return handler


class EnvironmentSource(Protocol):
    """What a function's environment resolves to beyond the template's parameters (the local stack)."""

    def environment(self, spec: FunctionSpec) -> dict[str, str]: ...


_SOURCES: list[EnvironmentSource] = []


@contextmanager
def environment_source(source: EnvironmentSource) -> Iterator[None]:
    _SOURCES.append(source)
    try:
        yield
    finally:
        _SOURCES.remove(source)


@contextmanager
def function_environment(spec: FunctionSpec) -> Iterator[None]:
    """The function's template environment (resolved by the local stack when one runs); variables
    already set in this process win (like --env-vars)."""
    wanted = {k: os.environ.get(k, v) for k, v in template_environment(spec).items()}
    wanted.update(AWS_LAMBDA_FUNCTION_TIMEOUT=str(spec.timeout), LAMBDA_TASK_ROOT=str(spec.code_dir))
    saved = {k: os.environ.get(k) for k in wanted}
    with _INVOKE_LOCK:
        os.environ.update(wanted)
        reset_settings()
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_settings()


def template_environment(spec: FunctionSpec) -> dict[str, str]:
    """The variables `function_environment` gives the function (where the process has none)."""
    return {**_LOCAL_DEFAULTS, **(_SOURCES[-1].environment(spec) if _SOURCES else spec.environment)}


@contextmanager
def between_invocations(wait: bool = True) -> Iterator[bool]:
    """A block no invocation runs during, so os.environ holds no function's variables; without
    `wait`, yields False at once (and guarantees nothing) while an invocation runs."""
    acquired = _INVOKE_LOCK.acquire(blocking=wait)
    try:
        yield acquired
    finally:
        if acquired:
            _INVOKE_LOCK.release()


def invoke(logical_id: str, event: dict[str, Any], template_path: Path | None = None) -> Any:
    spec = function_spec(logical_id, template_path)
    with function_environment(spec):
        handler = load_handler(spec)
        return handler(event, LocalContext(function_name=logical_id, timeout_s=spec.timeout))


def shared_environment(specs: list[FunctionSpec]) -> dict[str, str]:
    """One environment for several functions at once, so they can run side by side in this process
    (the local API server's): their template variables, which must agree, under the ones already
    set in the process; resolved by the local stack when one runs."""
    wanted: dict[str, str] = dict(_LOCAL_DEFAULTS)
    for spec in specs:
        for key, value in (_SOURCES[-1].environment(spec) if _SOURCES else spec.environment).items():
            if key in wanted and wanted[key] != value and key not in _LOCAL_DEFAULTS:
                raise ValueError(f"{spec.logical_id} sets {key} differently from another function it runs beside")
            wanted[key] = value
    return {k: os.environ.get(k, v) for k, v in wanted.items()}


def invoke_in_place(spec: FunctionSpec, event: dict[str, Any]) -> Any:
    """Invoke in the environment the caller set up (see `shared_environment`), without taking the
    process-wide lock: invocations on several threads run side by side, like Lambda's execution
    environments. Each thread is an execution environment of its own for every function it runs: it
    loads the function's module itself on its first request for it (its own cold start, resolver and
    module globals) and answers one request at a time with it, so a request never sees another's
    (Powertools keeps the request being answered on the resolver; each thread also has its own
    database connection)."""
    handler = worker_handler(spec)
    return handler(event, LocalContext(function_name=spec.logical_id, timeout_s=spec.timeout))


def worker_handler(spec: FunctionSpec) -> Handler:
    """The function's handler in this thread's own execution environment, loaded on first use."""
    environments: dict[str, Handler] = _WORKER.__dict__.setdefault("handlers", {})
    key = f"{spec.code_dir}:{spec.handler}"
    handler = environments.get(key)
    if handler is None:
        with _LOADING:
            handler = environments[key] = load_handler(spec, fresh=True)
    return handler


_LOADING = threading.Lock()
# the handlers a worker thread has loaded: one execution environment per function and thread
_WORKER = threading.local()

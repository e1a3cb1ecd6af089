"""Read template.yaml the way `sam local` does: functions, their code, handler, environment and routes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "flywheel-local",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation short-form tags (!Ref, !Sub, !GetAtt ...)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    return dict(yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader))  # noqa: S506 (safe subclass)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    auth: str = "AWS_IAM"  # the route's authorizer: AWS_IAM (SigV4) or NONE

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}$")


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    routes: list[Route] = field(default_factory=list)
    # the template's values before resolution (the local stack resolves its resources' Refs)
    raw_environment: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)


@dataclass
class Template:
    path: Path
    body: dict[str, Any]
    _functions: dict[str, FunctionSpec] | None = field(default=None, init=False, repr=False)

    @property
    def root(self) -> Path:
        return self.path.parent

    @cached_property
    def _defaults(self) -> dict[str, str]:
        return {**PSEUDO_PARAMETERS, **self.parameter_defaults()}

    def parameter_defaults(self) -> dict[str, str]:
        return {
            name: str(spec["Default"])
            for name, spec in (self.body.get("Parameters") or {}).items()
            if "Default" in spec
        }

    def resolve(self, value: Any, known: dict[str, str] | None = None) -> str | None:
        """Resolve the intrinsics a local run can know: parameters (their defaults unless `known`
        overrides them), pseudo parameters, Sub, Fn::If on the template's Conditions, and the
        Refs / GetAtts in `known` (as "Logical" / "Logical.Attribute"); None when something is not
        known (or AWS::NoValue: the property is not set)."""
        if isinstance(value, str | int | float | bool):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, dict):
            return None
        known = {**self._defaults, **(known or {})}
        if "Fn::If" in value:
            name, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.condition(name, known) else when_false, known)
        if "Ref" in value:
            return known.get(value["Ref"])
        if "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
            return known.get(".".join(value["Fn::GetAtt"]))
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            text = value["Fn::Sub"]
            names = re.findall(r"\$\{([^}!]+)\}", text)
            if all(n in known for n in names):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: known[m.group(1)], text)
        return None

    def condition(self, name: str, known: dict[str, str] | None = None) -> bool:
        """A condition of the template's Conditions section, for the parameter values in `known`
        (the defaults otherwise), as CloudFormation evaluates it."""
        known = {**self._defaults, **(known or {})}

        def value(node: Any) -> str:
            if isinstance(node, dict) and set(node) == {"Fn::Join"}:
                separator, items = node["Fn::Join"]
                if isinstance(items, dict):  # a list parameter: its value is comma-separated
                    items = (self.resolve(items, known) or "").split(",")
                return str(separator).join(value(item) for item in items)
            return self.resolve(node, known) or ""

        def evaluate(node: dict[str, Any]) -> bool:
            ((function, args),) = node.items()
            if function in ("Condition", "Fn::Condition"):  # the short form !Condition reads as Fn::Condition
                return self.condition(args, known)
            if function == "Fn::Equals":
                return value(args[0]) == value(args[1])
            if function == "Fn::Not":
                return not evaluate(args[0])
            if function == "Fn::And":
                return all(evaluate(arg) for arg in args)
            if function == "Fn::Or":
                return any(evaluate(arg) for arg in args)
            raise ValueError(f"condition {name}: {function} is not a condition function")

        conditions = self.body.get("Conditions") or {}
        if name not in conditions:
            raise KeyError(f"no condition {name!r} in the template")
        return evaluate(conditions[name])

    def resources(self, resource_type: str, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Logical id -> properties of every resource of this type that the stack creates with the
        parameter values in `known` (the defaults otherwise): a resource whose Condition is false
        is left out, as CloudFormation does."""
        return {
            name: resource.get("Properties") or {}
            for name, resource in self.body.get("Resources", {}).items()
            if resource.get("Type") == resource_type
            and ("Condition" not in resource or self.condition(resource["Condition"], known))
        }

    def default_authorizer(self) -> str:
        for props in self.resources("AWS::Serverless::Api").values():
            return str((props.get("Auth") or {}).get("DefaultAuthorizer") or "NONE")
        return "NONE"

    def binary_media_types(self) -> list[str]:
        for resource in self.body.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Api":
                return [t.replace("~1", "/") for t in resource.get("Properties", {}).get("BinaryMediaTypes", [])]
        return []

    def functions(self) -> dict[str, FunctionSpec]:
        """Every function of the template (read once: the local runner asks on every invocation)."""
        if self._functions is None:
            self._functions = self._read_functions()
        return dict(self._functions)

    def _read_functions(self) -> dict[str, FunctionSpec]:
        globals_fn = (self.body.get("Globals") or {}).get("Function", {})
        global_env = (globals_fn.get("Environment") or {}).get("Variables") or {}
        specs = {}
        for logical_id, resource in self.body.get("Resources", {}).items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            props = resource.get("Properties", {})
            env_vars = {**global_env, **((props.get("Environment") or {}).get("Variables") or {})}
            environment = {k: v for k, v in ((k, self.resolve(v)) for k, v in env_vars.items()) if v is not None}
            spec = FunctionSpec(
                logical_id=logical_id,
                code_dir=(self.root / props["CodeUri"]).resolve(),
                handler=props["Handler"],
                environment=environment,
                timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                raw_environment=env_vars,
                events=dict(props.get("Events") or {}),
            )
            for event in spec.events.values():
                if event.get("Type") == "Api":
                    ev = event["Properties"]
                    auth = str((ev.get("Auth") or {}).get("Authorizer") or self.default_authorizer())
                    spec.routes.append(Route(ev["Method"].upper(), ev["Path"], logical_id, auth))
            specs[logical_id] = spec
        return specs


@cache
def read_template(path: Path) -> Template:
    return Template(path=path, body=load_template(path))

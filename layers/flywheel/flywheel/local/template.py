"""Read template.yaml the way `sam local` does: functions, their code, handler, environment and routes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "flywheel-local",
                     "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


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


@dataclass
class Template:
    path: Path
    body: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    def parameter_defaults(self) -> dict[str, str]:
        return {
            name: str(spec["Default"])
            for name, spec in (self.body.get("Parameters") or {}).items()
            if "Default" in spec
        }

    def resolve(self, value: Any) -> str | None:
        """Resolve the intrinsics a local run can know (parameters, pseudo parameters, Sub)."""
        if isinstance(value, str | int | float | bool):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, dict):
            return None
        known = {**PSEUDO_PARAMETERS, **self.parameter_defaults()}
        if "Ref" in value:
            return known.get(value["Ref"])
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            text = value["Fn::Sub"]
            names = re.findall(r"\$\{([^}!]+)\}", text)
            if all(n in known for n in names):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: known[m.group(1)], text)
        return None

    def binary_media_types(self) -> list[str]:
        for resource in self.body.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Api":
                return [t.replace("~1", "/") for t in resource.get("Properties", {}).get("BinaryMediaTypes", [])]
        return []

    def functions(self) -> dict[str, FunctionSpec]:
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
            )
            for event in (props.get("Events") or {}).values():
                if event.get("Type") == "Api":
                    ev = event["Properties"]
                    spec.routes.append(Route(ev["Method"].upper(), ev["Path"], logical_id))
            specs[logical_id] = spec
        return specs


@cache
def read_template(path: Path) -> Template:
    return Template(path=path, body=load_template(path))

"""The SAM template: lints clean, every handler imports, every sample event is used by a test."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from flywheel.local.invoke import load_handler
from flywheel.local.template import read_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = read_template(ROOT / "template.yaml")


def test_cfn_lint_passes_without_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "cfnlint", "--format", "parseable", str(ROOT / "template.yaml")],
                            capture_output=True, text=True, check=False)
    errors = [line for line in result.stdout.splitlines() if ":E" in line or re.search(r":E\d", line)]
    assert errors == [], result.stdout + result.stderr


@pytest.mark.parametrize("logical_id", sorted(TEMPLATE.functions()))
def test_every_handler_resolves_to_a_callable(logical_id: str) -> None:
    spec = TEMPLATE.functions()[logical_id]
    assert spec.code_dir.is_dir(), f"{logical_id}: CodeUri {spec.code_dir} does not exist"
    assert callable(load_handler(spec))


def test_functions_run_python313_on_arm64_with_tracing() -> None:
    function_globals = TEMPLATE.body["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"


def test_internal_routes_use_iam_and_webhooks_opt_out() -> None:
    api = next(r for r in TEMPLATE.body["Resources"].values() if r["Type"] == "AWS::Serverless::Api")
    assert api["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    for logical_id, resource in TEMPLATE.body["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event["Type"] != "Api":
                continue
            auth = (event["Properties"].get("Auth") or {}).get("Authorizer")
            if event["Properties"]["Path"].startswith("/webhooks/"):
                assert auth == "NONE", f"{logical_id} {event['Properties']['Path']} must be public (signed)"
            else:
                assert auth is None, f"{logical_id} {event['Properties']['Path']} must keep IAM auth"


def test_every_function_has_a_log_group_with_retention() -> None:
    resources = TEMPLATE.body["Resources"]
    groups = {r["Properties"]["LogGroupName"]["Fn::Sub"]
              for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"}
    for logical_id in TEMPLATE.functions():
        assert f"/aws/lambda/${{{logical_id}}}" in groups, f"{logical_id} has no log group"


def test_every_sample_event_is_used_by_a_test() -> None:
    test_sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    unused = [p.name for p in sorted((ROOT / "events").glob("*.json")) if p.name not in test_sources]
    assert unused == []


def test_layer_requirements_match_project_dependencies() -> None:
    def names(specs: list[str]) -> set[str]:
        wanted = [s.strip() for s in specs if s.strip() and not s.strip().startswith("#")]
        return {re.split(r"[\[<>=~ ;]", s, maxsplit=1)[0].lower() for s in wanted}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    layer = (ROOT / "layers" / "flywheel" / "requirements.txt").read_text().splitlines()
    # boto3 ships with the Lambda runtime; pyyaml only serves the local runner
    assert names(layer) == names(project) - {"boto3", "pyyaml"}


def test_samconfig_has_dev_and_prod() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"dev", "prod"} <= set(config)
    assert config["prod"]["deploy"]["parameters"]["stack_name"] == "flywheel-prod"


def test_classifier_backend_is_a_parameter_and_bedrock_is_allowed() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)))
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    assert set(template["Parameters"]["ClassifierBackend"]["AllowedValues"]) == {
        "auto", "offline", "openai", "openai_compatible", "bedrock"}
    function = template["Resources"]["ClassifierFunction"]["Properties"]
    assert set(function["Environment"]["Variables"]) >= {"CLASSIFIER_BACKEND", "CLASSIFIER_MODEL", "CLASSIFIER_BASE_URL"}
    statements = [s for p in function["Policies"] if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    [invoke] = [s for s in statements if s["Action"] == "bedrock:InvokeModel"]
    assert any("foundation-model/" in r for r in invoke["Resource"])
    assert any("inference-profile/" in r for r in invoke["Resource"])

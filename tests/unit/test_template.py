"""The SAM template: lints clean, every handler imports, every sample event is used by a test, and
the template as CloudFormation receives it (transformed by the SAM translator, conditions resolved
for each way of deploying it) is wired the way the README says."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from flywheel.local.invoke import load_handler
from flywheel.local.template import read_template
from flywheel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = read_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE.body["Resources"]
FUNCTIONS = sorted(TEMPLATE.functions())
API_GATEWAY_LIMIT_S = 29

DEPLOYMENTS = {
    "create, proxy (prod)": {"Stage": "prod", "AlarmEmail": "ops@example.com", "HealthCheck": "route53"},
    "create, no proxy (dev)": {"DatabaseProxyEnabled": "false"},
    "create, proxy, IAM auth": {"DatabaseIamAuth": "true", "NatGateways": "per-az", "PrivateAwsEndpoints": "true"},
    "existing, in a VPC": {
        "DatabaseMode": "existing",
        "SubnetIds": "subnet-1,subnet-2",
        "SecurityGroupIds": "sg-1",
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
        "DatabaseSecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234",
        "ReservedConcurrency": "false",
        "ApiGatewayLoggingRole": "existing",
        "ApiCallerOrgsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:callers-AbCdEf",
        "ProviderOrgsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:provider-orgs-AbCdEf",
    },
}


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    # the regions samconfig.toml deploys to, as `cfn-lint template.yaml` checks by default
    matches = lint((ROOT / "template.yaml").read_text(), config=ManualArgs(regions=["us-east-1", "us-west-2"]))
    problems = [f"{m.linenumber}: {m.rule.id} {m.message}" for m in matches if m.rule.id[0] in "EW"]
    assert problems == []


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_handler_resolves_to_a_callable(logical_id: str) -> None:
    spec = TEMPLATE.functions()[logical_id]
    assert spec.code_dir.is_dir(), f"{logical_id}: CodeUri {spec.code_dir} does not exist"
    assert callable(load_handler(spec))


def test_functions_run_python313_on_arm64_with_tracing_that_records_no_payloads() -> None:
    function_globals = TEMPLATE.body["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    env = function_globals["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == env["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"
    assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"


PUBLIC_HEALTH = re.compile(r"^/health(/[a-z]+)?$")


def test_internal_routes_use_iam_webhooks_and_shallow_health_opt_out() -> None:
    api = RESOURCES["FlywheelApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    for logical_id, resource in RESOURCES.items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event["Type"] != "Api":
                continue
            path = event["Properties"]["Path"]
            auth = (event["Properties"].get("Auth") or {}).get("Authorizer")
            if path.startswith("/webhooks/") or PUBLIC_HEALTH.match(path):
                assert auth == "NONE", f"{logical_id} {path} must be public"
            else:
                assert auth is None, f"{logical_id} {path} must keep IAM auth"


def test_every_api_function_answers_health_publicly_and_deep_with_iam() -> None:
    for logical_id, spec in TEMPLATE.functions().items():
        if not spec.routes:
            continue
        paths = {route.path for route in spec.routes}
        shallow = [p for p in paths if PUBLIC_HEALTH.match(p) and p != "/health"]
        assert len(shallow) == 1, f"{logical_id} needs its own public /health/<name> route"
        assert f"{shallow[0]}/deep" in paths, f"{logical_id} needs {shallow[0]}/deep (IAM)"


def test_every_function_has_a_log_group_with_retention() -> None:
    groups = {
        r["Properties"]["LogGroupName"]["Fn::Sub"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::LogGroup"
    }
    for logical_id in FUNCTIONS:
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
    # pyyaml only serves the local runner
    assert names(layer) == names(project) - {"pyyaml"}


def test_the_layer_ships_precompiled_bytecode() -> None:
    layer = RESOURCES["FlywheelLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers" / "flywheel" / "Makefile").read_text()
    assert "build-FlywheelLayer:" in makefile
    assert "compileall" in makefile and "--python-version 3.13" in makefile
    # pip matches each --platform exactly: manylinux2014 alone takes the last release of a project
    # still tagged so (numpy 2.2.6), not one built on glibc 2.28. Every tag the python3.13 runtime
    # (Amazon Linux 2023, glibc 2.34) runs, and none it does not.
    platforms = re.findall(r"--platform (\S+)", makefile)
    glibc = {2014: (2, 17)}
    versions = {
        p: glibc[int(m[1])] if m[1] else (int(m[2]), int(m[3]))
        for p in platforms
        if (m := re.fullmatch(r"manylinux(?:(2014)|_(\d+)_(\d+))_aarch64", p))
    }
    assert set(versions) == set(platforms)
    assert {(2, 17), (2, 28)} <= set(versions.values())
    assert max(versions.values()) <= (2, 34)


def test_samconfig_has_dev_and_prod() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"dev", "prod"} <= set(config)
    prod = config["prod"]["deploy"]["parameters"]
    assert prod["stack_name"] == "flywheel-prod"
    assert 'Stage="prod"' in prod["parameter_overrides"]
    assert "CAPABILITY_IAM" in prod["capabilities"]  # the stack creates (unnamed) IAM roles
    assert {"build", "deploy"} <= set(config["prod"])
    declared = set(TEMPLATE.body["Parameters"])
    for env in ("default", "dev", "prod"):
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        assert set(re.findall(r'(\w+)="', overrides)) <= declared, env


def test_classifier_backend_is_a_parameter_and_bedrock_is_allowed() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor(
        "!",
        lambda loader, suffix, node: (
            loader.construct_scalar(node)
            if isinstance(node, yaml.ScalarNode)
            else loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
        ),
    )
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    assert set(template["Parameters"]["ClassifierBackend"]["AllowedValues"]) == {
        "auto",
        "offline",
        "openai",
        "openai_compatible",
        "bedrock",
    }
    function = template["Resources"]["ClassifierFunction"]["Properties"]
    assert set(function["Environment"]["Variables"]) >= {
        "CLASSIFIER_BACKEND",
        "CLASSIFIER_MODEL",
        "CLASSIFIER_BASE_URL",
    }
    statements = [s for p in function["Policies"] if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    [invoke] = [s for s in statements if s["Action"] == "bedrock:InvokeModel"]
    # what a Converse call is authorised against, for each kind of model id the backend takes
    # (IAM wildcards: * is any run of characters, the empty region of a foundation model included)
    import fnmatch

    patterns = [
        r.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", "123456789012") for r in invoke["Resource"]
    ]
    for arn in (
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0",
        "arn:aws:bedrock:eu-west-3::foundation-model/amazon.nova-lite-v1:0",  # a profile's destination
        "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",  # a global profile's
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
        "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/x1y2z3",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/p1q2r3",
    ):
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), arn
    assert not any(
        fnmatch.fnmatchcase("arn:aws:bedrock:us-east-1:999999999999:inference-profile/x", p) for p in patterns
    )  # another account's profile


# --- the template CloudFormation receives -------------------------------------------------------

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "flywheel-test",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _packaged() -> dict[str, Any]:
    """template.yaml with its local folders replaced by S3 locations, as `sam package` does."""
    body = yaml_parse((ROOT / "template.yaml").read_text())
    for name, resource in body["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://flywheel-artifacts/{name}/{key.lower()}"
    return dict(body)


@cache
def transformed() -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator's pseudo parameters
    try:
        return dict(transform(_packaged(), {}, _NoManagedPolicies()))
    except InvalidDocumentException as exc:  # show every reason, not just the first
        raise AssertionError([str(e) for e in exc.causes]) from exc


def _condition_values(template: dict[str, Any], params: dict[str, Any]) -> dict[str, bool]:
    values: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return params[node["Ref"]]
        if isinstance(node, dict) and "Fn::Join" in node:
            sep, items = node["Fn::Join"]
            resolved = value(items)
            return sep.join(resolved if isinstance(resolved, list) else [resolved])
        return node

    def evaluate(node: Any) -> bool:
        ((fn, args),) = node.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            return str(value(args[0])) == str(value(args[1]))
        if fn == "Fn::Not":
            return not evaluate(args[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in args)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in args)
        raise AssertionError(f"condition function {fn}")

    def condition(name: str) -> bool:
        if name not in values:
            values[name] = evaluate(template["Conditions"][name])
        return values[name]

    for name in template["Conditions"]:
        condition(name)
    return values


def resolved(deployment: str) -> dict[str, Any]:
    """The transformed template for one deployment: conditional resources kept or dropped,
    Fn::If branches chosen, AWS::NoValue removed."""
    template = copy.deepcopy(transformed())
    params = {name: spec.get("Default", "") for name, spec in template["Parameters"].items()}
    params.update(DEPLOYMENTS[deployment])
    params = {
        k: (
            v.split(",")
            if template["Parameters"].get(k, {}).get("Type") == "CommaDelimitedList" and isinstance(v, str)
            else v
        )
        for k, v in params.items()
    }
    params.update(PSEUDO)
    conditions = _condition_values(template, params)
    drop = object()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return walk(yes if conditions[name] else no)
            if node == {"Ref": "AWS::NoValue"}:
                return drop
            out = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not drop}
        if isinstance(node, list):
            return [item for item in (walk(v) for v in node) if item is not drop]
        return node

    template["Resources"] = {
        name: walk(resource)
        for name, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    template["_conditions"] = conditions
    template["_params"] = params
    return template


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _refs(node: Any) -> set[str]:
    """Logical ids a node refers to (Ref, GetAtt, ${X} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value.split(".")[0])
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)} - set(variables)
                found |= _refs(variables)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def _dependencies(template: dict[str, Any], name: str) -> set[str]:
    """Everything `name` waits for, directly or not (DependsOn and references)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        resource = template["Resources"][todo.pop()]
        depends = resource.get("DependsOn", [])
        direct = (
            set([depends] if isinstance(depends, str) else depends)
            | _refs(resource.get("Properties", {}))
            | _refs(resource.get("Metadata", {}))
        )
        for dep in direct & set(template["Resources"]) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def _lambda_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in _of_type(template, "AWS::Lambda::Function").items() if name in FUNCTIONS}


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_the_local_runner_evaluates_conditions_as_cloudformation_does(deployment: str) -> None:
    """flywheel.local.template (what the local stack and `flywheel sam-env` resolve `!If` and
    conditional resources with) agrees with this file's evaluation of the transformed template."""
    expected = resolved(deployment)["_conditions"]
    params = DEPLOYMENTS[deployment]
    assert {name: TEMPLATE.condition(name, params) for name in TEMPLATE.body["Conditions"]} == {
        name: expected[name] for name in TEMPLATE.body["Conditions"]
    }
    roles = set(_of_type(resolved(deployment), "AWS::IAM::Role")) & set(TEMPLATE.body["Resources"])
    assert set(TEMPLATE.resources("AWS::IAM::Role", params)) == roles
    role = TEMPLATE.functions()["TrainingPipelineFunction"].raw_environment["BEDROCK_ROLE_ARN"]
    assert TEMPLATE.resolve(role, {**params, "BedrockCustomizationRole.Arn": "created"}) == "created"
    assert TEMPLATE.resolve(role, {**params, "BedrockCustomizationRoleArn": "arn:mine"}) == "arn:mine"


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_database_functions_run_in_the_vpc_after_the_migrations(deployment: str) -> None:
    template = resolved(deployment)
    create = template["_conditions"]["CreateDatabase"]
    functions = _lambda_functions(template)
    assert set(functions) == set(FUNCTIONS)
    for name, function in functions.items():
        uses_db = {"Ref": "DatabaseAccessPolicy"} in function_role(template, name)["Properties"]["ManagedPolicyArns"]
        assert uses_db, f"{name} does not use the database? then it needs no VPC either"
        vpc = function["Properties"].get("VpcConfig")
        if create:
            assert vpc == {
                "SubnetIds": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
                "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
            }, name
        else:
            assert vpc == {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}}, name
        if name != "MigrateFunction":
            assert "DatabaseMigrations" in _dependencies(template, name), f"{name} may run before its schema"
    migrations = template["Resources"]["DatabaseMigrations"]
    assert migrations["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    # a new MigrateFunction version (new migrations or new code) makes CloudFormation run it again
    [version] = _refs(migrations["Properties"]["MigrateVersion"])
    assert template["Resources"][version]["Type"] == "AWS::Lambda::Version"
    waits_for = _dependencies(template, "DatabaseMigrations")
    assert "MigrateFunctionLogs" in waits_for
    if create:
        assert {"DatabaseWriter", "S3GatewayEndpoint", "PrivateDefaultRouteA", "PrivateDefaultRouteB"} <= waits_for
        if template["_conditions"]["UseProxy"]:
            assert "DatabaseProxyTargets" in waits_for


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_only_the_functions_reach_the_database(deployment: str) -> None:
    template = resolved(deployment)
    if not template["_conditions"]["CreateDatabase"]:
        pytest.skip("existing database: your security groups")
    ingress = _of_type(template, "AWS::EC2::SecurityGroupIngress")
    sources = {
        r["Properties"]["SourceSecurityGroupId"]["Ref"]
        for r in ingress.values()
        if r["Properties"]["GroupId"] == {"Ref": "DatabaseSecurityGroup"}
    }
    proxy = template["_conditions"]["UseProxy"]
    assert sources == ({"ProxySecurityGroup"} if proxy else {"FunctionSecurityGroup"})
    # and the functions send PostgreSQL to the proxy (or the cluster) only, everything else is HTTPS
    egress = [
        r["Properties"]
        for r in _of_type(template, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Ref": "FunctionSecurityGroup"}
    ]
    egress += template["Resources"]["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    postgres = [rule.get("DestinationSecurityGroupId") for rule in egress if rule["FromPort"] == 5432]
    assert postgres == [{"Ref": "ProxySecurityGroup" if proxy else "DatabaseSecurityGroup"}]
    assert {(rule["FromPort"], rule["ToPort"]) for rule in egress} == {(443, 443), (5432, 5432)}
    if proxy:
        rules = template["Resources"]["ProxySecurityGroup"]["Properties"]["SecurityGroupIngress"]
        assert [r["SourceSecurityGroupId"] for r in rules] == [{"Ref": "FunctionSecurityGroup"}]
        auth = template["Resources"]["DatabaseProxy"]["Properties"]["Auth"][0]
        assert auth["IAMAuth"] == ("REQUIRED" if template["_conditions"]["IamAuth"] else "DISABLED")
    cluster = template["Resources"]["DatabaseCluster"]
    assert cluster["DeletionPolicy"] == cluster["UpdateReplacePolicy"] == "Snapshot"
    assert cluster["Properties"]["ManageMasterUserPassword"] is True
    assert cluster["Properties"]["DeletionProtection"] is (template["_params"]["Stage"] == "prod")
    assert re.fullmatch(r"\d+\.\d+", template["_params"]["DatabaseEngineVersion"])  # pinned, not "latest"


def function_role(template: dict[str, Any], function: str) -> dict[str, Any]:
    role_ref = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return dict(template["Resources"][role_ref])


def _readable_secrets(template: dict[str, Any], function: str) -> set[str]:
    readable: set[str] = set()
    for policy in function_role(template, function)["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("secretsmanager:Get") for a in actions):
                readable |= _refs(statement["Resource"])
    return readable


SECRET_VARIABLES = {
    "WEBHOOK_SECRETS_ARN": "WebhookSecrets",
    "OPENAI_SECRET_ARN": "OpenAISecret",
    "API_CALLER_ORGS_ARN": "ApiCallerOrgsSecretArn",  # a parameter: the operator's secret, when set
    "PROVIDER_ORGS_ARN": "ProviderOrgsSecretArn",  # the same for ProviderOrgs
}
# the functions that read the caller mapping (README "Tenancy"): the five serving IAM routes
CALLER_ORGS_READERS = {
    "MessagesFunction",
    "RepliesApiFunction",
    "ReportsApiFunction",
    "RoutingFunction",
    "TrainingApiFunction",
}


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_no_function_reads_another_functions_secrets(deployment: str) -> None:
    template = resolved(deployment)
    readers: dict[str, set[str]] = {}
    for name, function in _lambda_functions(template).items():
        variables = function["Properties"]["Environment"]["Variables"]
        uses = {
            secret
            for variable, secret in SECRET_VARIABLES.items()
            if variable in variables and (secret in template["Resources"] or template["_params"][secret])
        }
        assert _readable_secrets(template, name) == uses, name
        for secret in uses:
            readers.setdefault(secret, set()).add(name)
    callers_secret = (
        {"ApiCallerOrgsSecretArn": CALLER_ORGS_READERS} if template["_params"]["ApiCallerOrgsSecretArn"] else {}
    )
    # the provider account map: only the webhooks read it, and only when it is kept in a secret
    provider_orgs_secret = (
        {"ProviderOrgsSecretArn": {"WebhooksFunction"}} if template["_params"]["ProviderOrgsSecretArn"] else {}
    )
    assert readers == {
        "WebhookSecrets": {"WebhooksFunction"},
        "OpenAISecret": {"ClassifierFunction", "TrainingPipelineFunction", "TrainingApiFunction"},
        **callers_secret,
        **provider_orgs_secret,
    }
    # the database secret: through the one managed policy, and not at all with IAM authentication
    statements = template["Resources"]["DatabaseAccessPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    actions = {s["Action"] for s in statements}
    if template["_conditions"]["IamAuth"]:
        assert actions == {"rds-db:connect"}
        assert all(
            f["Properties"]["Environment"]["Variables"]["DATABASE_SECRET_ARN"] == ""
            for f in _lambda_functions(template).values()
        )
    else:
        assert actions == {"secretsmanager:GetSecretValue", "kms:Decrypt"}


def _statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """Every statement the function's role is given: its inline policies and the stack's managed ones."""
    role = function_role(template, function)["Properties"]
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and arn.get("Ref") in template["Resources"]:
            statements += template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _allows(statements: list[dict[str, Any]], action: str, resource: Any) -> bool:
    """An Allow statement for the action (IAM wildcards) on "*" or on what `resource` refers to."""
    import fnmatch

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] != "Allow" or not any(fnmatch.fnmatchcase(action, a) for a in actions):
            continue
        if "*" in resources or any(_named(r) == _named(resource) and _named(r) for r in resources):
            return True
    return False


def _named(node: Any) -> set[str]:
    """The stack's resources and parameters a node refers to (not the pseudo parameters of an ARN)."""
    return {r for r in _refs(node) if not r.startswith("AWS::")}


def _function_settings(template: dict[str, Any], function: str) -> tuple[Settings, dict[str, Any]]:
    """The function's settings as deployed: parameters resolved, every other reference (a queue's
    URL, a secret's ARN) a placeholder naming it; and what each placeholder stands for."""
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    stands_for: dict[str, Any] = {}
    env: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and value.get("Ref") in template["Parameters"]:
            parameter = template["_params"][value["Ref"]]
            env[name] = ",".join(parameter) if isinstance(parameter, list) else str(parameter)
            if env[name]:
                stands_for[env[name]] = value  # a parameter's ARN (an existing database's secret)
        elif isinstance(value, dict):
            env[name] = f"placeholder-{name.lower()}"
            stands_for[env[name]] = value
        else:
            env[name] = str(value)
    return Settings.from_env(env), stands_for


# what each AWS call a deep health check makes needs (services/health.py)
HEALTH_CALLS = {"queue_depth": "sqs:GetQueueAttributes", "secret": "secretsmanager:GetSecretValue"}


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_every_call_of_a_deep_health_check_is_allowed_to_its_function(
    deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`GET /health/<name>/deep` answers 503 when a check fails: on a correct deploy each check must
    be one the function's role allows (moto does not enforce IAM, so this reads the policies)."""
    from types import SimpleNamespace

    from flywheel.services import health

    template = resolved(deployment)
    checked = 0
    for name in FUNCTIONS:
        if not any(route.path.endswith("/deep") for route in TEMPLATE.functions()[name].routes):
            continue
        settings, stands_for = _function_settings(template, name)
        calls: list[tuple[str, str]] = []
        monkeypatch.setattr(health, "get_settings", lambda settings=settings: settings)
        monkeypatch.setattr(health, "_database", lambda calls=calls: calls.append(("database", "")))
        monkeypatch.setattr(
            health, "queue", SimpleNamespace(depth=lambda url, calls=calls: calls.append(("queue_depth", url)) or 0)
        )
        monkeypatch.setattr(health, "get_secret", lambda arn, fresh, calls=calls: calls.append(("secret", arn)) or "")
        healthy, _ = health.deep()
        assert healthy, name
        statements = _statements(template, name)
        for call, target in calls:
            if call == "database":  # the connection: its secret or IAM token (test_no_function_reads...)
                assert {"Ref": "DatabaseAccessPolicy"} in function_role(template, name)["Properties"][
                    "ManagedPolicyArns"
                ], name
                continue
            resource = stands_for[target]
            if call == "queue_depth":  # a queue's URL (Ref) and its ARN (GetAtt .Arn) name the same queue
                resource = {"Fn::GetAtt": [resource["Ref"], "Arn"]}
            assert _allows(statements, HEALTH_CALLS[call], resource), f"{name}: {HEALTH_CALLS[call]} on {resource}"
            checked += 1
    assert checked  # the checks above ran


# the functions whose code sends to the replies queue or reads its depth (everywhere else the
# variable would only make the deep health check read a queue the function does not use)
REPLIES_QUEUE_USERS = {
    "WebhooksFunction": "stored replies, through the outbox (services/webhooks.py)",
    "MessagesFunction": "replies claimed by a registration, through the outbox (services/outcomes.py)",
    "RepliesApiFunction": "POST /replies (services/replies.py)",
    "MeetingsRefreshFunction": "the hourly outbox sweep (services/outbox.py flush)",
    "ReportFunction": "the report's queue depths (services/reports.py)",
}


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_only_the_functions_that_use_the_replies_queue_are_told_its_url(deployment: str) -> None:
    template = resolved(deployment)
    told = set()
    for name, function in _lambda_functions(template).items():
        variables = function["Properties"]["Environment"]["Variables"]
        if "REPLIES_QUEUE_URL" not in variables:
            continue
        told.add(name)
        assert variables["REPLIES_QUEUE_URL"] == {"Ref": "RepliesQueue"}, name
        statements = _statements(template, name)
        queue = {"Fn::GetAtt": ["RepliesQueue", "Arn"]}
        assert _allows(statements, "sqs:SendMessage", queue) or _allows(statements, "sqs:GetQueueAttributes", queue)
    assert told == set(REPLIES_QUEUE_USERS)
    assert "REPLIES_QUEUE_URL" not in TEMPLATE.body["Globals"]["Function"]["Environment"]["Variables"]


NEW_ACCOUNT_MEMORY_MB = 3008  # "New AWS accounts have reduced concurrency and memory quotas"


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_every_function_fits_a_new_accounts_memory_quota_by_default(deployment: str) -> None:
    """A function above the quota is refused when CloudFormation creates it, after the database and
    the migrations: the first deploy would fail 20 minutes in and roll back."""
    template = resolved(deployment)
    for name, function in _lambda_functions(template).items():
        memory = function["Properties"]["MemorySize"]
        if isinstance(memory, dict):
            memory = template["_params"][memory["Ref"]]
        assert int(memory) <= NEW_ACCOUNT_MEMORY_MB, name
    parameter = TEMPLATE.body["Parameters"]["TrainingPipelineMemory"]
    assert parameter["MaxValue"] == 10240  # Lambda's largest, once the account's quota allows it
    assert parameter["MinValue"] >= 1769  # a full vCPU: the dataset build needs one
    readme = (ROOT / "README.md").read_text()
    assert "must have value less than or equal to\n   3008" in readme  # README "Account checks"
    assert 'TrainingPipelineMemory=\\"10240\\"' in readme


@pytest.mark.parametrize("provider", ["bedrock", "openai"])
def test_choosing_the_fine_tuning_provider_alone_gives_a_base_model_of_that_provider(provider: str) -> None:
    """FineTuneBaseModel applies to FineTuneProvider: a Nova default would make every openai run fail
    at the build ("base model ... is a bedrock model")."""
    from flywheel.domain.dataset_checks import limits_for

    for name in ("TrainingPipelineFunction", "TrainingApiFunction"):
        spec = TEMPLATE.functions()[name]
        resolved_env = {k: TEMPLATE.resolve(v, {"FineTuneProvider": provider}) for k, v in spec.raw_environment.items()}
        settings = Settings.from_env({k: v for k, v in resolved_env.items() if v is not None})
        assert settings.finetune_provider == provider
        model = settings.base_model_for(provider)
        assert limits_for(model, provider).provider == provider, (name, model)


def test_provider_secrets_are_never_rewritten_by_a_deploy() -> None:
    # CloudFormation writes SecretString only when it changes in the template: these stay exactly
    # as first deployed (the operator's values live in Secrets Manager), and survive the stack
    webhook = RESOURCES["WebhookSecrets"]
    assert json.loads(webhook["Properties"]["SecretString"]) == {
        "sendgrid_public_key": "",
        "inbound_parse_token": "",
        "calendly_signing_key": "",
        "hubspot_client_secret": "",
        "hubspot_access_token": "",
        "pipedrive_username": "",
        "pipedrive_password": "",
        "pipedrive_api_token": "",
        "salesforce_token": "",
        "crm_webhook_secret": "",
        "openai_api_key": "",
    }
    assert webhook["Properties"]["SecretString"].startswith('{"sendgrid_public_key": "", "inbound_parse_token"')
    assert RESOURCES["OpenAISecret"]["Properties"]["SecretString"] == "{}"
    for name in ("WebhookSecrets", "OpenAISecret"):
        assert (RESOURCES[name]["DeletionPolicy"], RESOURCES[name]["UpdateReplacePolicy"]) == (
            "RetainExceptOnCreate",
            "Retain",
        )
        assert "GenerateSecretString" not in RESOURCES[name]["Properties"]


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_every_alarm_notifies_the_alarm_topic(deployment: str) -> None:
    template = resolved(deployment)
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    for name, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions") == [{"Ref": "AlarmTopic"}], name
    names = set(alarms)
    for function in FUNCTIONS:
        assert {f"{function}ErrorsAlarm", f"{function}ThrottlesAlarm"} <= names
    required = {
        "Api5xxAlarm",
        "ApiLatencyP99Alarm",
        "TrainingExecutionsFailedAlarm",
        "TrainingExecutionsTimedOutAlarm",
        "RepliesDeadLetterAlarm",
        "ScheduledFailuresAlarm",
        "FallbackShareAlarm",
        "OversizedRequestsAlarm",
        "ReportCountDriftAlarm",
    }
    if template["_conditions"]["CreateDatabase"]:
        required |= {"DatabaseConnectionsAlarm", "DatabaseCpuAlarm", "DatabaseCapacityAlarm"}
    if template["_conditions"]["UseProxy"]:
        required |= {"ProxyClientConnectionsAlarm", "ProxyBorrowLatencyAlarm"}
    assert required <= names
    # every dead-letter / failure queue is watched
    queues = {n for n in _of_type(template, "AWS::SQS::Queue") if "DeadLetter" in n or "Failures" in n}
    watched = {next(iter(_refs(a["Properties"].get("Dimensions", [])) & queues), None) for a in alarms.values()}
    assert queues <= watched
    subscriptions = _of_type(template, "AWS::SNS::Subscription")
    assert bool(subscriptions) is (template["_params"]["AlarmEmail"] != "")
    # CloudWatch publishes to an encrypted topic only with a customer-managed key that lets it use the
    # key (the AWS-managed alias/aws/sns cannot): https://repost.aws/knowledge-center/cloudwatch-configure-alarm-sns
    key = template["Resources"]["AlarmTopic"]["Properties"].get("KmsMasterKeyId")
    if key is not None:
        assert isinstance(key, dict) and set(key) == {"Ref"}, key
        policy = template["Resources"][key["Ref"]]["Properties"]["KeyPolicy"]["Statement"]
        cloudwatch = [s for s in policy if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
        assert cloudwatch and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
        assert "Condition" not in cloudwatch[0]


def test_the_readme_cost_table_counts_the_alarms_and_keys_the_dev_config_creates() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]
    overrides = dict(re.findall(r'(\w+)="([^"]*)"', config["parameter_overrides"]))
    assert DEPLOYMENTS["create, no proxy (dev)"].items() <= overrides.items()
    template = resolved("create, no proxy (dev)")
    alarms = _of_type(template, "AWS::CloudWatch::Alarm").values()
    # an alarm on a metric math expression is billed per metric it reads
    metrics = sum(
        len([m for m in a["Properties"]["Metrics"] if "MetricStat" in m]) if "Metrics" in a["Properties"] else 1
        for a in alarms
    )
    keys = len(_of_type(template, "AWS::KMS::Key"))
    readme = (ROOT / "README.md").read_text()
    assert f"({len(alarms)} alarms, {metrics} alarm metrics" in readme
    assert f"| {metrics * 0.10:.2f} | 0.10 per alarm metric-month" in readme
    assert f"| {keys:.2f} | 1 per key-month" in readme


def test_scheduled_functions_have_a_failure_destination() -> None:
    for name in ("MeetingsRefreshFunction", "ExperimentEvaluatorFunction"):
        config = RESOURCES[name]["Properties"]["EventInvokeConfig"]
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["ScheduledFailuresQueue", "Arn"]
        }


def test_the_state_machine_logs_without_execution_data_and_traces() -> None:
    machine = RESOURCES["WeeklyTrainingStateMachine"]["Properties"]
    assert machine["Tracing"] == {"Enabled": True}
    assert machine["Logging"]["IncludeExecutionData"] is False
    assert machine["Logging"]["Level"] in ("ERROR", "ALL")


def test_api_has_one_stage_access_logs_and_throttled_public_routes() -> None:
    template = resolved("create, no proxy (dev)")
    stages = _of_type(template, "AWS::ApiGateway::Stage")
    assert len(stages) == 1, "SAM's implicit 'Stage' stage is back"
    [stage] = stages.values()
    assert stage["Properties"]["StageName"] == {"Ref": "Stage"}
    log_format = json.loads(re.sub(r"\$context\.[\w.]+", "0", stage["Properties"]["AccessLogSetting"]["Format"]))
    assert {"requestId", "status", "resourcePath", "latencyMs"} <= set(log_format)
    settings = {(s["ResourcePath"], s["HttpMethod"]) for s in stage["Properties"]["MethodSettings"]}
    public = [
        (e["Properties"]["Path"], e["Properties"]["Method"].upper())
        for r in RESOURCES.values()
        for e in (r.get("Properties", {}).get("Events") or {}).values()
        if e["Type"] == "Api" and (e["Properties"].get("Auth") or {}).get("Authorizer") == "NONE"
    ]
    assert public
    for path, method in public:
        assert ("/" + path.replace("/", "~1"), method) in settings, f"{method} {path} is not throttled"


def test_request_size_limit_fits_lambda_after_base64() -> None:
    limit = int(TEMPLATE.body["Globals"]["Function"]["Environment"]["Variables"]["MAX_BODY_BYTES"])
    lambda_payload = 6 * 1024 * 1024
    # binary bodies (Inbound Parse multipart) reach Lambda base64-encoded, inside a JSON event
    assert math.ceil(limit / 3) * 4 + 256 * 1024 <= lambda_payload
    assert limit < 10 * 1024 * 1024  # and below API Gateway's own limit


def _env(logical_id: str) -> Settings:
    spec = TEMPLATE.functions()[logical_id]
    return Settings.from_env({k.upper(): v for k, v in spec.environment.items()})


def test_api_functions_finish_inside_api_gateways_29_seconds() -> None:
    for logical_id, spec in TEMPLATE.functions().items():
        if spec.routes:
            assert spec.timeout < API_GATEWAY_LIMIT_S, logical_id
            settings = _env(logical_id)
            # one AWS SDK call: attempts x (connect + read) + standard-mode backoff (< 1 s, then < 2 s)
            aws_call = settings.aws_max_attempts * (settings.aws_connect_timeout_s + settings.aws_read_timeout_s)
            aws_call += sum(2**i for i in range(settings.aws_max_attempts - 1))
            assert settings.db_connect_timeout_s + aws_call < spec.timeout, logical_id
    webhooks = _env("WebhooksFunction")
    # every CRM call of one webhook request, retries included, shares one budget
    assert webhooks.http_timeout_s <= webhooks.crm_budget_s
    assert webhooks.db_connect_timeout_s + webhooks.crm_budget_s + 1 < TEMPLATE.functions()["WebhooksFunction"].timeout


RESUME_S = 15  # an auto-paused Aurora instance resumes in about 15 s,
RESUME_AFTER_A_DAY_S = 30  # ~30 s after a day's pause


def _triggers(logical_id: str) -> set[str]:
    """What starts a function: its SAM events' types, plus StepFunctions when a state machine's
    definition names it and CustomResource when a custom resource's ServiceToken is its ARN."""
    found = {str(event["Type"]) for event in TEMPLATE.functions()[logical_id].events.values()}
    arn = {"Fn::GetAtt": [logical_id, "Arn"]}
    for resource in RESOURCES.values():
        properties = resource.get("Properties") or {}
        if (
            resource["Type"] == "AWS::Serverless::StateMachine"
            and arn in (properties.get("DefinitionSubstitutions") or {}).values()
        ):
            found.add("StepFunctions")
        if resource["Type"].startswith("Custom::") and properties.get("ServiceToken") == arn:
            found.add("CustomResource")
    return found


def test_functions_with_time_to_spare_wait_for_a_paused_cluster_to_resume() -> None:
    # a deploy must not fail (and roll back) because the dev cluster was paused, nor an hourly run
    # raise its Errors alarm every hour: every function that is not answering an API request waits
    # for the cluster to resume, found from what starts it (a new schedule gets no 10 s by mistake)
    assert _env("MigrateFunction").db_connect_timeout_s >= 2 * RESUME_AFTER_A_DAY_S
    waiting = []
    for logical_id, spec in TEMPLATE.functions().items():
        triggers = _triggers(logical_id)
        assert triggers, f"{logical_id}: nothing starts it? (add its trigger to _triggers)"
        uses_database = {"Ref": "DatabaseAccessPolicy"} in RESOURCES[logical_id]["Properties"]["Policies"]
        settings = _env(logical_id)
        if "Api" in triggers:
            # inside API Gateway's 29 s: a paused cluster answers 503 with Retry-After
            assert triggers == {"Api"} and settings.db_connect_timeout_s == 10, logical_id
        elif triggers == {"SQS"}:
            # the classifier: its messages are sent by the outbox right after a transaction (the
            # cluster is awake), a redelivery comes 1,100 s later (a fresh pause, ~15 s) and its
            # 180 s budget is the queue's 6x rule; a failure is redelivered, not lost
            assert RESUME_S < settings.db_connect_timeout_s < spec.timeout, logical_id
        elif uses_database:
            assert RESUME_AFTER_A_DAY_S < settings.db_connect_timeout_s < spec.timeout, logical_id
            waiting.append(logical_id)
    # the schedules, the EventBridge rules, the state machine and the migrations
    assert {"RetentionFunction", "ReportRollupFunction", "MeetingsRefreshFunction"} <= set(waiting)
    assert {"ReportFunction", "TrainingPipelineFunction", "ExperimentEvaluatorFunction"} <= set(waiting)


def test_the_readme_says_when_the_stack_has_a_secrets_manager_endpoint() -> None:
    # the README's "More than a few dozen callers" once promised the endpoint in every stack
    assert RESOURCES["SecretsManagerEndpoint"]["Condition"] == "PrivateEndpoints"
    assert not TEMPLATE.condition("PrivateEndpoints")  # by default: through the NAT gateway
    assert TEMPLATE.condition("PrivateEndpoints", {"PrivateAwsEndpoints": "true"})
    assert not TEMPLATE.condition("PrivateEndpoints", {"PrivateAwsEndpoints": "true", "DatabaseMode": "existing"})
    environments = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = [
        env["deploy"]["parameters"].get("parameter_overrides", "")
        for env in environments.values()
        if isinstance(env, dict) and "deploy" in env
    ]
    assert overrides and not any("PrivateAwsEndpoints" in o for o in overrides)  # nor in the configs
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "already has the Secrets Manager VPC endpoint" not in readme
    assert (
        "the stack creates a Secrets Manager VPC endpoint only with `PrivateAwsEndpoints=true`, and only with "
        "`DatabaseMode=create`" in readme
    )


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_the_server_closes_idle_sessions_only_where_the_cluster_can_pause(deployment: str) -> None:
    template = resolved(deployment)
    pausing = template["_conditions"]["DirectToCluster"] and template["_params"]["DatabaseMinCapacity"] in (0, "0")
    minimum_pause = template["Parameters"]["DatabaseAutoPauseSeconds"]["MinValue"]
    for name, function in _lambda_functions(template).items():
        value = function["Properties"]["Environment"]["Variables"]["DB_IDLE_SESSION_TIMEOUT_S"]
        if pausing:  # below the shortest auto-pause delay, or frozen environments keep the cluster awake
            assert 0 < int(value) < minimum_pause, name
        else:  # behind RDS Proxy (which pools) or on your database: never
            assert value == "", name


def test_a_custom_resource_that_cannot_answer_does_not_hold_the_deploy_for_an_hour() -> None:
    migrations = RESOURCES["DatabaseMigrations"]["Properties"]
    # the handler answers FAILED before its own timeout; ServiceTimeout covers a crash before it
    # runs (an import error; Lambda retries an asynchronous invocation twice)
    assert 3 * RESOURCES["MigrateFunction"]["Properties"]["Timeout"] <= migrations["ServiceTimeout"] < 3600


def test_classifier_worst_case_fits_its_timeout_and_the_queue_keeps_the_6x_rule() -> None:
    classifier = RESOURCES["ClassifierFunction"]["Properties"]
    settings = _env("ClassifierFunction")
    source = classifier["Events"]["Replies"]["Properties"]
    rounds = math.ceil(source["BatchSize"] / settings.classifier_concurrency)
    # per reply: every attempt times out, and the SDK honours a Retry-After of up to 60 s between them
    per_reply = (
        settings.classifier_max_retries + 1
    ) * settings.classifier_timeout_s + settings.classifier_max_retries * 60
    assert rounds * per_reply + settings.db_connect_timeout_s < classifier["Timeout"]
    visibility = RESOURCES["RepliesQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * classifier["Timeout"] + source["MaximumBatchingWindowInSeconds"]
    assert (
        source["ScalingConfig"]["MaximumConcurrency"]
        <= RESOURCES["ClassifierFunction"]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"][1]
    )


def test_reserved_concurrency_bounds_database_connections_as_the_readme_says() -> None:
    reserved = {name: RESOURCES[name]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"][1] for name in FUNCTIONS}
    total = sum(reserved.values())
    readme = (ROOT / "README.md").read_text()
    assert f"= **{total}** connections" in readme
    # Lambda keeps 100 unreserved: the account quota the README and the parameter ask for
    assert f"must be >= {total + 100}" in readme
    description = " ".join(TEMPLATE.body["Parameters"]["ReservedConcurrency"]["Description"].split())
    assert f"({total} in total" in description and f"at least {total + 100}" in description
    for alarm in ("DatabaseConnectionsAlarm", "ProxyClientConnectionsAlarm"):
        assert f"reserve {total} in total" in RESOURCES[alarm]["Properties"]["AlarmDescription"]
    for name, count in reserved.items():
        assert re.search(rf"\| `{name}` \| {count} \|", readme), f"README concurrency table misses {name} {count}"


def test_training_bucket_is_versioned_encrypted_tls_only_and_retained() -> None:
    bucket = RESOURCES["TrainingBucket"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    [statement] = RESOURCES["TrainingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_stateful_resources_survive_deletion_and_replacement() -> None:
    assert (
        RESOURCES["DatabaseCluster"]["DeletionPolicy"]
        == RESOURCES["DatabaseCluster"]["UpdateReplacePolicy"]
        == "Snapshot"
    )
    # kept when the stack is deleted or the resource replaced, but not when the deploy that created
    # them rolls back: a kept named secret would make the retried first deploy fail on its name
    for name in ("DatabaseKey", "TrainingBucket", "WebhookSecrets", "OpenAISecret", "RepliesDeadLetterQueue"):
        assert RESOURCES[name].get("DeletionPolicy") == "RetainExceptOnCreate", name
        assert RESOURCES[name].get("UpdateReplacePolicy") == "Retain", (
            name
        )  # (RetainExceptOnCreate is not allowed there)


def test_the_stack_can_create_the_bedrock_service_role() -> None:
    template = resolved("create, no proxy (dev)")
    role = template["Resources"]["BedrockCustomizationRole"]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    env = template["Resources"]["TrainingPipelineFunction"]["Properties"]["Environment"]["Variables"]
    assert env["BEDROCK_ROLE_ARN"] == {"Fn::GetAtt": ["BedrockCustomizationRole", "Arn"]}


def test_the_functions_that_change_the_registry_can_manage_bedrock_serving() -> None:
    template = resolved("create, proxy (prod)")
    needed = {
        "bedrock:CreateCustomModelDeployment",
        "bedrock:GetCustomModelDeployment",
        "bedrock:DeleteCustomModelDeployment",
        "bedrock:CreateProvisionedModelThroughput",
        "bedrock:GetProvisionedModelThroughput",
        "bedrock:DeleteProvisionedModelThroughput",
    }
    for name in ("TrainingPipelineFunction", "TrainingApiFunction", "ExperimentEvaluatorFunction"):
        allowed = {
            a
            for policy in function_role(template, name)["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
            for a in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
        }
        assert needed <= allowed, name
        env = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert env["BEDROCK_SERVING"] == {"Ref": "BedrockServing"}


def test_oversized_requests_are_counted_whichever_side_refused_them() -> None:
    # Lambda refuses an invoke over its 6 MB payload limit with its own 413 (RequestTooLargeException),
    # which API Gateway may answer the client with another status: the access log records what the
    # Lambda service answered ($context.integration.integrationStatus, a REST API access-log
    # variable) and the metric filter counts either 413
    template = resolved("create, no proxy (dev)")
    [stage] = _of_type(template, "AWS::ApiGateway::Stage").values()
    log_format = stage["Properties"]["AccessLogSetting"]["Format"]
    assert '"integrationStatus":"$context.integration.integrationStatus"' in log_format
    pattern = RESOURCES["OversizedRequestsMetric"]["Properties"]["FilterPattern"]
    clauses = re.findall(r"\(\$\.(\w+) = (\"?\d+\"?)\)", pattern)
    assert pattern == "{ " + " || ".join(f"($.{f} = {v})" for f, v in clauses) + " }"

    def counted(status: int, integration_status: str) -> bool:
        line = json.loads(
            re.sub(r"\$context\.[\w.]+", "0", log_format)
            .replace('"status":0', f'"status":{status}')
            .replace('"integrationStatus":"0"', f'"integrationStatus":"{integration_status}"')
        )
        return any(json.dumps(line[field]) == value for field, value in clauses)

    assert counted(413, "200")  # our own 413 (MAX_BODY_BYTES)
    assert counted(502, "413")  # Lambda's: the function never ran
    assert not counted(200, "200") and not counted(502, "500")

"""`flywheel sam-env` against the template (read as it is today, so it keeps up with new functions
and variables): every function gets exactly the variables it declares (SAM passes no others), each
with a value its settings accept, the database over TCP and the local webhook secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flywheel import cli
from flywheel.local.secrets import WEBHOOK_SECRET_NAMES, local_secrets
from flywheel.local.template import load_template
from flywheel.settings import Settings
from tests.conftest import ROOT


def test_env_json_has_every_function_and_every_variable_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    out = tmp_path / "env.json"
    assert cli.main(["sam-env", "-o", str(out), "--port", "54399"]) == 0
    env = json.loads(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds the local secrets

    template = load_template(ROOT / "template.yaml")
    global_vars = template["Globals"]["Function"]["Environment"]["Variables"]
    functions = {
        name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(env) == set(functions)
    password = local_secrets(tmp_path)["database_password"]
    for name, props in functions.items():
        declared = {**global_vars, **(props.get("Environment") or {}).get("Variables", {})}
        assert set(env[name]) == set(declared), name
        assert all(isinstance(v, str) for v in env[name].values()), name
        assert env[name]["DATABASE_URL"] == f"postgresql://postgres:{password}@host.docker.internal:54399/flywheel"
        assert env[name]["DATABASE_SECRET_ARN"] == ""
        # secrets only where the template gives them (a function reads only what it uses), and
        # as empty ARNs: the stack's secrets do not exist for the containers
        assert all(env[name][v] == "" for v in ("WEBHOOK_SECRETS_ARN", "OPENAI_SECRET_ARN") if v in declared), name
        settings = Settings.from_env(env[name])  # what the function parses at cold start
        assert settings.database_url == env[name]["DATABASE_URL"] and settings.webhook_secrets_arn is None
        assert settings.openai_secret_arn is None and settings.database_secret_arn is None
    # the local webhook secrets inline, for WebhooksFunction only
    assert [name for name in env if "WEBHOOK_SECRETS_JSON" in env[name]] == ["WebhooksFunction"]
    assert set(json.loads(env["WebhooksFunction"]["WEBHOOK_SECRETS_JSON"])) == set(WEBHOOK_SECRET_NAMES)
    # values from the template's parameters are resolved with the local stack's (like --parameter-overrides)
    assert json.loads(env["WebhooksFunction"]["PROVIDER_ORGS_JSON"])["hubspot:5799819"] == "acme"
    assert env["TrainingPipelineFunction"]["FINETUNE_PROVIDER"] == "bedrock"
    # the database is the local one (DatabaseMode=existing): no cluster endpoint, no IAM tokens
    assert env["MessagesFunction"]["DATABASE_HOST"] == "" and env["MessagesFunction"]["DATABASE_IAM_AUTH"] == "false"
    # AWS resources do not exist for the containers: empty, so the code takes its local path
    assert env["WebhooksFunction"]["REPLIES_QUEUE_URL"] == ""
    assert env["TrainingPipelineFunction"]["BEDROCK_ROLE_ARN"] == ""  # the role the stack would create

"""The `flywheel` command as a user meets it: help on every option, clear messages for bad input,
migrate saying what it applied, config showing every setting, make listing every target."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from flywheel import cli
from flywheel.local.config import parse_dotenv, setting_names
from flywheel.local.embedded import create_database
from tests.conftest import ROOT

FLYWHEEL = [sys.executable, "-m", "flywheel.cli"]


def options(parser: argparse.ArgumentParser, path: str = "flywheel") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((f"{path} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def test_every_option_and_command_has_help() -> None:
    parser = cli.build_parser()
    missing = [name for name, action in options(parser) if not (action.help or "").strip()]
    assert missing == []
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    assert all(choice.description for choice in commands.choices.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["experiment", "plan", "--baseline", "3", "--mde", "0.1"],
            "'3' is not a rate: give a proportion between 0 and 1",
        ),
        (["experiment", "plan", "--baseline", "0.03", "--mde", "-1"], "is not a relative lift"),
        (["experiment", "plan", "--baseline", "0.03", "--mde", "0.1", "--split", "90-10"], "'90-10' is not a split"),
        (["experiment", "plan", "--baseline", "0.03", "--mde", "0.1", "--split", "100/0"], "both above 0"),
        (["experiment", "plan", "--baseline", "abc", "--mde", "0.1"], "'abc' is not a number"),
        (["experiment", "plan", "--baseline", "0.03", "--mde", "0.1", "--weekly-volume", "0"], "(1 or more)"),
        (["start-api", "--port", "70000"], "is not a port number"),
        (["training", "run", "--canary-percentage", "80"], "at most 50"),
        (["sign", "nope", "x"], "invalid choice: 'nope'"),
    ],
)
def test_bad_input_is_a_clear_message(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["training", "run", "--api", "notaurl"], "not an API base URL: 'notaurl'"),
    ],
)
def test_remote_training_run_errors_are_clear(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("flywheel: error: ") and message in err


def test_experiment_plan_reads_rates_and_percentages(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            ["experiment", "plan", "--baseline", "3%", "--mde", "10%", "--split", "90/10", "--weekly-volume", "20000"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("baseline 3.00%, detectable lift 10%, split 90/10 (champion/challenger)")
    assert "300" not in out.splitlines()[0]


def test_missing_or_broken_event_files_are_clear(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["invoke", "MessagesFunction", "-e", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{nope")
    assert cli.main(["invoke", "MessagesFunction", "-e", str(tmp_path / "broken.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert cli.main(["invoke", "NoSuchFunction"]) == 2
    assert "no function or state machine 'NoSuchFunction'" in capsys.readouterr().err


def test_dataset_build_without_an_opted_in_organisation_says_so(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dataset", "build", "--out", str(tmp_path / "ds")]) == 1  # an empty, invalid dataset
    assert "no organisation has opted in to training, so there was nothing to build from" in capsys.readouterr().err


def test_migrate_reports_what_it_applied(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"flywheel_cli_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DATABASE_URL", create_database(pg_admin_url, name))
    try:
        assert cli.main(["migrate"]) == 0
        first = capsys.readouterr().out
        assert cli.main(["migrate"]) == 0
        again = capsys.readouterr().out
    finally:
        from flywheel.dal.connection import close_connection

        close_connection()
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
    versions = sorted(p.name[:4] for p in (ROOT / "sql").glob("[0-9]*.sql"))
    assert first.strip() == '{"applied": [' + ", ".join(f'"{v}"' for v in versions) + "]}"
    assert again.strip() == '{"applied": []}'


def test_config_shows_every_setting_and_where_it_comes_from(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text((ROOT / "template.yaml").read_text())
    (tmp_path / ".env").write_text("# local\nFLYWHEEL_DB_PORT=6001\nexport OPENAI_API_KEY='sk-test-1234567890abcd'\n")
    env = {k: v for k, v in os.environ.items() if k not in setting_names()}
    env.update(PYTHONPATH=str(ROOT / "layers" / "flywheel"), CLASSIFIER_MODEL="gpt-test")
    done = subprocess.run(
        [*FLYWHEEL, "--template", str(tmp_path / "template.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [re.match(r"^([A-Z0-9_]+)=(.*)  # (.+)$", line) for line in done.stdout.splitlines()]
    rows = {m.group(1): (m.group(2), m.group(3)) for m in lines if m}
    assert len(rows) == len(lines) and set(rows) == set(setting_names())
    assert rows["FLYWHEEL_DB_PORT"] == ("6001", ".env")
    assert rows["OPENAI_API_KEY"] == ("****abcd", ".env")  # masked
    assert rows["CLASSIFIER_MODEL"] == ("gpt-test", "env")
    assert rows["REPLIES_QUEUE_URL"][1] == "local stack" and rows["TRAINING_EPOCHS"] == ("3", "default")


def _config(tmp_path: Path, env: dict[str, str], dotenv: str = "") -> tuple[dict[str, tuple[str, str]], str]:
    """`flywheel config` in a copy of the checkout (its own .env), with `env` in the shell."""
    (tmp_path / "template.yaml").write_text((ROOT / "template.yaml").read_text())
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    shell = {k: v for k, v in os.environ.items() if k not in setting_names()}
    shell.update(PYTHONPATH=str(ROOT / "layers" / "flywheel"), **env)
    done = subprocess.run(
        [*FLYWHEEL, "--template", str(tmp_path / "template.yaml"), "config"],
        env=shell,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {}
    for line in done.stdout.splitlines():
        name, _, rest = line.partition("=")
        value, _, source = rest.rpartition("  # ")
        rows[name] = (value, source)
    return rows, done.stderr


def test_config_masks_every_secret_and_the_password_of_a_url(tmp_path: Path) -> None:
    rows, _ = _config(
        tmp_path,
        {
            "CLASSIFIER_API_KEY": "ck-live-TOPSECRET-0123456789",
            "DATABASE_URL": "postgresql://flywheel:pa55-SECRET@db.example:5432/flywheel?sslmode=require",
            "CLASSIFIER_BASE_URL": "https://user:TOPSECRET@llm.example/v1",
            "WEBHOOK_SECRETS_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flywheel/webhooks",
        },
        dotenv='WEBHOOK_SECRETS_JSON={"sendgrid_public_key": "TOPSECRET-public-key"}\n',
    )
    assert rows["CLASSIFIER_API_KEY"] == ("****6789", "env")
    assert rows["DATABASE_URL"] == ("postgresql://flywheel:****@db.example:5432/flywheel?sslmode=require", "env")
    assert rows["CLASSIFIER_BASE_URL"] == ("https://user:****@llm.example/v1", "env")
    assert rows["WEBHOOK_SECRETS_JSON"] == ('****ey"}', ".env")
    assert rows["WEBHOOK_SECRETS_ARN"][0].endswith("secret:flywheel/webhooks")  # an ARN names a secret, holds none
    assert not [name for name, (value, _) in rows.items() if "SECRET" in value and not name.endswith("_ARN")]


def test_config_shows_the_shell_value_a_dotenv_line_does_not_override(tmp_path: Path) -> None:
    # flywheel reads .env "without overriding your shell's variables": config shows what is in effect
    rows, _ = _config(tmp_path, {"REPORT_WINDOW_DAYS": "50"}, dotenv="REPORT_WINDOW_DAYS=30\nREPORT_CAMPAIGNS=7\n")
    assert rows["REPORT_WINDOW_DAYS"] == ("50", "env")
    assert rows["REPORT_CAMPAIGNS"] == ("7", ".env")


def test_config_marks_a_value_the_functions_would_refuse(tmp_path: Path) -> None:
    rows, stderr = _config(
        tmp_path, {"SENDGRID_MAX_AGE_S": "3600"}, dotenv='PROVIDER_ORGS_JSON=\'{"hubspot:1": "acme",}\'\n'
    )
    assert rows["SENDGRID_MAX_AGE_S"] == ("3600", "env, invalid: Input should be greater than or equal to 90000")
    assert rows["PROVIDER_ORGS_JSON"][1].startswith(".env, invalid: Value error, not valid JSON")
    assert rows["REPORT_WINDOW_DAYS"] == ("84", "default")
    assert "invalid settings" in stderr and "PROVIDER_ORGS_JSON, SENDGRID_MAX_AGE_S" in stderr


def test_env_example_lists_every_setting() -> None:
    listed = {
        line.lstrip("# ").split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if re.match(r"^# ?[A-Z][A-Z0-9_]+=", line)
    }
    missing = set(setting_names()) - listed
    assert not missing, f"add these to .env.example: {sorted(missing)}"
    assert parse_dotenv("A=1\n# c\nexport B='two words'\nC=x # note\n") == {"A": "1", "B": "two words", "C": "x"}


def test_make_lists_every_target() -> None:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony is not None
    targets = phony.group(1).split()
    default = subprocess.run(
        ["make", "-s", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    listed = [line.split()[0] for line in default.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(targets)

"""Local settings: where the local state lives, the `.env` file, and what `flywheel config` shows.

Precedence for every setting, highest first: the process environment, the checkout's `.env`,
the local defaults below (local runs only), the template's own values.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from flywheel.local.seed import PARSE_DOMAIN, PROVIDER_ORGS
from flywheel.settings import ConfigurationError, Settings

# Settings read only by the local runtime (`flywheel ...`), never by a deployed function.
LOCAL_SETTINGS: dict[str, str] = {
    "FLYWHEEL_STATE_DIR": "",  # default: <checkout>/.flywheel
    "FLYWHEEL_DB_PORT": "54329",
    "FLYWHEEL_LOCAL_WAIT_S": "1",
    "FLYWHEEL_API_URL": "http://127.0.0.1:8081",
}
# What a local run uses when the variable is not set (flywheel.local.stack and .embedded).
LOCAL_STACK_VALUES: dict[str, str] = {
    "DATABASE_URL": "(the embedded PostgreSQL in FLYWHEEL_STATE_DIR/pgdata)",
    "WEBHOOK_SECRETS_ARN": "(the local webhook secret: FLYWHEEL_STATE_DIR/secrets.json)",
    "PROVIDER_ORGS_JSON": json.dumps(PROVIDER_ORGS),
    "INBOUND_PARSE_DOMAINS": PARSE_DOMAIN,
    "REPLIES_QUEUE_URL": "(the local RepliesQueue)",
    "TRAINING_BUCKET": "(the local TrainingBucket)",
    "TRAINING_STATE_MACHINE_ARN": "(the local WeeklyTrainingStateMachine)",
    "BEDROCK_ROLE_ARN": "(the local BedrockCustomizationRole)",
    "OPENAI_SECRET_ARN": "(the local OpenAISecret; OPENAI_API_KEY wins)",
    "REPLIES_DLQ_URL": "(the local RepliesDeadLetterQueue)",
    "HUBSPOT_API_BASE": "(the local HubSpot API)",
    "PIPEDRIVE_API_BASE": "(the local Pipedrive API)",
}
# `flywheel config` never prints these in clear: a variable whose name has one of these words holds
# a secret (an ARN only names one), and a password inside a URL or libpq string is masked wherever
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*:)[^/?#@\s]*(?P<at>@)")
_PARAM_PASSWORD = re.compile(r"(?P<head>(?:^|[?&\s])password\s*=\s*)(?:'[^']*'|[^&\s]*)", re.IGNORECASE)


def state_dir(root: Path) -> Path:
    """The folder holding the embedded database, local secrets and the event journal."""
    configured = os.environ.get("FLYWHEEL_STATE_DIR")
    return Path(configured).expanduser().resolve() if configured else root / ".flywheel"


def local_setting(name: str) -> str:
    return os.environ.get(name) or LOCAL_SETTINGS[name]


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines (optionally `export KEY=...`, quoted values, # comments), as shells read them."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _LINE.match(line)
        if not found:
            raise ValueError(f".env line {number} is not KEY=VALUE: {line.strip()[:60]!r}")
        key, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load_dotenv(root: Path) -> dict[str, str]:
    """Export the checkout's `.env` into this process, without overriding what is already set."""
    path = root / ".env"
    if not path.exists():
        return {}
    loaded = {k: v for k, v in parse_dotenv(path.read_text(encoding="utf-8")).items() if k not in os.environ}
    os.environ.update(loaded)
    return loaded


def setting_names() -> list[str]:
    """Every environment variable the code reads: the settings object's fields, then the local ones."""
    return [name.upper() for name in Settings.model_fields] + list(LOCAL_SETTINGS)


def is_secret(name: str) -> bool:
    return any(word in name for word in SECRET_WORDS) and not name.endswith("_ARN")


def masked(name: str, value: str) -> str:
    """The value as `flywheel config` prints it: a secret's last 4 characters at most (none of a
    short one), a password in a URL (`scheme://user:****@host`) or libpq string as ****."""
    if not value:
        return value
    if is_secret(name):
        return "****" + value[-4:] if len(value) > 12 else "****"
    value = _URL_PASSWORD.sub(lambda m: f"{m['head']}****{m['at']}", value)
    return _PARAM_PASSWORD.sub(lambda m: f"{m['head']}****", value)


def invalid_settings(environ: dict[str, str]) -> dict[str, str]:
    """The variables the functions would refuse (flywheel.settings.ConfigurationError): name -> why."""
    try:
        Settings.from_env(environ)
    except ConfigurationError as exc:
        return exc.problems
    return {}


def effective_config(root: Path, dotenv: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, value, source) of every setting of a local run, secrets masked; `source` is env,
    .env, local stack or default, followed by `invalid: <why>` for a value the functions refuse.
    `dotenv` holds what the `.env` file set (load_dotenv): a variable of the shell wins over it."""
    defaults = Settings().model_dump()
    invalid = invalid_settings({**os.environ, **dotenv})
    rows = []
    for name in setting_names():
        if name in dotenv:
            value, source = dotenv[name], ".env"
        elif name in os.environ:
            value, source = os.environ[name], "env"
        elif name in LOCAL_SETTINGS:
            value = str(state_dir(root)) if name == "FLYWHEEL_STATE_DIR" else LOCAL_SETTINGS[name]
            source = "default"
        elif name in LOCAL_STACK_VALUES:
            value, source = LOCAL_STACK_VALUES[name], "local stack"
        else:
            default = defaults.get(name.lower())
            value, source = (
                ("" if default is None else str(default).lower() if isinstance(default, bool) else str(default)),
                "default",
            )
        if source in ("env", ".env"):
            value = masked(name, value)
        if name in invalid:
            source = f"{source}, invalid: {invalid[name]}"
        rows.append((name, value, source))
    return rows

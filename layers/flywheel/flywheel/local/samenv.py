"""`flywheel sam-env`: the env.json for `sam local invoke/start-api --env-vars env.json`.

SAM only passes a function the variables its template declares, so the file has exactly those,
for every function: the embedded database over TCP (reached from the container through
`host.docker.internal`), the local webhook secrets inline (WebhooksFunction, the one function
that reads them), the local stack's parameter values, and empty values for what only exists in
AWS (the queue, the bucket, the state machine, the secrets' ARNs, the roles the stack creates),
so the code takes its local path instead of calling an AWS resource that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.local.embedded import container_url
from flywheel.local.secrets import webhook_secrets_json
from flywheel.local.template import read_template


def sam_environment(
    template_path: Path, secrets: dict[str, str], db_port: int, host: str = "host.docker.internal"
) -> dict[str, dict[str, str]]:
    from flywheel.local.stack import LOCAL_PARAMETERS

    template = read_template(template_path)
    local = {
        "DATABASE_URL": container_url(db_port, secrets["database_password"], host),
        "DATABASE_SECRET_ARN": "",
        "WEBHOOK_SECRETS_JSON": webhook_secrets_json(secrets),
        "WEBHOOK_SECRETS_ARN": "",
    }
    env: dict[str, dict[str, str]] = {}
    for logical_id, spec in sorted(template.functions().items()):
        env[logical_id] = {
            name: _value(template, name, raw, local, LOCAL_PARAMETERS) for name, raw in spec.raw_environment.items()
        }
    return env


def _value(template: Any, name: str, raw: Any, local: dict[str, str], parameters: dict[str, str]) -> str:
    if name in local:
        return local[name]
    return template.resolve(raw, parameters) or ""

"""No handler loads, at import, the heavy modules that only some paths use: the OpenAI SDK, NumPy,
the dataset and redaction rules, the HTTP client of the CRM APIs, cryptography, VADER. Each handler
is imported in a fresh process, as a cold start does, in Lambda's environment: LAMBDA_TASK_ROOT set,
so the Tracer is on and patches what it is told to (a module the layer lacks fails the import there
and only there). bench/coldstart.py measures the time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flywheel.local.template import read_template
from tests.conftest import ROOT

HEAVY = ["openai", "numpy", "httpx2", "cryptography", "vaderSentiment", "tiktoken", "phonenumbers"]
# the health service (and the secrets client it loads: Powertools' parameters utility) loads on a
# health request; the fine-tuning clients on a serving sync
ON_REQUEST = ["flywheel.services.health", "aws_lambda_powertools.utilities.parameters", "flywheel.clients.finetune"]
# ours, loaded only by the routes or functions that use them
NOT_AT_IMPORT = {
    # the LLM clients, the classification models and the reply rules: ClassifierFunction's path
    "RepliesApiFunction": [
        "flywheel.clients.llm",
        "flywheel.models.classification",
        "flywheel.domain.reply_rules",
        *ON_REQUEST,
    ],
    "MessagesFunction": [
        "flywheel.clients.llm",
        "flywheel.models.classification",
        "flywheel.domain.reply_rules",
        *ON_REQUEST,
    ],
    # a report link is a HEAD and a presigned URL: building a report (experiments...) is ReportFunction's
    "ReportsApiFunction": [*ON_REQUEST, "flywheel.services.experiments"],
    "RoutingFunction": ON_REQUEST,
    # the offline classifier's rules: when there is no LLM, or it fails
    "ClassifierFunction": ["flywheel.domain.reply_rules", "flywheel.services.health"],
    "ReportFunction": ON_REQUEST[1:],
    "ExperimentEvaluatorFunction": ON_REQUEST[1:],
    # each provider's parser: one route each
    "WebhooksFunction": [
        *(
            f"flywheel.webhooks.{p}"
            for p in ("inbound", "salesforce", "sendgrid", "calendly", "hubspot", "pipedrive", "generic")
        ),
        "flywheel.domain.reply_rules",
        "defusedxml",
    ],
}
FUNCTIONS = read_template(ROOT / "template.yaml").functions()


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_imports_nothing_it_does_not_need_at_cold_start(logical_id: str) -> None:
    spec = FUNCTIONS[logical_id]
    module, _, _ = spec.handler.rpartition(".")
    heavy = HEAVY + NOT_AT_IMPORT.get(logical_id, [])
    code = (
        f"import importlib, json, sys; sys.path[:0] = {[str(spec.code_dir), str(ROOT / 'layers' / 'flywheel')]!r}; "
        f"importlib.import_module({module!r}); from flywheel.observability import tracer; "
        f"from flywheel.settings import Settings; from flywheel.models import replies; "
        f"print(json.dumps([tracer.disabled, [m for m in {heavy!r} if m in sys.modules], "
        f"[m.__name__ for m in (Settings, replies.ReplyJob, replies.CorrectionIn) if m.__pydantic_complete__]]))"
    )
    env = {
        **os.environ,
        **spec.environment,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-1500:]
    # and the settings model (~100 fields) and the reply models a function does not serve are
    # compiled at their first use, not at import (this process imported them only to look)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, [], []]

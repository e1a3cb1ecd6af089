"""No handler loads, at import, the heavy modules that only some paths use: the OpenAI SDK, NumPy,
the dataset and redaction rules, the HTTP client of the CRM APIs, cryptography, VADER. Each handler
is imported in a fresh process, as a cold start does (bench/coldstart.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flywheel.local.template import read_template
from tests.conftest import ROOT

HEAVY = ["openai", "numpy", "httpx2", "cryptography", "vaderSentiment", "tiktoken", "phonenumbers"]
FUNCTIONS = read_template(ROOT / "template.yaml").functions()


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_imports_nothing_it_does_not_need_at_cold_start(logical_id: str) -> None:
    spec = FUNCTIONS[logical_id]
    module, _, _ = spec.handler.rpartition(".")
    code = (f"import importlib, json, sys; sys.path[:0] = {[str(spec.code_dir), str(ROOT / 'layers' / 'flywheel')]!r}; "
            f"importlib.import_module({module!r}); print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

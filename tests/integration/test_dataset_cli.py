"""`flywheel dataset build` and `flywheel dataset validate`, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.training_helpers import seed_outcomes

CLI = [sys.executable, "-m", "flywheel.cli"]


def run(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT / "layers" / "flywheel")}
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_build_then_validate(db, db_url: str, tmp_path: Path) -> None:
    seed_outcomes(db, 70)
    seed_outcomes(db, 40, label="negative", quality=0.1, prefix="n")
    out = tmp_path / "ds"
    built = run("dataset", "build", "--out", str(out), db_url=db_url)
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["examples"] == 70 and summary["valid"] and summary["enough"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["by_label"] == {"positive": 70} and manifest["by_org"] == {"acme": 70}
    assert set(manifest["by_framework"]) == {"PAS", "AIDA", "BAB"} and len(manifest["dataset_hash"]) == 64
    checked = run("dataset", "validate", str(out / "train.jsonl"), db_url=db_url)
    assert checked.returncode == 0 and json.loads(checked.stdout)["invalid"] == 0

    dpo = run("dataset", "build", "--out", str(tmp_path / "dpo"), "--method", "dpo", db_url=db_url)
    assert dpo.returncode == 0, dpo.stderr
    line = json.loads((tmp_path / "dpo" / "train.jsonl").read_text().splitlines()[0])
    assert set(line) == {"input", "preferred_output", "non_preferred_output"}
    assert run("dataset", "validate", str(tmp_path / "dpo" / "train.jsonl"), "--format", "dpo",
               db_url=db_url).returncode == 0


def test_validate_reports_a_broken_file(db_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    result = run("dataset", "validate", str(broken), db_url=db_url)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["invalid"] == 2
    assert any("no assistant turn" in e for e in report["errors"])

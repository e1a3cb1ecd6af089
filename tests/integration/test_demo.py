"""`make demo` runs end to end (here against the test database)."""

from __future__ import annotations

import pytest

from flywheel.local.demo import run_demo
from tests.conftest import ROOT, count


def test_demo_runs_to_the_end(db_url: str, db, capsys: pytest.CaptureFixture[str]) -> None:
    run_demo(ROOT)
    out = capsys.readouterr().out
    assert "created=40" in out and "created=0 existing=40" in out
    assert "demo finished" in out
    assert count(db, "outcome_labels") == 40

"""`make demo` runs end to end (here against the test database)."""

from __future__ import annotations

import pytest

from flywheel.local.demo import run_demo
from tests.conftest import ROOT, count


def test_demo_runs_to_the_end(db_url: str, db, capsys: pytest.CaptureFixture[str]) -> None:
    run_demo(ROOT)
    out = capsys.readouterr().out
    assert "created=40" in out and "created=0 existing=40" in out
    assert "stage=deal_won label=positive weight=10.0" in out
    assert "replies waiting for the classifier on the SQS queue: 5" in out
    assert "demo finished" in out
    assert count(db, "outcome_labels") == 40
    assert db.execute("SELECT count(*) AS n FROM outcome_labels WHERE replied_at IS NOT NULL").fetchone()["n"] == 5

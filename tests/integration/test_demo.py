"""`make demo` runs end to end (here against the test database)."""

from __future__ import annotations

import pytest

from flywheel.local.demo import run_demo
from tests.conftest import ROOT, count


def test_demo_runs_to_the_end(db_url: str, db, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_demo(ROOT)
    out = capsys.readouterr().out
    assert "created=40" in out and "created=0 existing=40" in out
    assert "stage=deal_won label=positive weight=10.0" in out
    assert "ClassifierFunction on 5 queued replies (offline rules) -> 0 failures" in out
    assert "reply categories: {" in out and "replies still waiting on the SQS queue: 0" in out
    assert "execution: SUCCEEDED" in out and "status=deployed role=champion traffic=100%" in out
    assert "demo finished" in out
    assert count(db, "outcome_labels") == 40 + 90  # the campaign and the opted-in history
    assert db.execute("SELECT count(*) AS n FROM outcome_labels WHERE reply_category IS NOT NULL").fetchone()["n"] == 95
    assert db.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 1

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
    assert "challenger flywheel-v1.1.0 at 20%" in out and "fits in 56 days; warnings: none" in out
    assert "evaluator on day 3 -> advance: canary clean" in out
    assert "POST /training/promote-winner -> 200: promote" in out and "clear harm: none" in out
    assert "evaluation history: day 3 advance, day 23 promote" in out
    assert "registry now: flywheel-v1.1.0 champion 100%" in out
    assert "demo finished" in out
    report = ROOT / ".flywheel" / "demo-report.html"
    assert f"report written: {report}" in out and "Flywheel report · demo-ab" in report.read_text()
    assert "replies queue 0 · dead-letter queue 0" in out  # collected as ReportFunction does, in its environment
    assert "Funnel" in out and "Data health" in out and "signed events for the experiment's messages) -> [200]" in out
    funnel = db.execute(
        "SELECT count(delivered_at) AS delivered, count(first_opened_at) AS opened, "
        "count(bounced_at) AS bounced FROM outcome_labels WHERE org_id = 'demo-ab'"
    ).fetchone()
    assert funnel["delivered"] > 0 and funnel["opened"] > 0 and funnel["bounced"] > 0
    plan = db.execute("SELECT plan FROM experiments").fetchone()["plan"]
    canary = int(plan["canary_sample"] * 1.03)
    assert count(db, "outcome_labels") == 40 + 90 + canary + 4000  # campaign, opted-in history, canary, A/B
    assert (
        db.execute(
            "SELECT count(*) AS n FROM outcome_labels WHERE reply_category IS NOT NULL AND org_id NOT IN ('demo-ab')"
        ).fetchone()["n"]
        == 95
    )
    assert db.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 1

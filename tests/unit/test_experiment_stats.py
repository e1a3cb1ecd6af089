"""Experiment statistics and the decision rule, on known numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flywheel.domain import experiments as ex
from flywheel.domain import stats
from tests.conftest import ROOT


def test_sample_sizes_match_the_reference_numbers() -> None:
    ninety_ten, fifty_fifty = stats.sample_size(0.03, 0.05, 0.1), stats.sample_size(0.03, 0.05, 0.5)
    assert ninety_ten == pytest.approx(1_150_000, rel=0.03) and fifty_fifty == pytest.approx(416_000, rel=0.03)
    assert ninety_ten / fifty_fifty == pytest.approx(2.78, abs=0.02)


def test_fnv1a_and_sticky_buckets() -> None:
    assert ex.fnv1a_32("") == 0x811C9DC5 and ex.fnv1a_32("a") == 0xE40C292C and ex.fnv1a_32("foobar") == 0xBF9CF968
    buckets = [ex.bucket("salt-1", f"lead-{i}") for i in range(20_000)]
    canary = [ex.arm_for(b, 0.1) for b in buckets]
    ab = [ex.arm_for(b, 0.5) for b in buckets]
    assert 0.09 < canary.count("challenger") / len(buckets) < 0.11
    assert all(a == "challenger" for c, a in zip(canary, ab, strict=True) if c == "challenger")
    assert buckets[:50] != [ex.bucket("salt-2", f"lead-{i}") for i in range(50)]  # a new salt re-randomises


def test_lift_intervals() -> None:
    lift, var = stats.relative_lift(300, 10_000, 360, 10_000)
    assert float(lift) == pytest.approx(0.2)
    low, high = stats.fixed_interval(lift, var)
    s_low, s_high = stats.sequential_interval(lift, var, 20_000, 20_000)
    assert s_low < low < 0.2 < high < s_high  # the always-valid interval is the wider one
    no_data = stats.relative_lift(0, 0, 0, 0)
    assert no_data[0] == 0 and np.isinf(no_data[1])


def test_srm_and_wilson() -> None:
    assert stats.srm_p_value([5000, 5100], [0.5, 0.5]) > 0.1
    assert stats.srm_p_value([5000, 5600], [0.5, 0.5]) < 0.001
    low, high = stats.wilson_interval(30, 1000)
    assert 0.02 < low < 0.03 < high < 0.045 and stats.wilson_interval(0, 0) == (0.0, 1.0)


def snapshot(stage: str = "ab", days: float = 10, x=(30, 30), n=(1000, 1000), assigned=(1000, 1000),
             allocation: float = 0.5, unsub=(2, 2), planned: int = 2000, days_in_stage: float | None = None) -> dict:
    def arm(i: int) -> dict:
        return {"assigned": assigned[i], "metrics": {"positive_reply": {"units": n[i], "conversions": x[i]}},
                "guardrails": {"unsubscribe": {"units": n[i], "events": unsub[i]}}}
    return {"experiment_id": "exp-1", "stage": stage, "days_running": days, "allocation": allocation,
            "days_in_stage": days if days_in_stage is None else days_in_stage, "planned_sample": planned,
            "arms": {"champion": arm(0), "challenger": arm(1)}}


@pytest.mark.parametrize(("snap", "action"), [
    (snapshot(x=(30, 90)), "promote"),
    (snapshot(x=(30, 90), days=5), "continue"),  # minimum runtime first
    (snapshot(x=(90, 20)), "rollback"),
    (snapshot(x=(30, 33), n=(600, 600), planned=2000), "continue"),
    (snapshot(x=(30, 33)), "inconclusive"),  # the planned sample is reached without a winner
    (snapshot(x=(30, 90), assigned=(1000, 1200)), "hold"),  # sample ratio mismatch blocks everything
    (snapshot(unsub=(1, 40)), "rollback"),  # guardrail
    (snapshot(stage="canary", days=1, allocation=0.1, assigned=(900, 100)), "continue"),
    (snapshot(stage="canary", days=2.5, allocation=0.1, assigned=(900, 100)), "advance"),
    (snapshot(stage="canary", days=1, allocation=0.1, assigned=(900, 100), unsub=(1, 60)), "rollback"),
])
def test_decisions(snap: dict, action: str) -> None:
    decision = ex.decide(snap)
    assert decision["action"] == action, decision["reason"]
    json.dumps(decision)  # every number is JSON (no infinities)


def test_seed_score_and_revenue_are_reported_not_decided_on() -> None:
    snap = snapshot(x=(30, 30))
    for i, arm in enumerate(("champion", "challenger")):
        snap["arms"][arm]["metrics"].update(meeting={"units": 1000, "conversions": 10},
                                            close={"units": 1000, "conversions": 5 * (i + 1)},
                                            revenue={"units": 1000, "sum": 20000.0 * (i + 1)})
    decision = ex.decide(snap)
    assert decision["secondary"]["seed_composite_score"] == pytest.approx([0.0115, 0.014])
    assert decision["secondary"]["revenue_per_message"] == [20.0, 40.0]
    assert decision["action"] == "inconclusive"  # the primary metric alone decides


def test_cli_plan_and_evaluate() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "flywheel")}
    planned = subprocess.run([sys.executable, "-m", "flywheel.cli", "experiment", "plan", "--baseline", "0.03",
                              "--mde", "0.10", "--split", "50/50", "--weekly-volume", "20000"],
                             capture_output=True, text=True, env=env, check=True, cwd=ROOT).stdout
    assert "fixed-horizon sample: 101,513" in planned and "weeks" in planned
    lines = "\n".join(json.dumps(s) for s in (snapshot(x=(30, 90)), snapshot(x=(90, 20)))) + "\nnot json\n"
    done = subprocess.run([sys.executable, "-m", "flywheel.cli", "experiment", "evaluate"], input=lines,
                          capture_output=True, text=True, env=env, check=False, cwd=ROOT)
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o.get("action") for o in out] == ["promote", "rollback", None] and out[2]["line"] == 3
    assert done.returncode == 1 and out[0]["primary"]["sequential_interval"][0] > 0

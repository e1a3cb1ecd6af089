"""Experiments end to end on PostgreSQL: sticky routing, canary, A/B, promotion and rollback."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from flywheel.services import experiments, training
from tests.conftest import ROOT, load_event


@pytest.fixture
def models(db, db_url):
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  provider_model_id, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', %s, 'amazon.nova-micro-v1:0:128k')""",
                   (f"flywheel-{version}", version, minor, f"arn:aws:bedrock:us-east-1:1:custom-model/{version}"))
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    deployed = training.deploy_model("flywheel-v1.1.0", canary_percentage=10, actor="test", reason="weekly run")
    experiments.forget_cache()
    yield deployed["experiment_id"]
    experiments.forget_cache()


def route(org: str, lead: str) -> dict[str, Any]:
    event = json.loads(json.dumps(load_event("route_get.json")))
    event["queryStringParameters"] = {"org_id": org, "lead_id": lead}
    event["multiValueQueryStringParameters"] = {"org_id": [org], "lead_id": [lead]}
    result = invoke("RoutingFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])


def test_routing_is_sticky_and_follows_the_split(db, models) -> None:
    arms = [route("acme", f"lead-{i}")["arm"] for i in range(400)]
    assert 20 <= arms.count("challenger") <= 65  # ~10 % canary
    first = route("acme", "lead-7")
    assert route("acme", "lead-7") == first
    assert first["experiment_id"] == models and first["model"]["model_registry_id"] in ("flywheel-v1.0.0",
                                                                                        "flywheel-v1.1.0")
    assert db.execute("SELECT count(*) AS n FROM assignments").fetchone()["n"] == 400


def test_concurrent_first_calls_record_one_assignment(db, db_url, models) -> None:
    """Eight connections assign the same lead at once, each wanting another arm: one row, one arm."""
    import psycopg
    from psycopg.rows import dict_row

    from flywheel.dal import experiments as experiments_dal

    results: list[str] = []
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait()
            results.append(experiments_dal.assign(conn, models, "acme", "lead-race",
                                                  "challenger" if i % 2 else "champion", 42, "canary"))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'lead-race'").fetchone()["n"] == 1


def seed_outcomes(db, experiment_id: str, leads: int, champion_rate: float, challenger_rate: float,
                  days_ago: int = 20, unsubscribe_challenger: float = 0.0) -> None:
    """Messages for assigned leads (as POST /messages with the route result records them): in each
    arm, the first `rate` of every hundred leads replied with interest."""
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme') ON CONFLICT DO NOTHING")
    db.execute(
        """WITH picked AS (
               SELECT lead_id, arm, row_number() OVER (PARTITION BY arm ORDER BY lead_id) %% 100 AS k
                 FROM (SELECT * FROM assignments WHERE experiment_id = %(exp)s ORDER BY lead_id LIMIT %(n)s) a),
           flagged AS (
               SELECT *, k < 100 * CASE WHEN arm = 'challenger' THEN %(ct)s ELSE %(cc)s END AS positive,
                      arm = 'challenger' AND k < 100 * %(unsub)s AS unsub
                 FROM picked)
           INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, experiment_id,
                                       experiment_arm, model_registry_id, replied_at, reply_category,
                                       unsubscribed_at, stage)
           SELECT 'acme', 'k-' || lead_id, 'c1', lead_id, 'hello', now() - make_interval(days => %(days)s),
                  %(exp)s, arm, CASE WHEN arm = 'challenger' THEN 'flywheel-v1.1.0' ELSE 'flywheel-v1.0.0' END,
                  CASE WHEN positive THEN now() - make_interval(days => %(days)s - 1) END,
                  CASE WHEN positive THEN 'interested' END,
                  CASE WHEN unsub THEN now() - make_interval(days => %(days)s - 1) END, 'sent'
             FROM flagged""",
        {"exp": experiment_id, "n": leads, "ct": challenger_rate, "cc": champion_rate, "unsub": unsubscribe_challenger,
         "days": days_ago})


def evaluate() -> dict[str, Any]:
    return invoke("ExperimentEvaluatorFunction", load_event("experiment_evaluator_schedule.json"),
                  ROOT / "template.yaml")


def test_canary_advances_then_a_better_challenger_is_promoted(db, models) -> None:
    [experiments.route("acme", f"lead-{i:04d}") for i in range(1500)]  # the library call GET /route makes
    assert evaluate()["action"] == "continue"  # canary, day 0
    db.execute("UPDATE experiments SET started_at = now() - interval '3 days', "
               "stage_started_at = now() - interval '3 days'")
    decision = evaluate()
    assert decision["action"] == "advance", decision
    experiment = db.execute("SELECT * FROM experiments").fetchone()
    assert (experiment["stage"], float(experiment["allocation"])) == ("ab", 0.5)
    shares = {r["model_id"]: float(r["traffic_percentage"]) for r in db.execute(
        "SELECT model_id, traffic_percentage FROM model_registry WHERE status = 'deployed'")}
    assert shares == {"flywheel-v1.0.0": 50.0, "flywheel-v1.1.0": 50.0}
    # leads seen in the canary keep their arm; new leads get the 50/50 split
    before = {r["lead_id"]: r["arm"] for r in db.execute("SELECT lead_id, arm FROM assignments")}
    experiments.forget_cache()
    assert all(route("acme", lead)["arm"] == arm for lead, arm in list(before.items())[:50])
    new_arms = [experiments.route("acme", f"new-{i}")["arm"] for i in range(600)]
    assert 240 <= new_arms.count("challenger") <= 360

    # A/B: after enough time, with a clearly better challenger
    db.execute("UPDATE experiments SET started_at = now() - interval '10 days', planned_sample = 2000")
    seed_outcomes(db, models, 2000, champion_rate=0.03, challenger_rate=0.12)
    decision = evaluate()
    assert decision["action"] == "promote", decision
    assert decision["primary"]["sequential_interval"][0] > 0
    registry = {r["model_id"]: r for r in db.execute("SELECT * FROM model_registry")}
    assert (registry["flywheel-v1.1.0"]["role"], float(registry["flywheel-v1.1.0"]["traffic_percentage"])) == (
        "champion", 100.0)
    assert registry["flywheel-v1.0.0"]["status"] == "archived"
    promoted = db.execute("SELECT * FROM model_history WHERE action = 'promoted'").fetchone()
    assert promoted["actor"] == "evaluator" and promoted["evidence"]["primary"]["lift"] > 0
    assert db.execute("SELECT status FROM experiments").fetchone()["status"] == "promoted"
    assert evaluate() == {"action": "none", "reason": "no experiment is running", "serving": {
        "retired": [], "restoring": [], "active": [], "failed": [], "errors": []}}


def test_a_guardrail_breach_in_the_canary_rolls_back(db, models) -> None:
    [experiments.route("acme", f"lead-{i:04d}") for i in range(3000)]
    seed_outcomes(db, models, 3000, champion_rate=0.03, challenger_rate=0.03, unsubscribe_challenger=0.2)
    decision = evaluate()
    assert decision["action"] == "rollback" and decision["guardrails"]["unsubscribe"]["breached"], decision
    registry = {r["model_id"]: r for r in db.execute("SELECT * FROM model_registry")}
    assert registry["flywheel-v1.1.0"]["status"] == "archived"
    assert float(registry["flywheel-v1.0.0"]["traffic_percentage"]) == 100.0
    assert db.execute("SELECT status FROM experiments").fetchone()["status"] == "rolled_back"


def test_leaderboard_and_strategies(db, models) -> None:
    [experiments.route("acme", f"lead-{i:04d}") for i in range(300)]
    seed_outcomes(db, models, 300, champion_rate=0.05, challenger_rate=0.05)
    db.execute("UPDATE outcome_labels SET lead_industry = 'fintech', framework = 'PAS', tone = 'warm'")
    board = experiments.leaderboard_with_intervals(training.leaderboard())
    champion = next(m for m in board if m["model_id"] == "flywheel-v1.0.0")
    assert champion["messages_sent"] > 200
    low, high = champion["reply_rate"]["interval"]
    assert low <= champion["reply_rate"]["rate"] <= high
    cells = experiments.strategies("industry", min_sample=30)
    assert cells["cells"][0]["segment"] == "fintech" and cells["cells"][0]["reply_rate"]["n"] == 300
    assert experiments.strategies("role", min_sample=30)["cells"] == []

"""Experiments end to end on PostgreSQL: sticky routing, planning from history, the canary rollback on
real messages and SendGrid events, promotion, promote-winner's answers, SRM restart, locking."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flywheel.dal.connection import close_connection
from flywheel.domain.experiments import TYPICAL_RATES
from flywheel.errors import NotFound
from flywheel.local.invoke import invoke
from flywheel.services import experiments, training
from tests.conftest import ROOT, count, load_event
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers


def insert_models(db) -> None:
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        db.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                  provider_model_id, base_model)
                      VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', %s, 'amazon.nova-micro-v1:0:128k')""",
            (f"flywheel-{version}", version, minor, f"arn:aws:bedrock:us-east-1:1:custom-model/{version}"),
        )


@pytest.fixture
def models(db, db_url):
    insert_models(db)
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    deployed = training.deploy_model("flywheel-v1.1.0", canary_percentage=10, actor="test", reason="weekly run")
    experiments.forget_cache()
    yield deployed
    experiments.forget_cache()


def started_days_ago(db, days: float) -> datetime:
    """The experiment started `days` ago (set before any message is written: no message predates it)."""
    row = db.execute(
        "UPDATE experiments SET started_at = now() - make_interval(secs => %s), "
        "stage_started_at = now() - make_interval(secs => %s) RETURNING started_at",
        (days * 86400, days * 86400),
    ).fetchone()
    return row["started_at"]


def route(org: str, lead: str) -> dict[str, Any]:
    event = json.loads(json.dumps(load_event("route_get.json")))
    event["queryStringParameters"] = {"org_id": org, "lead_id": lead}
    event["multiValueQueryStringParameters"] = {"org_id": [org], "lead_id": [lead]}
    result = invoke("RoutingFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])


def send(api, leads: list[str], first_sent: datetime, spacing: timedelta) -> list[dict[str, Any]]:
    """Each lead routed (GET /route's library call) and its message registered through POST /messages
    with the route result, sent one after the other from `first_sent`."""
    messages = []
    for i, lead in enumerate(leads):
        routed = experiments.route("acme", lead)
        messages.append(
            {
                "org_id": "acme",
                "campaign_id": "q4",
                "lead_id": lead,
                "lead_email": f"{lead}@example.com",
                "body": f"Hi {lead}, a short note.",
                "sent_at": (first_sent + i * spacing).isoformat(),
                "route": {
                    "model_registry_id": routed["model"]["model_registry_id"],
                    "experiment_id": routed["experiment_id"],
                    "arm": routed["arm"],
                },
            }
        )
    for start in range(0, len(messages), 500):
        status, body = api.post("/messages", {"messages": messages[start : start + 500]})
        assert status == 201, body
        for message, outcome in zip(messages[start : start + 500], body["outcomes"], strict=True):
            message["outcome_id"] = outcome["outcome_id"]
    return messages


def sendgrid_events(api, messages: list[dict[str, Any]], kind: str, after: timedelta) -> None:
    """Signed SendGrid events (`bounce` or `unsubscribe`), `after` each message was sent."""
    events = [
        {
            "email": m["lead_email"],
            "event": kind,
            "sg_event_id": f"{kind}-{m['outcome_id']}",
            "timestamp": int((datetime.fromisoformat(m["sent_at"]) + after).timestamp()),
            "outcome_id": m["outcome_id"],
            **({"type": "bounce", "reason": "550 5.1.1 user unknown", "status": "5.1.1"} if kind == "bounce" else {}),
        }
        for m in messages
    ]
    body = sendgrid_body(events)
    status, result = api.post("/webhooks/sendgrid", body=body, headers=sendgrid_headers(body))
    assert status == 200, result


def evaluate() -> dict[str, Any]:
    return invoke(
        "ExperimentEvaluatorFunction", load_event("experiment_evaluator_schedule.json"), ROOT / "template.yaml"
    )


def registry(db) -> dict[str, dict[str, Any]]:
    return {r["model_id"]: r for r in db.execute("SELECT * FROM model_registry")}


def test_routing_is_sticky_and_follows_the_split(db, models) -> None:
    arms = [route("acme", f"lead-{i}")["arm"] for i in range(400)]
    assert 20 <= arms.count("challenger") <= 65  # ~10 % canary
    first = route("acme", "lead-7")
    assert route("acme", "lead-7") == first
    assert first["experiment_id"] == models["experiment_id"]
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE segment = 1").fetchone()["n"] == 400


def test_concurrent_first_calls_record_one_assignment(db, db_url, models) -> None:
    """Eight connections assign the same lead at once, each wanting another arm: one row, one arm."""
    import psycopg
    from psycopg.rows import dict_row

    from flywheel.dal import experiments as experiments_dal

    results: list[str | None] = []
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait()
            results.append(
                experiments_dal.assign(
                    conn,
                    models["experiment_id"],
                    "acme",
                    "lead-race",
                    "challenger" if i % 2 else "champion",
                    42,
                    "canary",
                    1,
                )
            )

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE lead_id = 'lead-race'").fetchone()["n"] == 1


def test_without_history_the_deploy_answer_warns(db, models) -> None:
    assert models["experiment"]["plan"]["source"] == "configured"
    assert any("volume unknown" in w for w in models["warnings"])
    row = db.execute("SELECT warnings, plan, canary_sample FROM experiments").fetchone()
    assert (
        row["warnings"] == models["warnings"] and row["canary_sample"] == models["experiment"]["plan"]["canary_sample"]
    )


def test_the_plan_uses_the_real_weekly_volume_and_baseline(db, api) -> None:
    """Six weeks of history, 1,500 new leads a week, 2 % positive replies: the plan measures both and
    tells at deploy time that a 10 % lift cannot be detected in 56 days."""
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, replied_at,
                                              reply_category, bounced_at)
                  SELECT 'acme', 'h-' || i, 'c', 'lead-' || i, 'hello',
                         now() - make_interval(mins => i * 40),
                         CASE WHEN i % 50 = 0 THEN now() - make_interval(mins => i * 40) + interval '2 days' END,
                         CASE WHEN i % 50 = 0 THEN 'interested' END,
                         CASE WHEN i % 100 = 7 THEN now() - make_interval(mins => i * 40) + interval '1 hour' END
                    FROM generate_series(1, 1512) AS i""")  # 6 weeks: one lead every 40 minutes
    insert_models(db)
    status, _ = api.post("/training/deploy/flywheel-v1.0.0", {"reason": "first model"})
    assert status == 200
    status, deployed = api.post(
        "/training/deploy/flywheel-v1.1.0", {"reason": "weekly run", "experiment_config": {"mde": 0.10}}
    )
    assert status == 200, deployed
    plan = deployed["experiment"]["plan"]
    assert plan["weekly_volume"] == pytest.approx(252, rel=0.02)  # 28 days of 36 leads a day
    assert plan["baselines"]["positive_reply"] == pytest.approx(0.02, rel=0.05)
    assert plan["baselines"]["bounce_1d"] == pytest.approx(0.01, rel=0.1)
    assert plan["source"] == "history" and plan["notes"] == []
    assert plan["baselines"]["bounce"] == pytest.approx(0.01, rel=0.1)  # the full windows are measured too
    assert plan["baselines"]["unsubscribe"] < TYPICAL_RATES["unsubscribe"]  # none in history: floored at one event
    assert plan["fits"] is False and "beyond the 56-day maximum" in deployed["warnings"][0]
    status, experiment = api.get(f"/experiments/{deployed['experiment_id']}")
    assert status == 200 and experiment["warnings"] == deployed["warnings"] and "salt" not in experiment
    history = db.execute("SELECT evidence FROM model_history WHERE action = 'experiment_started'").fetchone()
    assert history["evidence"]["plan"]["sequential_sample"] == plan["sequential_sample"]


def test_ten_days_of_history_measure_the_early_rates_only(db, api) -> None:
    """1,200 leads in the last ten days: enough for the 1-day guardrail rates and the volume, none
    with a closed 14-day window yet; the plan says which figures are measured and which are not."""
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, bounced_at)
                  SELECT 'acme', 'h-' || i, 'c', 'lead-' || i, 'hello', now() - make_interval(mins => i * 12),
                         CASE WHEN i % 50 = 7 THEN now() - make_interval(mins => i * 12) + interval '1 hour' END
                    FROM generate_series(1, 1200) AS i""")
    insert_models(db)
    assert api.post("/training/deploy/flywheel-v1.0.0", {"reason": "first model"})[0] == 200
    status, deployed = api.post("/training/deploy/flywheel-v1.1.0", {"reason": "weekly run"})
    plan = deployed["experiment"]["plan"]
    assert (
        status == 200 and plan["source"] == "mixed" and plan["baselines"]["bounce_1d"] == pytest.approx(0.02, rel=0.1)
    )
    assert len(plan["notes"]) == 1 and "closed 14-day window" in plan["notes"][0]
    assert plan["baselines"]["bounce"] == TYPICAL_RATES["bounce"]


def test_a_harmful_challenger_is_rolled_back_in_the_canary(db, api, models, monkeypatch) -> None:
    """Messages sent over the canary's first day (after the experiment started); a third of the
    challenger's leads bounce within the hour and a tenth unsubscribe (SendGrid, signed); the
    champion's bounce 1.5 %. On day 3, the 1-day windows have closed and settled (26 h for late
    webhook deliveries): clear harm, rolled back."""
    configure(monkeypatch)
    started = started_days_ago(db, 3.2)
    sent = send(api, [f"lead-{i:04d}" for i in range(2000)], started + timedelta(minutes=5), timedelta(seconds=40))
    challenger = [m for m in sent if m["route"]["arm"] == "challenger"]
    champion = [m for m in sent if m["route"]["arm"] == "champion"]
    assert 150 < len(challenger) < 260
    sendgrid_events(api, challenger[::3] + champion[::66], "bounce", timedelta(minutes=20))
    sendgrid_events(api, challenger[1::10], "unsubscribe", timedelta(hours=5))

    decision = evaluate()
    assert decision["action"] == "rollback" and decision["stage"] == "canary", decision
    assert decision["guardrails"]["bounce_1d"]["harm"] and decision["guardrails"]["bounce_1d"]["interval"][0] > 0
    assert decision["applied"]["withdrawn"] == "flywheel-v1.1.0"
    models_now = registry(db)
    assert models_now["flywheel-v1.1.0"]["status"] == "archived"
    assert (models_now["flywheel-v1.0.0"]["role"], float(models_now["flywheel-v1.0.0"]["traffic_percentage"])) == (
        "champion",
        100.0,
    )
    assert db.execute("SELECT status FROM experiments").fetchone()["status"] == "rolled_back"
    # the evaluation is kept with its snapshot and intervals
    status, history = api.get(f"/experiments/{models['experiment_id']}/evaluations?snapshots=true")
    assert status == 200 and [e["action"] for e in history["evaluations"]] == ["rollback"]
    assert history["evaluations"][0]["snapshot"]["segments"][0]["arms"]["challenger"]["bounce_1d"]["units"] == len(
        challenger
    )


def test_a_harmless_canary_advances_then_a_better_challenger_is_promoted(db, api, models, monkeypatch) -> None:
    configure(monkeypatch)
    started = started_days_ago(db, 20)
    db.execute("UPDATE experiments SET canary_sample = 500")  # what the plan asks of this canary
    canary = send(api, [f"lead-{i:04d}" for i in range(600)], started + timedelta(hours=1), timedelta(minutes=2))
    by_arm = {arm: [m for m in canary if m["route"]["arm"] == arm] for arm in ("champion", "challenger")}
    sendgrid_events(
        api, by_arm["champion"][::70] + by_arm["challenger"][::70], "bounce", timedelta(minutes=20)
    )  # 1.4 % in both arms
    # evaluated on day 3 of the canary (time as the evaluator sees it): 1-day windows closed and settled
    decision = experiments.evaluate(now=started + timedelta(days=3.2))
    assert decision["action"] == "advance", decision
    experiment = db.execute("SELECT * FROM experiments").fetchone()
    assert (experiment["stage"], float(experiment["allocation"]), experiment["segment"]) == ("ab", 0.5, 2)
    shares = {
        r["model_id"]: float(r["traffic_percentage"])
        for r in db.execute("SELECT model_id, traffic_percentage FROM model_registry WHERE status = 'deployed'")
    }
    assert shares == {"flywheel-v1.0.0": 50.0, "flywheel-v1.1.0": 50.0}
    experiments.forget_cache()
    before = {m["lead_id"]: m["route"]["arm"] for m in canary[:50]}
    assert all(experiments.route("acme", lead)["arm"] == arm for lead, arm in before.items())  # sticky

    # A/B: 600 new leads from day 3.2 on, the challenger's reply with interest 12 % vs 3 %
    db.execute("UPDATE experiments SET stage_started_at = %s, planned_sample = 1500", (started + timedelta(days=3.2),))
    send(api, [f"ab-{i:04d}" for i in range(600)], started + timedelta(days=3.3), timedelta(minutes=2))
    assert db.execute("SELECT count(*) AS n FROM assignments WHERE segment = 2").fetchone()["n"] == 600
    db.execute("""UPDATE outcome_labels SET replied_at = sent_at + interval '2 days', reply_category = 'interested'
                   WHERE lead_id LIKE 'ab-%' AND (abs(hashtext(lead_id)) % 100) <
                         CASE WHEN experiment_arm = 'challenger' THEN 12 ELSE 3 END""")
    decision = evaluate()
    # a few hundred leads per arm cannot show the guardrails non-inferior (1.4 % canary bounces on ~60
    # challenger leads; no spam report yet is no proof): no promotion until they are
    assert decision["action"] == "continue", decision
    assert not decision["guardrails"]["bounce_1d"]["non_inferior"] and "bounce_1d" in decision["reason"]
    # the A/B stage goes on: 30,000 more leads (written directly), the same bounce rate in both arms
    db.execute("""INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  SELECT experiment_id, 'acme', 'more-' || i, CASE WHEN i % 2 = 0 THEN 'challenger'
                         ELSE 'champion' END, 0, 'ab', 2 FROM experiments, generate_series(1, 30000) AS i""")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, experiment_id,
                                              experiment_arm, replied_at, reply_category, bounced_at)
                  SELECT 'acme', a.lead_id, 'q4', a.lead_id, 'hi', s.sent, a.experiment_id, a.arm,
                         CASE WHEN p THEN s.sent + interval '3 days' END, CASE WHEN p THEN 'interested' END,
                         CASE WHEN k % 70 = 3 THEN s.sent + interval '10 minutes' END
                    FROM assignments a
                   CROSS JOIN LATERAL (SELECT substr(a.lead_id, 6)::int AS k) n
                   CROSS JOIN LATERAL (SELECT e.stage_started_at + make_interval(secs => 3 * k) AS sent
                                         FROM experiments e) s
                   CROSS JOIN LATERAL (SELECT k % 100 < CASE WHEN a.arm = 'challenger' THEN 12 ELSE 3 END AS p) w
                   WHERE a.lead_id LIKE 'more-%'""")
    decision = evaluate()
    assert decision["action"] == "promote", decision
    assert decision["primary"]["segments"] == [2] and decision["primary"]["sequential_interval"][0] > 0
    assert all(g["non_inferior"] for g in decision["guardrails"].values())
    assert decision["applied"] == {
        "action": "promote",
        "promoted": "flywheel-v1.1.0",
        "archived": "flywheel-v1.0.0",
        "changed": True,
        "status": "promoted",
    }
    models_now = registry(db)
    assert (models_now["flywheel-v1.1.0"]["role"], float(models_now["flywheel-v1.1.0"]["traffic_percentage"])) == (
        "champion",
        100.0,
    )
    assert models_now["flywheel-v1.0.0"]["status"] == "archived"
    promoted = db.execute("SELECT * FROM model_history WHERE action = 'promoted'").fetchone()
    assert promoted["actor"] == "evaluator" and promoted["evidence"]["primary"]["lift"] > 0
    assert evaluate() == {
        "action": "none",
        "reason": "no experiment is running",
        "serving": {"retired": [], "restoring": [], "active": [], "failed": [], "errors": [], "busy": []},
    }
    actions = [r["action"] for r in db.execute("SELECT action FROM experiment_evaluations ORDER BY evaluation_id")]
    assert actions == ["advance", "continue", "promote"]


def test_promote_winner_changes_nothing_unless_it_promotes(db, api, models) -> None:
    """The A/B stage with 30,000 leads: the challenger's leads reply with interest 25 % vs 10 %, but a
    third of them bounce. promote-winner answers 409 with the rollback decision and changes
    nothing; without the bounces it promotes and answers 200 with what it did."""
    started = started_days_ago(db, 22)
    db.execute(
        "UPDATE experiments SET stage = 'ab', segment = 2, allocation = 0.5, canary_sample = 400, "
        "planned_sample = 400, stage_started_at = %s",
        (started + timedelta(days=3),),
    )
    db.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  SELECT %s, 'acme', 'lead-' || i, CASE WHEN i %% 2 = 0 THEN 'challenger' ELSE 'champion' END,
                         0, 'ab', 2 FROM generate_series(1, 30000) AS i""",
        (models["experiment_id"],),
    )
    status, body = api.post("/training/promote-winner", {})  # nobody has been messaged yet
    assert status == 409 and body["decision"]["action"] == "continue" and "nothing was changed" in body["message"]
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, experiment_id,
                                              experiment_arm, replied_at, reply_category, bounced_at)
                  SELECT 'acme', a.lead_id, 'c', a.lead_id, 'hi', s.sent, a.experiment_id, a.arm,
                         CASE WHEN w.positive THEN s.sent + interval '2 days' END,
                         CASE WHEN w.positive THEN 'interested' END,
                         CASE WHEN a.arm = 'challenger' AND k %% 3 = 0 THEN s.sent + interval '1 hour' END
                    FROM assignments a
                   CROSS JOIN LATERAL (SELECT substr(a.lead_id, 6)::int AS k) n
                   CROSS JOIN LATERAL (SELECT %s::timestamptz + interval '3 days' + make_interval(secs => 10 * k) AS sent) s
                   CROSS JOIN LATERAL (SELECT CASE WHEN a.arm = 'challenger' THEN k %% 8 = 0 ELSE k %% 20 = 1 END
                                              AS positive) w""",
        (started,),
    )
    before = (count(db, "model_history"), registry(db)["flywheel-v1.1.0"]["role"])
    status, body = api.post("/training/promote-winner", {})
    assert status == 409 and body["decision"]["action"] == "rollback", body
    assert body["decision"]["primary"]["sequential_interval"][0] > 0  # it wins the primary, and harms
    assert (count(db, "model_history"), registry(db)["flywheel-v1.1.0"]["role"]) == before
    assert count(db, "experiment_evaluations") == 0
    assert db.execute("SELECT status, last_decision FROM experiments").fetchone() == {
        "status": "running",
        "last_decision": None,
    }

    db.execute("UPDATE outcome_labels SET bounced_at = NULL")
    status, body = api.post("/training/promote-winner", {})
    assert status == 200, body
    assert body["action"] == "promote" and body["applied"]["promoted"] == "flywheel-v1.1.0"
    assert body["applied"]["archived"] == "flywheel-v1.0.0"
    assert registry(db)["flywheel-v1.1.0"]["role"] == "champion"
    status, body = api.post("/training/promote-winner", {})
    assert status == 404  # nothing is running any more; nothing changes
    assert count(db, "experiment_evaluations") == 1


def test_srm_holds_promotion_and_a_restart_is_the_way_out(db, api, models) -> None:
    db.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  SELECT %s, 'acme', 'lead-' || i, CASE WHEN i %% 5 = 0 THEN 'challenger' ELSE 'champion' END,
                         0, 'canary', 1 FROM generate_series(1, 2000) AS i""",
        (models["experiment_id"],),
    )
    decision = evaluate()  # 20 % in a 10 % canary
    assert decision["action"] == "hold" and decision["srm"]["alarm"] and decision["srm"]["p_value"] < 1e-6
    old_salt = db.execute("SELECT salt FROM experiments").fetchone()["salt"]
    status, body = api.post(f"/experiments/{models['experiment_id']}/restart", {"reason": "bot traffic filtered"})
    assert status == 200 and body["segment"] == 2 and body["discarded_segments"] == [1]
    experiment = db.execute("SELECT * FROM experiments").fetchone()
    assert experiment["salt"] != old_salt and experiment["stage"] == "canary"
    assert route("acme", "fresh-lead")["experiment_id"] == models["experiment_id"]
    assert db.execute("SELECT segment FROM assignments WHERE lead_id = 'fresh-lead'").fetchone()["segment"] == 2
    assert evaluate()["srm"]["alarm"] is False  # the new segment is checked on its own
    status, history = api.get(f"/experiments/{models['experiment_id']}/evaluations")
    assert [e["action"] for e in history["evaluations"]] == ["hold", "restart", "continue"]
    assert history["evaluations"][1]["reason"] == "bot traffic filtered"
    assert (
        db.execute("SELECT count(*) AS n FROM model_history WHERE action = 'experiment_stage_restarted'").fetchone()[
            "n"
        ]
        == 1
    )
    status, _ = api.post("/experiments/exp-nope/restart", {"reason": "typo"})
    assert status == 404


def _evaluate_in_process(url: str, start: Any, now: str, out: Any, only: str | None = None) -> None:
    import os

    from flywheel.errors import Conflict
    from flywheel.services import experiments as service

    assert os.environ["DATABASE_URL"] == url
    start.wait()
    try:
        out.put(service.evaluate(actor=f"process-{os.getpid()}", now=datetime.fromisoformat(now), only=only)["action"])
    except NotFound:
        out.put("none")
    except Conflict as exc:  # promote-winner: the decision, nothing changed
        out.put(f"refused {exc.details['decision']['action']}")


def test_concurrent_evaluations_roll_back_once(db, db_url, models) -> None:
    """Four processes evaluate a harmful canary at once, and a fifth asks promote-winner's question
    (apply only a promotion): one evaluator rolls back, the others find nothing running, and
    promote-winner either finds nothing running or is refused with the rollback decision. The
    champion is never demoted by a second rollback."""
    started = started_days_ago(db, 3)
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  SELECT %s, 'acme', 'lead-' || i, CASE WHEN i %% 10 = 0 THEN 'challenger' ELSE 'champion' END,
                         0, 'canary', 1 FROM generate_series(1, 3000) AS i""",
        (models["experiment_id"],),
    )
    # one message every 10 seconds from the first hour on; each challenger lead bounces 20 minutes later
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, experiment_id,
                                              experiment_arm, bounced_at)
                  SELECT 'acme', a.lead_id, 'c', a.lead_id, 'hi', s.sent, a.experiment_id, a.arm,
                         CASE WHEN a.arm = 'challenger' AND a.lead_id LIKE '%%0' THEN s.sent + interval '20 minutes' END
                    FROM assignments a
                   CROSS JOIN LATERAL (SELECT %s::timestamptz + interval '1 hour'
                                              + make_interval(secs => 10 * substr(a.lead_id, 6)::int) AS sent) s""",
        (started,),
    )
    close_connection()  # the children open their own connections
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    now = datetime.now(UTC).isoformat()
    workers = [ctx.Process(target=_evaluate_in_process, args=(db_url, start, now, out)) for _ in range(4)]
    workers.append(ctx.Process(target=_evaluate_in_process, args=(db_url, start, now, out, "promote")))
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(60)
    results = sorted(out.get(timeout=5) for _ in workers)
    assert results in (
        ["none", "none", "none", "none", "rollback"],
        ["none", "none", "none", "refused rollback", "rollback"],
    ), results
    history = [r["action"] for r in db.execute("SELECT action FROM model_history ORDER BY history_id")]
    assert history.count("rolled_back") == 1 and "restored_as_champion" not in history
    assert registry(db)["flywheel-v1.0.0"]["role"] == "champion"
    assert count(db, "experiment_evaluations") == 1


def test_a_second_challenger_waits_for_the_running_experiment(db, api, models) -> None:
    db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
                  VALUES ('flywheel-v1.2.0', 'v1.2.0', 1, 2, 0, 'ready', 'bedrock', 'amazon.nova-micro-v1:0:128k')""")
    before = (count(db, "model_history"), count(db, "experiments"))
    status, body = api.post("/training/deploy/flywheel-v1.2.0", {"reason": "weekly run"})
    assert status == 409 and "already deployed" in body["message"]
    assert (count(db, "model_history"), count(db, "experiments")) == before
    assert registry(db)["flywheel-v1.2.0"]["status"] == "ready"


def test_rollback_and_promotion_are_idempotent(db, api, models) -> None:
    status, body = api.post("/training/rollback", {"reason": "bad copy", "model_id": "flywheel-v1.0.0"})
    assert status == 409  # the champion, while a challenger runs: the challenger goes first
    status, first = api.post("/training/rollback", {"reason": "bad copy", "model_id": "flywheel-v1.1.0"})
    assert status == 200 and first["rolled_back"] == "flywheel-v1.1.0" and first["changed"]
    status, again = api.post("/training/rollback", {"reason": "bad copy", "model_id": "flywheel-v1.1.0"})
    assert status == 200 and again["changed"] is False
    assert registry(db)["flywheel-v1.0.0"]["role"] == "champion"
    assert db.execute("SELECT status FROM experiments").fetchone()["status"] == "rolled_back"
    manual = db.execute("SELECT action, reason, applied FROM experiment_evaluations").fetchall()
    assert manual == [{"action": "manual_rolled_back", "reason": "bad copy", "applied": True}]
    status, body = api.post("/training/archive/flywheel-v1.0.0", {"reason": "cleanup"})
    assert status == 409  # the champion leaves by promotion or rollback only
    status, body = api.post("/training/archive/flywheel-v1.1.0", {"reason": "cleanup"})
    assert status == 200 and body["changed"] is False
    db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
                  VALUES ('flywheel-v1.2.0', 'v1.2.0', 1, 2, 0, 'ready', 'bedrock', 'amazon.nova-micro-v1:0:128k')""")
    status, body = api.post("/training/archive/flywheel-v1.2.0", {"reason": "superseded"})
    assert status == 200 and body["changed"] and registry(db)["flywheel-v1.2.0"]["status"] == "archived"
    assert api.post("/training/archive/nope", {"reason": "cleanup"})[0] == 404


def test_leaderboard_and_strategies(db, models) -> None:
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at,
                                              model_registry_id, replied_at, lead_industry, framework, tone)
                  SELECT 'acme', 'k-' || i, 'c1', 'lead-' || i, 'hello', now() - interval '3 days',
                         CASE WHEN i % 2 = 0 THEN 'flywheel-v1.0.0' ELSE 'flywheel-v1.1.0' END,
                         CASE WHEN i % 20 = 0 THEN now() - interval '2 days' END, 'fintech', 'PAS', 'warm'
                    FROM generate_series(1, 600) AS i""")
    board = experiments.leaderboard_with_intervals(training.leaderboard("acme"))
    champion = next(m for m in board if m["model_id"] == "flywheel-v1.0.0")
    assert champion["messages_sent"] == 300
    low, high = champion["reply_rate"]["interval"]
    assert low <= champion["reply_rate"]["rate"] <= high
    cells = experiments.strategies("acme", "industry", min_sample=30)
    assert cells["cells"][0]["segment"] == "fintech" and cells["cells"][0]["reply_rate"]["n"] == 600
    assert experiments.strategies("acme", "role", min_sample=30)["cells"] == []


def test_windows_run_from_the_leads_first_exposure(db, models) -> None:
    """A lead's windows start at its first message in the experiment: an unsubscribe a few hours
    after its second message, four days in, is outside the 1-day window (but inside the 14-day one);
    a message dated before the experiment started is no exposure, and its bounce does not count."""
    from flywheel.dal import experiments as experiments_dal

    started = started_days_ago(db, 20)
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme')")
    db.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  VALUES (%(e)s, 'acme', 'a', 'challenger', 0, 'canary', 1),
                         (%(e)s, 'acme', 'b', 'champion', 0, 'canary', 1)""",
        {"e": models["experiment_id"]},
    )
    rows = [
        ("a", 1, 0.1, None, None),
        ("a", 2, 4.0, 4.2, None),  # lead a: unsubscribes after its 2nd message
        ("b", 1, -1.0, None, -0.9),
        ("b", 2, 2.0, None, None),
    ]  # lead b: bounced before the experiment
    for lead, n, day, unsub, bounce in rows:
        db.execute(
            """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at,
                                                  experiment_id, experiment_arm, unsubscribed_at, bounced_at)
                      VALUES ('acme', %s, 'c', %s, 'hi', %s, %s, %s, %s, %s)""",
            (
                f"{lead}{n}",
                lead,
                started + timedelta(days=day),
                models["experiment_id"],
                "challenger" if lead == "a" else "champion",
                started + timedelta(days=unsub) if unsub else None,
                started + timedelta(days=bounce) if bounce else None,
            ),
        )
    windows = {"unsubscribe_1d": ("unsubscribe", 1), "unsubscribe": ("unsubscribe", 14), "bounce": ("bounce", 3)}
    counts = {
        r["arm"]: r
        for r in experiments_dal.segment_counts(db, models["experiment_id"], windows, started + timedelta(days=20))
    }
    assert (counts["challenger"]["unsubscribe_1d__units"], counts["challenger"]["unsubscribe_1d__conversions"]) == (
        1,
        0,
    )
    assert counts["challenger"]["unsubscribe__conversions"] == 1
    assert (counts["champion"]["bounce__units"], counts["champion"]["bounce__conversions"]) == (1, 0)
    # evaluated on day 2.5, lead b (first exposed on day 2) has no closed 1-day window yet
    early = {
        r["arm"]: r
        for r in experiments_dal.segment_counts(db, models["experiment_id"], windows, started + timedelta(days=2.5))
    }
    assert early["champion"]["unsubscribe_1d__units"] == 0 and early["challenger"]["unsubscribe_1d__units"] == 1


def test_a_counted_lead_never_flips_when_events_arrive_late(db, api, models, monkeypatch) -> None:
    """Every lead bounces 12 hours after its message, and SendGrid delivers each bounce 24 hours
    late (its retry window after our endpoint failed). Evaluated every three hours of the first
    three days, with each event delivered once its delivery time has passed, a lead counted for the
    1-day bounce guardrail always has its bounce: it is counted only once its window has closed and
    settled. (Counting it when its window closed made it a non-bounce for a day, then flip.)"""
    from flywheel.dal import experiments as experiments_dal

    configure(monkeypatch)
    started = started_days_ago(db, 3.5)
    sent = send(api, [f"lead-{i:03d}" for i in range(60)], started + timedelta(minutes=10), timedelta(minutes=3))
    pending = sorted(sent, key=lambda m: m["sent_at"])
    windows = experiments.metric_windows()
    settle = models["experiment"]["plan"]["settle_hours"]
    seen = 0
    for step in range(1, 25):
        now = started + timedelta(hours=3 * step)
        due = [m for m in pending if datetime.fromisoformat(m["sent_at"]) + timedelta(hours=36) <= now]
        if due:
            sendgrid_events(api, due, "bounce", timedelta(hours=12))
            pending = [m for m in pending if m not in due]
        rows = experiments_dal.segment_counts(db, models["experiment_id"], windows, now, settle)
        units = sum(r["bounce_1d__units"] for r in rows)
        assert sum(r["bounce_1d__conversions"] for r in rows) == units, (now - started, rows)
        seen = max(seen, units)
    assert seen == 60  # by day 3 every lead counts, with its bounce


def test_a_lift_the_plan_cannot_take_is_a_422_and_nothing_is_deployed(db, api) -> None:
    insert_models(db)
    assert api.post("/training/deploy/flywheel-v1.0.0", {"reason": "first model"})[0] == 200
    for canary, config in (
        (10, {"mde": 1.5, "baseline": 0.5}),  # a rate above 1
        (10, {"mde": 0.0001}),  # billions of leads
        (1e-300, {}),  # a canary no sample fills
        (10, {"min_runtime_days": 60, "max_runtime_days": 56}),  # it could never promote
        (10, {"canary_min_days": 10, "max_runtime_days": 7}),
    ):
        status, body = api.post(
            "/training/deploy/flywheel-v1.1.0",
            {"reason": "weekly run", "canary_percentage": canary, "experiment_config": config},
        )
        fields = [body.get("field")] + [f["field"] for f in body.get("fields", [])]
        assert status == 422 and body["error"] == "validation_error" and "experiment_config" in fields, body
    assert count(db, "experiments") == 0 and registry(db)["flywheel-v1.1.0"]["status"] == "ready"
    assert registry(db)["flywheel-v1.0.0"]["traffic_percentage"] == 100


def test_a_manual_rollback_during_an_evaluation_waits_instead_of_deadlocking(db, db_url, models) -> None:
    """An evaluation holds the running experiment's row and goes on to lock the champion's and
    challenger's rows (to roll back); an operator's rollback arrives meanwhile. Both take the
    experiment first, so the rollback waits and then finds the challenger already withdrawn. (When
    the manual path locked the models first, PostgreSQL killed one side with a deadlock: a 503.)"""
    import time

    import psycopg
    from psycopg.rows import dict_row

    outcome: dict[str, Any] = {}

    def operator() -> None:
        try:
            outcome["result"] = training.rollback(actor="ops", reason="reply rate dropped", model_id="flywheel-v1.1.0")
        except Exception as exc:  # noqa: BLE001 - the assertion reports it
            outcome["error"] = exc

    with psycopg.connect(db_url, row_factory=dict_row) as evaluator:
        evaluator.execute("SELECT * FROM experiments WHERE status = 'running' FOR UPDATE")
        thread = threading.Thread(target=operator)
        thread.start()
        time.sleep(0.5)  # the operator's transaction is now waiting on a lock
        evaluator.execute("SET LOCAL lock_timeout = '10s'")
        # the evaluator's next step, as models_dal.lock_roles takes it: it must not wait on the operator
        evaluator.execute("SELECT * FROM model_registry WHERE role IS NOT NULL ORDER BY role FOR UPDATE")
        evaluator.execute(
            "UPDATE model_registry SET role = NULL, status = 'archived', traffic_percentage = 0 "
            "WHERE role = 'challenger'"
        )
        evaluator.execute("UPDATE experiments SET status = 'rolled_back', ended_at = now() WHERE status = 'running'")
        evaluator.commit()
    thread.join(30)
    assert "error" not in outcome, outcome
    assert outcome["result"] == {"rolled_back": None, "champion": "flywheel-v1.0.0", "changed": False}
    assert count(db, "experiment_evaluations") == 0  # the operator found nothing left to end


def test_a_retried_rollback_never_demotes_the_champion(db, api) -> None:
    """v1.0.0, then v1.1.0 promoted, then v1.2.0 as challenger. A rollback without a model withdraws
    the challenger; its retry (the client timed out) changes nothing — it used to roll the champion
    back to v1.0.0. Restoring the previous champion names the champion, and its retry is a no-op."""
    insert_models(db)
    db.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider, base_model)
                  VALUES ('flywheel-v1.2.0', 'v1.2.0', 1, 2, 0, 'ready', 'bedrock', 'amazon.nova-micro-v1:0:128k')""")
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    training.deploy_model("flywheel-v1.1.0", canary_percentage=10, actor="test", reason="weekly run")
    training.promote("flywheel-v1.1.0", actor="test", reason="won its experiment")
    training.deploy_model("flywheel-v1.2.0", canary_percentage=10, actor="test", reason="weekly run")
    status, first = api.post("/training/rollback", {"reason": "bad copy"})
    assert status == 200 and first == {"rolled_back": "flywheel-v1.2.0", "champion": "flywheel-v1.1.0", "changed": True}
    status, retry = api.post("/training/rollback", {"reason": "bad copy"})
    assert status == 409 and "name the current champion" in retry["message"]
    assert registry(db)["flywheel-v1.1.0"]["role"] == "champion"
    for _ in range(2):
        status, undo = api.post("/training/rollback", {"reason": "reply rate dropped", "model_id": "flywheel-v1.1.0"})
        assert status == 200
    assert undo["changed"] is False and registry(db)["flywheel-v1.0.0"]["role"] == "champion"
    assert [
        r["action"]
        for r in db.execute(
            "SELECT action FROM model_history WHERE action IN "
            "('rolled_back', 'restored_as_champion') ORDER BY history_id"
        )
    ] == ["rolled_back", "rolled_back", "restored_as_champion"]

"""A realistic organisation for the report tests: two models in an experiment, a training run,
two campaigns of messages with their lifecycles, replies of every kind, orphans; and another
organisation whose numbers must never show in the first one's report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal.connection import close_connection
from flywheel.local.embedded import create_database
from flywheel.services import experiments, training
from flywheel.settings import reset_settings

# a canary small enough for a test (the demo's settings)
EXPERIMENT = {"mde": 0.5, "baseline": 0.03, "weekly_volume": 30_000, "canary_ratio": 4}
CATEGORIES = [
    "interested",
    "not_now",
    "objection",
    "meeting_request",
    "out_of_office",
    "question",
    "unsubscribe",
    "not_interested",
]

OUTCOMES_SQL = """
WITH a AS (
    SELECT lead_id, arm, row_number() OVER (ORDER BY lead_id) AS i
      FROM assignments WHERE experiment_id = %(exp)s AND org_id = %(org)s AND segment = %(segment)s),
r AS (
    SELECT *, %(first)s::timestamptz + (i * %(spacing)s) * interval '1 second' AS sent,
           (i * 37) %% 100 < 95 AS delivered,
           (i * 53) %% 100 < 40 AS opened,
           (i * 71) %% 100 < CASE WHEN arm = 'challenger' THEN 12 ELSE 9 END AS replied,
           -- the challenger's extra replies are all positive: a better model, no harm
           CASE WHEN (i * 71) %% 100 >= 9 THEN 'interested'
                ELSE (%(categories)s::text[])[1 + (i * 13) %% 8] END AS category
      FROM a),
s AS (
    SELECT *, replied AND i %% 41 <> 0 AS classified,
              replied AND category IN ('interested', 'meeting_request') AND i %% 2 = 0 AS meeting
      FROM r WHERE delivered OR NOT replied)
INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, body, framework, tone, lead_industry,
                            lead_role, sent_at, model_registry_id, experiment_id, experiment_arm, delivered_at,
                            first_opened_at, open_count, replied_at, reply_category, reply_classification_source,
                            meeting_booked_at, deal_status, deal_value, deal_closed_at, stage)
SELECT %(org)s, 'k-' || lead_id, CASE WHEN i %% 3 = 0 THEN 'spring-push' ELSE 'q4-outbound' END, lead_id,
       lead_id || '@prospect.example', 'Hi there', (ARRAY['PAS', 'AIDA', 'BAB'])[1 + i %% 3],
       (ARRAY['casual', 'professional'])[1 + (i / 3) %% 2], (ARRAY['fintech', 'saas'])[1 + i %% 2],
       (ARRAY['cfo', 'vp sales'])[1 + (i / 2) %% 2], sent,
       CASE WHEN arm = 'challenger' THEN %(challenger)s ELSE %(champion)s END, %(exp)s, arm,
       CASE WHEN delivered THEN sent + interval '1 minute' END,
       CASE WHEN delivered AND opened THEN sent + interval '2 hours' END, CASE WHEN delivered AND opened THEN 2 ELSE 0 END,
       CASE WHEN replied THEN sent + interval '1 day' END,
       CASE WHEN classified THEN category END,
       CASE WHEN classified THEN (CASE WHEN i %% 2 = 0 THEN 'fallback' ELSE 'llm' END) END,
       CASE WHEN meeting THEN sent + interval '3 days' END,
       CASE WHEN meeting AND i %% 3 = 0 THEN 'won' END, CASE WHEN meeting AND i %% 3 = 0 THEN 12000 END,
       CASE WHEN meeting AND i %% 3 = 0 THEN sent + interval '10 days' END, 'sent'
  FROM s
"""


def _model(db: Any, version: str, minor: int) -> None:
    db.execute(
        """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                              provider_model_id, base_model, run_id)
                  VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', %s, 'amazon.nova-micro-v1:0:128k',
                          (SELECT run_id FROM training_runs ORDER BY started_at DESC LIMIT 1))""",
        (f"flywheel-{version}", version, minor, f"arn:aws:bedrock:us-east-1:1:custom-model/{version}"),
    )


def _training_run(db: Any, started: datetime) -> None:
    history = [
        {"status": s, "at": (started + timedelta(seconds=t)).isoformat()}
        for s, t in (
            ("pending", 0),
            ("building", 2),
            ("uploading", 40),
            ("training", 55),
            ("registering", 3655),
            ("smoke_testing", 3660),
            ("succeeded", 3668),
        )
    ]
    manifest = {
        "counts": {"train": 171, "validation": 19, "candidates": 204},
        "by_label": {"positive": 190},
        "by_org": {"acme": 120, "globex": 60, "initech": 10},
        "redactions": {"email": 190, "phone": 38},
        "residual_scan": {"passed": True},
        "tokens": {
            "train": {"total_tokens": 61_000, "token_method": "tiktoken:o200k_base"},
            "validation": {"total_tokens": 6_800},
        },
        "cost_estimate": {"usd": 0.41, "billed_tokens": 183_000, "base_model": "amazon.nova-micro-v1:0:128k"},
    }
    db.execute(
        """INSERT INTO training_runs (scope, status, trigger, provider, base_model, method, manifest,
                                             status_history, started_at, updated_at, finished_at, dataset_hash)
                  VALUES ('global', 'succeeded', 'schedule', 'bedrock', 'amazon.nova-micro-v1:0:128k', 'supervised',
                          %s, %s, %s, %s, %s, 'abc')""",
        (
            json.dumps(manifest),
            json.dumps(history),
            started,
            started + timedelta(seconds=3668),
            started + timedelta(seconds=3668),
        ),
    )
    db.execute(
        """INSERT INTO training_runs (scope, status, trigger, provider, base_model, method, status_history,
                                             started_at, updated_at, finished_at, error)
                  VALUES ('global', 'insufficient_data', 'api', 'bedrock', 'amazon.nova-micro-v1:0:128k', 'supervised',
                          %s, %s, %s, %s, '30 examples available, 50 needed')""",
        (
            json.dumps(
                [
                    {"status": "pending", "at": (started - timedelta(days=7)).isoformat()},
                    {"status": "building", "at": (started - timedelta(days=7, seconds=-3)).isoformat()},
                    {"status": "insufficient_data", "at": (started - timedelta(days=7, seconds=-9)).isoformat()},
                ]
            ),
            started - timedelta(days=7),
            started - timedelta(days=7),
            started - timedelta(days=7),
        ),
    )


def _leads(db: Any, exp: str, org: str, segment: int, stage: str, n: int, challenger_every: int) -> None:
    """Leads assigned as GET /route records them (here one in `challenger_every` to the challenger)."""
    db.execute(
        """INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, segment)
                  SELECT %s, %s, %s || '-s' || %s || '-' || lpad(i::text, 4, '0'),
                         CASE WHEN i %% %s = 0 THEN 'challenger' ELSE 'champion' END, i %% 10000, %s, %s
                    FROM generate_series(1, %s) AS i""",
        (exp, org, org, segment, challenger_every, stage, segment, n),
    )


def seed_report_org(db: Any, leads: int = 2000) -> str:
    """The whole story in the database: a canary that advanced, an A/B stage evaluated daily;
    returns the experiment id."""
    now = datetime.now(UTC)
    started = now - timedelta(days=52)
    db.execute("INSERT INTO organizations (org_id, training_opt_in) VALUES ('acme', true), ('globex', true)")
    _training_run(db, now - timedelta(days=30))
    _model(db, "v1.0.0", 0)
    _model(db, "v1.1.0", 1)
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    deployed = training.deploy_model(
        "flywheel-v1.1.0", canary_percentage=10, actor="test", reason="weekly run", experiment_config=EXPERIMENT
    )
    exp = deployed["experiment_id"]
    db.execute("UPDATE experiments SET started_at = %s, stage_started_at = %s", (started, started))
    canary = int(db.execute("SELECT canary_sample FROM experiments").fetchone()["canary_sample"] * 1.1)
    stages = (
        ("canary", 1, {"acme": canary, "globex": 0}, 10, started + timedelta(hours=1), 20),
        ("ab", 2, {"acme": leads, "globex": 150}, 2, started + timedelta(days=4), 14 * 86400 // leads),
    )
    for stage, segment, sizes, every, first, spacing in stages:
        for org, n in sizes.items():
            if not n:
                continue
            _leads(db, exp, org, segment, stage, n, every)
            db.execute(
                OUTCOMES_SQL,
                {
                    "exp": exp,
                    "org": org,
                    "segment": segment,
                    "categories": CATEGORIES,
                    "first": first,
                    "spacing": spacing * (1 if org == "acme" else leads // 150),
                    "champion": "flywheel-v1.0.0",
                    "challenger": "flywheel-v1.1.0",
                },
            )
        for day in (1, 2, 3, 4) if stage == "canary" else ():  # the daily looks until the canary advances
            if db.execute("SELECT stage FROM experiments").fetchone()["stage"] == "canary":  # 1-day windows + settling
                experiments.evaluate(actor="evaluator", now=started + timedelta(days=day))
        assert db.execute("SELECT stage FROM experiments").fetchone()["stage"] == "ab"
    for day in range(18, 31):  # the A/B stage's daily looks once reply windows close
        if db.execute("SELECT status FROM experiments").fetchone()["status"] != "running":
            break
        experiments.evaluate(actor="evaluator", now=started + timedelta(days=day))
    # older messages from the default model, before Flywheel trained anything
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, framework, tone,
                                              model_id, sent_at, delivered_at, stage)
                  SELECT 'acme', 'old-' || i, 'q4-outbound', 'old-' || i, 'Hello', 'PAS', 'casual',
                         'gpt-4o-mini-2024-07-18', now() - interval '60 days', now() - interval '60 days', 'delivered'
                    FROM generate_series(1, 40) AS i""")
    # provider events still waiting for their message
    db.execute("""INSERT INTO outcome_events (provider, event_key, event_type, occurred_at, status, payload,
                                              match_email, received_at, org_id)
                  VALUES ('sendgrid', 'orph-1', 'open', now(), 'orphan', '{}', 'x@y.example', now() - interval '2 days',
                          'acme'),
                         ('sendgrid_inbound', 'orph-2', 'reply', now(), 'orphan', '{}', 'z@y.example', now(), NULL),
                         ('sendgrid', 'orph-3', 'open', now(), 'orphan', '{}', 'g@y.example', now(), 'globex')""")
    # malformed events kept aside: one of acme's, one of no known organisation, one of globex's
    db.execute("""INSERT INTO quarantined_events (provider, org_id, reason, raw, digest)
                  VALUES ('hubspot', 'acme', 'timestamp out of range', '{}', 'd1'),
                         ('sendgrid', NULL, 'no outcome id', '{}', 'd2'),
                         ('pipedrive', 'globex', 'amount not a number', '{}', 'd3')""")
    experiments.forget_cache()
    return exp


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


@pytest.fixture(scope="module")
def seeded_template(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """The story seeded once per test module, into a database each test clones."""
    name = f"flywheel_rpt_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_admin_url, name, template=template_db)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        patch.delenv("DATABASE_SECRET_ARN", raising=False)
        reset_settings()
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            seed_report_org(conn)
        close_connection()  # a template database must have no connection when it is cloned
    reset_settings()
    yield name
    _drop(pg_admin_url, name)


@pytest.fixture
def seeded_db_url(pg_admin_url: str, seeded_template: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Use as `db_url` in a test module: a fresh copy of the seeded story for each test."""
    name = f"flywheel_t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_admin_url, name, template=seeded_template)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    reset_settings()
    yield url
    close_connection()
    reset_settings()
    _drop(pg_admin_url, name)

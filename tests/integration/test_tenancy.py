"""Tenancy: every read route of the OpenAPI document, called for one organisation, returns none of
another organisation's rows (outcomes, events, suppressions, quarantined events, strategies,
leaderboard counts), and the platform routes (models, runs, experiments and their evaluations, with
both organisations' leads assigned) name no organisation at all."""

from __future__ import annotations

import json

import boto3
import pytest
import requests

from flywheel.local.aws import local_aws
from flywheel.local.openapi import build_document
from flywheel.services import experiments, reports, training
from flywheel.settings import reset_settings
from tests.conftest import ROOT, ApiClient
from tests.integration.test_experiments import insert_models
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers

ORGS = ("acme", "globex")


def message(org: str, i: int) -> dict:
    return {
        "org_id": org,
        "campaign_id": f"{org}-camp",
        "lead_id": f"{org}-lead-{i}",
        "lead_email": f"lead{i}@{org}-customer.example",
        "body": f"{org} secret pitch {i}",
        "framework": "PAS",
        "tone": "warm",
        "lead": {"industry": "fintech", "role": "cfo"},
        "sent_at": "2026-11-20T09:00:00Z",
        "provider_message_id": f"{org}{i}.dfd",
        "route": {"model_registry_id": "flywheel-v1.0.0"},
        "idempotency_key": f"{org}-{i}",
    }


@pytest.fixture
def two_orgs(api: ApiClient, db, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    configure(monkeypatch)
    # a champion, a challenger and its experiment, with leads of both organisations assigned
    insert_models(db)
    training.deploy_model("flywheel-v1.0.0", canary_percentage=10, actor="test", reason="first model")
    training.deploy_model("flywheel-v1.1.0", canary_percentage=50, actor="test", reason="weekly run")
    experiments.forget_cache()
    for org in ORGS:
        for i in range(40):
            status, _ = api.get(f"/route?org_id={org}&lead_id={org}-lead-{i}")
            assert status == 200
    db.execute("""INSERT INTO training_runs (scope, status, manifest, job_id)
                  VALUES ('global', 'succeeded', '{"by_org": {"acme": 40, "globex": 40}, "counts": {}}', 'job-1')""")
    ids: dict[str, list[str]] = {}
    for org in ORGS:
        status, body = api.post("/messages", {"messages": [message(org, i) for i in range(40)]})
        assert status == 201, body
        ids[org] = [o["outcome_id"] for o in body["outcomes"]]
        events = [
            {
                "email": f"lead{i}@{org}-customer.example",
                "timestamp": 1795424400 + i,
                "event": kind,
                "sg_event_id": f"{org}-{kind}-{i}",
                "sg_message_id": f"{org}{i}.dfd.filter1.0",
                "org_id": org,
            }
            for i in range(40)
            for kind in ("delivered", "unsubscribe")
        ]
        events.append(
            {
                "event": "open",
                "timestamp": 10**12,
                "sg_event_id": f"{org}-bad",
                "org_id": org,
                "email": f"quarantined@{org}-customer.example",
            }
        )
        raw = sendgrid_body(events)
        status, body = api.post("/webhooks/sendgrid", body=raw, headers=sendgrid_headers(raw))
        assert status == 200 and body["quarantined"] == 1, body
    experiments.evaluate(actor="test")  # an evaluation with its snapshot
    return ids


@pytest.fixture
def published(two_orgs, monkeypatch: pytest.MonkeyPatch):
    """Both organisations' reports, written as ReportFunction writes them (S3 emulated)."""
    with local_aws(ROOT / "template.yaml"):
        boto3.client("s3").create_bucket(Bucket="tenancy-reports")
        monkeypatch.setenv("TRAINING_BUCKET", "tenancy-reports")
        reset_settings()
        assert reports.publish(list(ORGS))["written"] == list(ORGS)
        yield two_orgs
    reset_settings()


def test_no_read_route_returns_another_organisations_rows(api: ApiClient, published, db) -> None:
    two_orgs = published
    document = build_document(ROOT / "template.yaml")
    reads = [path for path, ops in document["paths"].items() if "get" in ops]
    assert len(reads) >= 10
    foreign = [*two_orgs["globex"], "globex", "@globex-customer.example", "globex secret pitch"]
    own = two_orgs["acme"][0]
    seen_own_rows = 0
    for path in reads:
        params = {p["name"]: p for p in document["paths"][path]["get"].get("parameters", [])}
        org_scoped = "org_id" in params and params["org_id"]["in"] == "query"
        query = "?org_id=acme" if org_scoped else ""
        experiment = db.execute("SELECT experiment_id FROM experiments").fetchone()["experiment_id"]
        concrete = (
            path.replace("{outcome_id}", own)
            .replace("{run_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{job_id}", "job-1")
            .replace("{experiment_id}", experiment)
            .replace("{campaign_id}", "acme-camp")
        )
        if path.endswith("/evaluations"):
            query = "?snapshots=true"
        if path == "/route":
            query += "&lead_id=acme-lead-0"
        status, body = api.get(concrete + query)
        assert status < 500 or (status == 503 and path == "/training/status/{job_id}"), (path, status, body)
        text = json.dumps(body)
        assert not [marker for marker in foreign if marker in text], (path, text[:500])
        seen_own_rows += text.count("acme-customer.example") + text.count(own)
        if path == "/reports/latest":  # the report behind the link, too
            page = requests.get(body["url"], timeout=10).text
            assert "Flywheel report · acme" in page and not [m for m in foreign if m in page]
        if not org_scoped:  # platform routes: models and runs, no organisation's data
            assert "acme" not in text, (path, text[:300])
    assert seen_own_rows > 40  # the routes did return the caller's own rows
    # the experiment routes had something to show: both organisations' leads, counted together
    experiment = db.execute("SELECT experiment_id FROM experiments").fetchone()["experiment_id"]
    status, body = api.get(f"/experiments/{experiment}/evaluations?snapshots=true")
    segments = body["evaluations"][0]["snapshot"]["segments"]
    assert status == 200 and sum(n for seg in segments for n in seg["assigned"].values()) == 80, body

    # asking for another organisation's outcome by id is a 404, exactly like an unknown one
    status, body = api.get(f"/messages/{two_orgs['globex'][0]}?org_id=acme")
    assert status == 404 and body["error"] == "not_found"
    status, _ = api.get(f"/messages/{two_orgs['acme'][0]}")
    assert status == 422  # org_id is required
    # every org-scoped route requires org_id
    for path in (
        "/suppressions",
        "/insights/strategies",
        "/training/leaderboard",
        "/training/stats",
        "/quarantine",
        "/reports/latest",
        "/campaigns/acme-camp/performance",
    ):
        assert api.get(path)[0] == 422, path
        # an org_id PostgreSQL cannot hold (NUL) is a 4xx, never a 500 (it was on /suppressions)
        joiner = "&" if "?" in path else "?"
        assert api.get(f"{path}{joiner}org_id=%00")[0] in (404, 422), path
    assert api.get("/campaigns/%00/performance?org_id=acme")[0] == 422
    run = db.execute("SELECT run_id FROM training_runs").fetchone()["run_id"]
    status, body = api.get(f"/training/runs/{run}")
    assert status == 200 and "by_org" not in body["manifest"] and "globex" not in json.dumps(body)

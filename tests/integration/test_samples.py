"""Every file in events/ runs as shipped on a fresh local stack, with the result its name says.

The samples run in the order the README gives, through `LocalStack.run` (what `flywheel invoke`
does: webhook events authenticated with the local secrets, then whatever the invocation set in
motion — queued replies, a training run — carried to its end), after `flywheel seed`. The
database starts empty, so the migration sample applies every migration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.rows import dict_row

from flywheel.dal.connection import close_connection
from flywheel.local.embedded import create_database
from flywheel.local.seed import DANA, LEE, SAMPLE_OUTCOME_IDS, seed
from flywheel.local.stack import LocalStack
from flywheel.services.experiments import forget_cache
from flywheel.settings import reset_settings
from tests.conftest import EVENTS, ROOT, load_event

PRIYA, OMAR = SAMPLE_OUTCOME_IDS["send-batch-1"], SAMPLE_OUTCOME_IDS["send-batch-2"]
BUCKET = "flywheel-local-trainingbucket"  # the local stack's TrainingBucket
Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def empty_database(pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Conn]:
    name = f"flywheel_samples_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_admin_url, name)
    for key in (
        "WEBHOOK_SECRETS_JSON",
        "WEBHOOK_SECRETS_ARN",
        "PROVIDER_ORGS_JSON",
        "INBOUND_PARSE_DOMAINS",
        "REPLIES_QUEUE_URL",
        "TRAINING_BUCKET",
        "TRAINING_STATE_MACHINE_ARN",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    reset_settings()
    forget_cache()
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
    close_connection()
    reset_settings()
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


def body(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def outcome(db: Conn, outcome_id: uuid.UUID) -> dict[str, Any]:
    row = db.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()
    assert row is not None
    return row


def journal(state: Path) -> list[dict[str, Any]]:
    path = state / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def report_written(org_id: str) -> bool:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"reports/{org_id}/latest.html")
    return listed.get("KeyCount", 0) == 1


def clear_reports() -> None:
    s3 = boto3.client("s3")
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])


Check = Callable[[Any, Conn, Path], None]
SAMPLES: list[tuple[str, str, Check]] = []


def sample(name: str, target: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        SAMPLES.append((name, target, check))
        return check

    return register


@sample("migrate_custom_resource_create.json", "MigrateFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # CloudFormation's request on a deploy: nothing left to apply; the local CloudFormation took the
    # SUCCESS answer (the run fails otherwise)
    assert result == {"applied": []}


@sample("messages_register_single.json", "MessagesFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # seeded under its fixed id: registering it again is idempotent
    assert result["statusCode"] == 200 and body(result)["outcomes"] == [{"outcome_id": str(DANA), "created": False}]


@sample("messages_register_batch.json", "MessagesFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert [o["outcome_id"] for o in body(result)["outcomes"]] == [str(LEE), str(PRIYA), str(OMAR)]


@sample("messages_register_invalid.json", "MessagesFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 422 and body(result)["fields"][0]["field"] == "messages.1.lead_email"


@sample("messages_get.json", "MessagesFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["outcome_id"] == str(DANA) and body(result)["stage"] == "sent"


@sample("webhooks_sendgrid_events.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200
    expected = {"received": 8, "stored": 8, "duplicates": 0, "applied": 6, "orphans": 1, "ignored": 1}
    assert {k: body(result)[k] for k in expected} == expected
    dana, lee = outcome(db, DANA), outcome(db, LEE)
    assert dana["stage"] == "clicked" and dana["open_count"] == 1 and dana["click_count"] == 1
    assert lee["stage"] == "bounced" and lee["bounce_type"] == "blocked"


@sample("webhooks_sendgrid_inbound_parsed.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["outcome_id"] == str(DANA)
    # queued on RepliesQueue, delivered to ClassifierFunction, which told the event bus
    assert outcome(db, DANA)["reply_category"] == "meeting_request"
    [event] = [e for e in journal(state) if e["detail"].get("outcome_id") == str(DANA)]
    assert event["detail-type"] == "ReplyNeedsAttention" and event["source"] == "flywheel.replies"


@sample("webhooks_sendgrid_inbound_raw.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["outcome_id"] == str(LEE)  # by In-Reply-To
    assert outcome(db, LEE)["reply_category"] == "objection"


@sample("classifier_replies_batch.json", "ClassifierFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # the malformed record fails alone; Dana's reply was already classified (one classification per reply)
    assert result == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}


@sample("outcomes_correction_post.json", "MessagesFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # an operator overrules the classifier on Dana's reply: an event, derived like the others
    assert result["statusCode"] == 201 and body(result)["correction_id"] == "corr-2026-11-27-0001"
    assert outcome(db, DANA)["reply_category"] == "not_interested"


@sample("replies_post.json", "RepliesApiFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # an external id names a reply within its outcome (the sample's)
    key = "api_linkedin:1d3c5e7a-0b2f-4c6e-8a1d-3f5b7c9e0a12:li-msg-88121"
    assert result["statusCode"] == 202 and body(result)["reply_key"] == key
    classified = db.execute(
        "SELECT count(*) AS n FROM outcome_events WHERE provider = 'classifier' AND event_key = %s", (key,)
    ).fetchone()
    assert classified is not None and classified["n"] == 1


@sample("webhooks_calendly_invitee_created.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["applied"] == 1
    assert outcome(db, DANA)["meeting_booked_at"] is not None


@sample("webhooks_hubspot_deal_won.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # the deal's contact comes from the local HubSpot API
    assert result["statusCode"] == 200 and body(result)["applied"] == 1
    dana = outcome(db, DANA)
    assert dana["deal_status"] == "won" and float(dana["deal_value"]) == 42000


@sample("webhooks_pipedrive_deal_won.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["applied"] == 1


@sample("webhooks_salesforce_opportunity_won.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and "<Ack>true</Ack>" in result["body"]
    priya = outcome(db, PRIYA)
    assert priya["deal_status"] == "won" and float(priya["deal_value"]) == 64000


@sample("webhooks_crm_deal_won.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200
    omar = outcome(db, OMAR)
    assert omar["deal_status"] == "won" and float(omar["deal_value"]) == 18000 and omar["deal_currency"] == "EUR"


@sample("webhooks_crm_meeting_booked.json", "WebhooksFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and outcome(db, OMAR)["meeting_booked_at"] is not None


@sample("suppressions_get.json", "RepliesApiFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["org_id"] == "acme" and body(result)["count"] == 0


@sample("meetings_refresh_schedule.json", "MeetingsRefreshFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert isinstance(result["refreshed"], int)


@sample("retention_schedule.json", "RetentionFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # the seeded history is recent: nothing is due yet, one batch looked and the backlog is done
    assert result["removed"] == 0 and result["batches"] == 1 and result["done"] is True
    assert result["dataset_cache"]["removed"] == 0 and result["dataset_cache"]["done"] is True


@sample("report_rollup_schedule.json", "ReportRollupFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    state_row = db.execute("SELECT rolled_before FROM report_rollup_state").fetchone()
    assert state_row is not None and result["days_rolled"] > 0 and result["done"]  # the first run counts the history


@sample("training_weekly_schedule.json", "WeeklyTrainingStateMachine")
def _(result: Any, db: Conn, state: Path) -> None:
    # the state machine's input: it runs locally and trains on the seeded, opted-in history
    assert result["status"] == "SUCCEEDED"
    champion = db.execute("SELECT * FROM model_registry WHERE role = 'champion'").fetchone()
    assert champion is not None and champion["status"] == "deployed"
    # Step Functions told the bus, whose rule ran ReportFunction: acme's report is in the bucket
    [finished] = [
        e
        for e in journal(state)
        if e["detail-type"] == "Step Functions Execution Status Change" and e["detail"]["status"] == "SUCCEEDED"
    ]
    assert finished["source"] == "aws.states" and finished["detail"]["executionArn"] == result["executionArn"]
    assert report_written("acme")


@sample("training_run_post.json", "TrainingApiFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 202
    run = db.execute("SELECT * FROM training_runs WHERE run_id = %s", (body(result)["run_id"],)).fetchone()
    assert run is not None and run["status"] == "succeeded"  # the state machine ran to its end
    challenger = db.execute("SELECT * FROM model_registry WHERE role = 'challenger'").fetchone()
    assert challenger is not None and float(challenger["traffic_percentage"]) == 10


@sample("route_get.json", "RoutingFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    routed = body(result)
    assert result["statusCode"] == 200 and routed["arm"] in ("champion", "challenger") and routed["experiment_id"]


@sample("experiment_evaluator_schedule.json", "ExperimentEvaluatorFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["stage"] == "canary" and result["action"] == "continue"  # the canary has just started
    assert [e["detail-type"] for e in journal(state)][-1] == "ExperimentEvaluated"
    assert report_written("acme")  # ReportFunction ran on the evaluation too
    clear_reports()  # for the report samples below


@sample("report_training_finished.json", "ReportFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["written"] == ["acme"] and result["failed"] == {} and report_written("acme")


@sample("report_experiment_evaluated.json", "ReportFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["written"] == ["acme"] and result["failed"] == {}


@sample("reports_latest_get.json", "ReportsApiFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    assert result["statusCode"] == 200 and body(result)["org_id"] == "acme"
    assert "/reports/acme/latest.html?" in body(result)["url"]


@sample("campaign_performance_get.json", "ReportsApiFunction")
def _(result: Any, db: Conn, state: Path) -> None:
    # the sample messages' campaign
    assert result["statusCode"] == 200 and body(result)["messages"] == 4


def test_every_sample_runs_as_shipped(empty_database: Conn, tmp_path: Path) -> None:
    db = empty_database
    migrations = sorted(p.name[:4] for p in (ROOT / "sql").glob("[0-9]*.sql"))
    with LocalStack(ROOT, state=tmp_path, log=lambda line: None) as stack:
        result, failed = stack.run("MigrateFunction", load_event("migrate.json"))
        assert not failed and result == {"applied": migrations}  # the database was empty
        seed(ROOT)
        for name, target, check in SAMPLES:
            result, failed = stack.run(target, load_event(name))
            assert not failed, (name, result)
            check(result, db, tmp_path)
    assert {"migrate.json", *(name for name, _, _ in SAMPLES)} == {p.name for p in EVENTS.glob("*.json")}

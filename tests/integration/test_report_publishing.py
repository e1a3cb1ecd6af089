"""Where reports come from in a deployed stack: ReportFunction after training and evaluator runs,
the evaluator's ExperimentEvaluated event, and GET /reports/latest's short-lived link."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto.events.models import EventPattern

from flywheel.clients.aws import client
from flywheel.errors import ReportFailed
from flywheel.local.aws import local_aws
from flywheel.local.invoke import invoke
from flywheel.local.template import read_template
from flywheel.services import reports
from flywheel.services.experiments import announce_evaluation
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event
from tests.integration.test_operations import _logs, log_output  # noqa: F401 - fixture
from tests.report_helpers import seeded_db_url, seeded_template  # noqa: F401 - fixtures

BUCKET = "flywheel-reports-test"
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture
def db_url(seeded_db_url: str) -> str:  # noqa: F811 - the fixture, by name
    """Every test here starts from the seeded story (tests/report_helpers.py)."""
    return seeded_db_url


@pytest.fixture
def aws(db_url: str, monkeypatch: pytest.MonkeyPatch):
    with local_aws(TEMPLATE):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        monkeypatch.setenv("TRAINING_BUCKET", BUCKET)
        reset_settings()
        yield
    reset_settings()


def s3_object(key: str) -> dict[str, Any]:
    return dict(boto3.client("s3").get_object(Bucket=BUCKET, Key=key))


def test_report_function_writes_every_active_organisation_after_a_training_run(db, aws) -> None:
    result = invoke("ReportFunction", load_event("report_training_finished.json"), TEMPLATE)
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    assert result == {"written": ["acme", "globex"], "failed": {}, "date": today}
    for org in ("acme", "globex"):
        dated, latest = s3_object(f"reports/{org}/{today}.html"), s3_object(f"reports/{org}/latest.html")
        assert dated["ContentType"] == latest["ContentType"] == "text/html; charset=utf-8"
        page = latest["Body"].read().decode()
        assert page == dated["Body"].read().decode() and f"Flywheel report · {org}" in page


def test_an_evaluator_event_or_a_named_organisation(db, aws, log_output) -> None:  # noqa: F811 - fixture
    event = load_event("report_experiment_evaluated.json")
    assert invoke("ReportFunction", event, TEMPLATE)["written"] == ["acme", "globex"]
    logs = _logs(log_output.getvalue())  # every line carries the EventBridge event's id
    assert logs and {line.get("correlation_id") for line in logs} == {event["id"]}
    assert invoke("ReportFunction", {"org_id": "acme"}, TEMPLATE)["written"] == ["acme"]


def test_one_failing_organisation_does_not_stop_the_others(db, aws) -> None:
    with pytest.raises(ReportFailed) as failure:
        reports.publish(["nobody", "acme"])
    assert failure.value.details["written"] == ["acme"] and "nobody" in failure.value.details["failed"]
    assert s3_object("reports/acme/latest.html")["ContentLength"] > 10_000


def test_latest_report_answers_a_short_lived_sigv4_link(api, db, aws) -> None:
    assert api.get("/reports/latest?org_id=acme")[0] == 404  # nothing written yet
    reports.publish(["acme"])
    status, body = api.get("/reports/latest?org_id=acme")
    assert status == 200 and body["expires_in"] == 300 and body["org_id"] == "acme"
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["300"]
    assert urlsplit(body["url"]).path.endswith("/reports/acme/latest.html")
    fetched = requests.get(body["url"], timeout=10)  # moto answers the signed URL as S3 would
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "text/html; charset=utf-8"
    assert fetched.text == s3_object("reports/acme/latest.html")["Body"].read().decode()
    status, missing = api.get("/reports/latest?org_id=globex")
    assert status == 404 and missing["error"] == "not_found"
    status, invalid = api.get("/reports/latest")
    assert status == 422 and invalid["error"] == "validation_error"
    result = invoke("ReportsApiFunction", load_event("reports_latest_get.json"), TEMPLATE)
    assert result["statusCode"] == 200 and "X-Amz-Signature" in json.loads(result["body"])["url"]


def test_organisation_ids_cannot_reach_another_folder() -> None:
    assert reports.report_key("acme", "latest") == "reports/acme/latest.html"
    assert reports.report_key("a/../b", "latest") == "reports/a%2F..%2Fb/latest.html"
    assert reports.report_key("acme/2026-01-01.html", "x").count("/") == 2


def _report_rules() -> dict[str, dict[str, Any]]:
    events = read_template(TEMPLATE).body["Resources"]["ReportFunction"]["Properties"]["Events"]
    return {name: e["Properties"]["Pattern"] for name, e in events.items() if e["Type"] == "EventBridgeRule"}


def test_the_template_rules_match_the_events_they_are_for() -> None:
    """moto's implementation of EventBridge pattern matching, on the template's own patterns."""
    training: Any = load_event("report_training_finished.json")  # an EventBridge event, as moto types it
    changed: Any = lambda **fields: {**training, **fields}  # noqa: E731
    rules = _report_rules()
    pattern = json.loads(json.dumps(rules["TrainingRunFinished"]))
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "WeeklyTrainingStateMachine"}]
    pattern["detail"]["stateMachineArn"] = [training["detail"]["stateMachineArn"]]  # what !Ref resolves to
    finished = EventPattern.load(json.dumps(pattern))
    assert finished.matches_event(training)
    for status in ("FAILED", "TIMED_OUT", "ABORTED"):
        assert finished.matches_event(changed(detail={**training["detail"], "status": status}))
    assert not finished.matches_event(changed(detail={**training["detail"], "status": "RUNNING"}))
    other = {**training["detail"], "stateMachineArn": training["detail"]["stateMachineArn"] + "-other"}
    assert not finished.matches_event(changed(detail=other))
    evaluated = EventPattern.load(json.dumps(rules["ExperimentEvaluated"]))
    experiment_evaluated: Any = load_event("report_experiment_evaluated.json")
    assert evaluated.matches_event(experiment_evaluated)
    assert not evaluated.matches_event(training)


def test_the_evaluator_announces_every_run_on_the_bus(db, aws) -> None:
    """ExperimentEvaluatorFunction -> default bus -> the template's rule (here to a queue, in AWS to
    ReportFunction)."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName="evaluations")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="reports", EventPattern=json.dumps(_report_rules()["ExperimentEvaluated"]))
    events.put_targets(Rule="reports", Targets=[{"Id": "q", "Arn": arn}])
    decision = invoke("ExperimentEvaluatorFunction", load_event("experiment_evaluator_schedule.json"), TEMPLATE)
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == ("flywheel.experiments", "ExperimentEvaluated")
    assert event["detail"] == {k: decision[k] for k in ("experiment_id", "action", "reason", "stage")}
    db.execute("UPDATE experiments SET status = 'inconclusive'")  # nothing running: still announced
    quiet = invoke("ExperimentEvaluatorFunction", {}, TEMPLATE)
    assert (quiet["action"], quiet["reason"]) == ("none", "no experiment is running")
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["detail"]["action"] == "none"


def test_manual_promotions_and_rollbacks_are_announced_too(api, db, aws) -> None:
    """POST /training/promote-winner is the evaluator's path too, and a rollback changes what the
    report shows: both put ExperimentEvaluated on the bus, so the reports are redrawn at once rather
    than after the next daily run."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName="manual")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="reports", EventPattern=json.dumps(_report_rules()["ExperimentEvaluated"]))
    events.put_targets(Rule="reports", Targets=[{"Id": "q", "Arn": arn}])

    def announced() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"])["detail"] for m in messages]

    status, body = api.post("/training/promote-winner", {})
    assert status == 409 and announced() == []  # the evaluator would continue: nothing changed
    status, body = api.post("/training/rollback", {"reason": "reply quality dropped"})
    assert status == 200 and body["changed"], body
    [detail] = announced()
    assert (detail["action"], detail["reason"]) == ("manual_rolled_back", "reply quality dropped")
    status, body = api.post("/training/promote-winner", {"force": True, "reason": "sales ops asked"})
    assert status == 409 and announced() == []  # no challenger: nothing promoted


def test_a_refused_announcement_is_logged_and_counted(aws, monkeypatch, caplog) -> None:
    monkeypatch.setenv("EXPERIMENT_EVENTS_BUS", "default")
    reset_settings()
    with Stubber(client("events")) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]},
        )
        assert announce_evaluation({"action": "continue", "experiment_id": "exp-1"}) is False
        stub.assert_no_pending_responses()
    [record] = [r for r in caplog.records if r.getMessage() == "evaluation not announced"]
    assert record.levelname == "ERROR" and "InternalFailure" in record.cause

"""The local stack behaves like the deployed one: RepliesQueue delivers to the classifier (with
partial failures, retries and the DLQ of the template's redrive policy), POST /training/run runs
the weekly state machine, what the functions publish is in the event journal, and events reach
the functions whose EventBridge rule matches them (asynchronously: retries, then the on-failure
queue)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from flywheel import cli
from flywheel.local.invoke import between_invocations
from flywheel.local.seed import DANA, seed
from flywheel.local.server import LocalApi, make_server
from flywheel.local.stack import LocalStack
from flywheel.settings import reset_settings
from tests.conftest import ROOT


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    for key in (
        "WEBHOOK_SECRETS_JSON",
        "WEBHOOK_SECRETS_ARN",
        "PROVIDER_ORGS_JSON",
        "REPLIES_QUEUE_URL",
        "TRAINING_BUCKET",
        "TRAINING_STATE_MACHINE_ARN",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    return tmp_path


def post(api: LocalApi, path: str, body: Any) -> tuple[int, Any]:
    status, _, payload = api.handle("POST", path, {"Content-Type": ["application/json"]}, json.dumps(body).encode())
    return status, json.loads(payload)


def test_replies_queue_delivers_to_the_classifier_and_poison_goes_to_the_dlq(state: Path, db) -> None:
    lines: list[str] = []
    with LocalStack(ROOT, state=state, log=lines.append) as stack:
        seed(ROOT)
        # failed messages come back at once instead of after the template's visibility timeout
        stack.sqs.set_queue_attributes(QueueUrl=stack.queue_url("RepliesQueue"), Attributes={"VisibilityTimeout": "0"})
        api = LocalApi(ROOT / "template.yaml")
        status, queued = post(
            api,
            "/replies?org_id=acme",
            {
                "outcome_id": str(DANA),
                "channel": "linkedin",
                "text": "Interesting - can we talk on Thursday?",
                "external_id": "li-1",
            },
        )
        assert status == 202 and queued["queued"] is True
        # a message the classifier cannot read, as a broken producer would send
        stack.sqs.send_message(QueueUrl=stack.queue_url("RepliesQueue"), MessageBody="{not json")
        [delivery] = stack.pump()
        assert (delivery.mapping.function, delivery.messages, delivery.failed) == ("ClassifierFunction", 2, 1)
        row = db.execute("SELECT reply_category FROM outcome_labels WHERE outcome_id = %s", (DANA,)).fetchone()
        assert row["reply_category"] in ("interested", "meeting_request")
        published = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
        [event] = [e for e in published if e["detail"].get("outcome_id") == str(DANA)]  # (seeding published too)
        assert event["detail-type"] == "ReplyNeedsAttention" and event["detail"]["category"] == row["reply_category"]
        # the failed message is delivered again until maxReceiveCount (5), then moved to the DLQ
        retries = [d.failed for _ in range(5) for d in stack.pump()]
        assert retries == [1, 1, 1, 1]
        moved = stack.sqs.receive_message(
            QueueUrl=stack.queue_url("RepliesDeadLetterQueue"), MaxNumberOfMessages=10
        ).get("Messages", [])
        assert [m["Body"] for m in moved] == ["{not json"]
    assert any("RepliesQueue -> ClassifierFunction: 2 message(s), 1 failed" in line for line in lines)


def test_start_api_delivers_queued_replies_in_the_background(state: Path, db) -> None:
    with LocalStack(ROOT, state=state, log=lambda line: None) as stack:
        seed(ROOT)
        stack.start_background(interval_s=0.1)
        server = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.server_address[1]}/replies?org_id=acme",
                method="POST",
                data=json.dumps({"outcome_id": str(DANA), "text": "Please remove me from your list."}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 202
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = db.execute("SELECT reply_category FROM outcome_labels WHERE outcome_id = %s", (DANA,)).fetchone()
                if row["reply_category"]:
                    break
                time.sleep(0.1)
            assert row["reply_category"] == "unsubscribe"
            assert db.execute("SELECT email FROM suppressions").fetchone()["email"] == "dana.reyes@northwind.example"
        finally:
            server.shutdown()
            server.server_close()


def test_start_api_runs_each_function_with_its_own_settings(
    state: Path, db, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in AWS (and `flywheel invoke`): RoutingFunction has no webhook secret, OpenAI secret or
    replies queue in the template, so its deep health check looks at the database alone; what
    another invocation in this process (a queue consumer's) sets in os.environ while it runs does
    not reach a request's settings; a change made between invocations does."""
    with LocalStack(ROOT, state=state, log=lambda line: None):
        server = make_server(ROOT / "template.yaml", "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"

        def deep(function: str) -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(f"{base}/health/{function}/deep", timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        try:
            status, routing = deep("routing")
            assert status == 200 and set(routing["checks"]) == {"settings", "database"}, routing
            status, webhooks = deep("webhooks")
            assert status == 200 and {"replies_queue", "webhooks_secret"} <= set(webhooks["checks"]), webhooks
            # an invocation of another function sets its variables process-wide while it runs
            with between_invocations():
                monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
                monkeypatch.setenv("SENDGRID_MAX_AGE_S", "3600")
                reset_settings()
                status, messages = deep("messages")
                assert status == 200 and messages["checks"]["database"]["ok"] is True, messages
                assert deep("webhooks")[0] == 200
                monkeypatch.delenv("SENDGRID_MAX_AGE_S")
                monkeypatch.setenv("DATABASE_URL", db_url)
            # set between invocations (as `make demo` sets PROVIDER_ORGS_JSON), a variable is in effect
            monkeypatch.setenv("SENDGRID_MAX_AGE_S", "3600")
            status, webhooks = deep("webhooks")
            assert (status, webhooks["message"]) == (503, "failing: settings (SENDGRID_MAX_AGE_S)"), webhooks
        finally:
            server.shutdown()
            server.server_close()


def test_training_run_wait_prints_each_step_of_the_state_machine(state: Path, db, capsys) -> None:
    with LocalStack(ROOT, state=state, log=lambda line: None):
        seed(ROOT)
    assert cli.main(["training", "run", "--wait", "--deploy"]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line.split(": ", 1)[1].split(" (")[0] for line in out if line.startswith("run-")]
    # the emulated Bedrock finishes the job, then the custom model deployment, while the machine waits
    assert steps == [
        "CheckData",
        "BuildDataset",
        "HasEnoughData",
        "Upload",
        "StartJob",
        "WaitForJob",
        "PollJob",
        "JobState",
        "Register",
        "StartServing",
        "ServingState",
        "WaitForServing",
        "PollServing",
        "ServingState",
        "SmokeTest",
        "SmokeTestPassed",
        "Deploy",
        "Done",
        "SUCCEEDED",
    ]
    result = json.loads(out[-1])
    assert result["status"] == "succeeded" and result["execution"] == "SUCCEEDED"
    assert isinstance(result["examples"], int) and result["examples"] > 0  # the built dataset's size
    model = db.execute(
        "SELECT role, status, serving_kind, serving_status, serving_model_id FROM model_registry"
    ).fetchone()
    assert model is not None and {k: model[k] for k in ("role", "status", "serving_kind", "serving_status")} == {
        "role": "champion",
        "status": "deployed",
        "serving_kind": "on_demand",
        "serving_status": "active",
    }
    # served (and smoke-tested) through the deployment: the emulation refuses the custom model's own ARN
    assert ":custom-model-deployment/" in model["serving_model_id"]


def test_a_run_cut_short_by_the_process_ending_does_not_block_the_next(state: Path, db) -> None:
    """Ctrl-C or SIGTERM during `flywheel training run --wait` (or under start-api) ends the
    emulated Step Functions with the process: the run must not stay in flight for good (every later
    run would be a 409)."""
    logged: list[str] = []
    with LocalStack(ROOT, state=state, log=logged.append):
        seed(ROOT)
        status, started = post(LocalApi(ROOT / "template.yaml"), "/training/run", {})
        assert status == 202
    run = db.execute("SELECT status, error FROM training_runs WHERE run_id = %s", (started["run_id"],)).fetchone()
    # closed, not in flight: as cancelled (the execution ABORTED), or, when moto's interpreter ends a
    # stopped execution in the middle of a task as FAILED (seen about once in three full runs on a
    # busy host), as failed, with that reason
    closed = {"cancelled": "ABORTED", "failed": "execution ended FAILED"}
    assert run["status"] in closed and closed[run["status"]] in run["error"], (run, logged)
    assert any(f"training run {started['run_id']} {run['status']}" in line for line in logged)
    with LocalStack(ROOT, state=state, log=lambda line: None) as stack:
        status, again = post(LocalApi(ROOT / "template.yaml"), "/training/run", {})
        assert status == 202, again
        assert stack.wait_execution(again["execution_arn"])["status"] == "SUCCEEDED"


def test_training_run_without_data_ends_as_insufficient(state: Path, db, capsys) -> None:
    assert cli.main(["training", "run", "--wait"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.endswith("InsufficientData (succeed) 0.0 s") for line in out)
    assert json.loads(out[-1])["status"] == "insufficient_data"


def test_events_tail_prints_and_filters_the_journal(state: Path, capsys) -> None:
    events = [
        {
            "id": str(i),
            "time": "2026-11-27T10:00:00+00:00",
            "bus": "default",
            "source": "flywheel.replies",
            "detail-type": "ReplyNeedsAttention" if i % 2 else "Other",
            "detail": {"n": i},
        }
        for i in range(5)
    ]
    (state / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert cli.main(["events", "tail", "-n", "2"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["3", "4"]
    assert cli.main(["events", "tail", "-n", "0", "--detail-type", "ReplyNeedsAttention"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["1", "3"]


def test_bus_events_reach_their_rules_targets_and_failures_the_on_failure_queue(
    state: Path, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    with LocalStack(ROOT, state=state, log=lines.append) as stack:
        seed(ROOT)
        stack.settle()
        events = boto3.client("events")

        def announce(detail: dict[str, Any], source: str = "flywheel.experiments") -> None:
            events.put_events(
                Entries=[
                    {
                        "Source": source,
                        "DetailType": "ExperimentEvaluated",
                        "Detail": json.dumps(detail),
                        "EventBusName": "default",
                    }
                ]
            )
            stack.settle()

        announce({"org_id": "acme"})  # ReportFunction's rule: the report is written
        report = boto3.client("s3").get_object(Bucket="flywheel-local-trainingbucket", Key="reports/acme/latest.html")
        assert "Flywheel report · acme" in report["Body"].read().decode()
        assert "ExperimentEvaluated (flywheel.experiments) -> ReportFunction (rule ExperimentEvaluated)" in lines
        announce({"org_id": "globex"}, source="someone.else")  # no rule matches: nothing runs
        assert (
            boto3.client("s3")
            .list_objects_v2(Bucket="flywheel-local-trainingbucket", Prefix="reports/globex/")
            .get("KeyCount")
            == 0
        )
        # a failing invocation: 1 + MaximumRetryAttempts (2) tries, then ScheduledFailuresQueue
        monkeypatch.setenv("TRAINING_BUCKET", "no-such-bucket")
        announce({"org_id": "acme"})
        assert sum(line.startswith("Traceback") for line in lines) == 3
        [failure] = stack.sqs.receive_message(QueueUrl=stack.queue_url("ScheduledFailuresQueue"))["Messages"]
        record = json.loads(failure["Body"])
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3
        assert record["requestPayload"]["detail"] == {"org_id": "acme"}
        assert record["responsePayload"]["errorType"] == "ReportFailed"
    journal = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert [e["source"] for e in journal if e["detail-type"] == "ExperimentEvaluated"] == [
        "flywheel.experiments",
        "someone.else",
        "flywheel.experiments",
    ]

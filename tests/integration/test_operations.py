"""What an operator relies on: health answers from every API function's code path (shallow and
deep), a correlation id on every log line, the fallback-share metric, and the CRM time budget."""

from __future__ import annotations

import json
import os
import time
from typing import Any
from unittest.mock import ANY

import boto3
import httpx2
import pytest

from flywheel.clients import http
from flywheel.clients.http import HttpJsonClient
from flywheel.errors import DependencyUnavailable
from flywheel.local.invoke import invoke
from flywheel.settings import reset_settings
from tests.conftest import ROOT, load_event
from tests.integration.test_classifier import aws, register, sqs_event  # noqa: F401 - fixture
from tests.webhook_helpers import SIGNER

pytestmark = pytest.mark.integration

SHALLOW = ["/health", "/health/messages", "/health/webhooks", "/health/replies", "/health/routing", "/health/training"]


@pytest.fixture
def log_output() -> Any:
    """What the functions log and print (EMF metrics), as CloudWatch would receive it."""
    import contextlib
    import io
    import logging

    from flywheel.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)  # the Powertools logger's own handler writes to the real stdout
    try:
        with contextlib.redirect_stdout(buffer):  # EMF metric lines are printed
            yield buffer
    finally:
        logger._logger.removeHandler(handler)


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _logs(text: str) -> list[dict[str, Any]]:
    return [line for line in _lines(text) if "level" in line and "_aws" not in line]


def test_shallow_health_answers_from_every_api_function_without_touching_data(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    reset_settings()
    served_by = {route.path: route.function for route in api.api.routes if route.path in SHALLOW}
    assert sorted(set(served_by.values())) == [
        "MessagesFunction",
        "RepliesApiFunction",
        "RoutingFunction",
        "TrainingApiFunction",
        "WebhooksFunction",
    ]
    for path in SHALLOW:
        assert api.get(path) == (200, {"status": "ok"}), path


def test_deep_health_checks_the_database_the_queue_and_the_functions_secrets(
    api: Any,
    db: Any,
    aws: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="flywheel/test/webhooks", SecretString=json.dumps({"sendgrid_public_key": SIGNER.public_key_b64})
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", secret)
    monkeypatch.delenv("WEBHOOK_SECRETS_JSON")
    reset_settings()
    status, body = api.get("/health/webhooks/deep")
    assert status == 200, body
    checks = body["checks"]
    assert set(checks) == {"settings", "database", "replies_queue", "webhooks_secret"}
    assert all(check["ok"] for check in checks.values())
    latest = max(p.name[:4] for p in (ROOT / "sql").glob("*.sql"))
    assert checks["database"]["schema_version"] == latest
    assert "sendgrid_public_key" not in json.dumps(body) and SIGNER.public_key_b64[27:] not in json.dumps(body)

    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId=secret, ForceDeleteWithoutRecovery=True
    )
    status, body = api.get("/health/webhooks/deep")
    assert status == 503
    assert body["error"] == "unhealthy" and body["message"] == "failing: webhooks_secret"
    assert body["checks"]["database"]["ok"] is True

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    reset_settings()
    status, body = api.get("/health/messages/deep")
    assert status == 503 and body["checks"]["database"] == {
        "ok": False,
        "error": "DependencyUnavailable",
        "ms": body["checks"]["database"]["ms"],
    }


def _deep_event(function: str) -> dict[str, Any]:
    path = f"/health/{function}/deep"
    event = load_event("route_get.json")
    event.update(resource=path, path=path, queryStringParameters=None, multiValueQueryStringParameters=None)
    event["requestContext"] = {**event["requestContext"], "resourcePath": path, "path": path}
    return event


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("SENDGRID_MAX_AGE_S", "3600", "greater than or equal to 90000"),  # README: at least 25 h
        ("PROVIDER_ORGS_JSON", '{"hubspot:5799819": "acme",}', "not valid JSON"),  # a trailing comma
    ],
)
def test_an_invalid_setting_is_a_configuration_error_naming_the_variable(
    db_url: str, log_output: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    """The deep health check fails its `settings` check (503, naming the variable and why); every
    other request is a 503 configuration_error (with Retry-After) whose log line names the variable, never its value."""
    monkeypatch.setenv(variable, value)
    reset_settings()
    result = invoke("WebhooksFunction", _deep_event("webhooks"), ROOT / "template.yaml")
    body = json.loads(result["body"])
    assert result["statusCode"] == 503, body
    assert body["message"] == f"failing: settings ({variable})"
    assert body["checks"] == {"settings": {"ok": False, "error": "ConfigurationError", "invalid": {variable: ANY}}}
    assert why in body["checks"]["settings"]["invalid"][variable]

    for function, sample in [
        ("WebhooksFunction", "webhooks_sendgrid_events.json"),
        ("WebhooksFunction", "webhooks_calendly_invitee_created.json"),
        ("MessagesFunction", "messages_get.json"),
    ]:
        result = invoke(function, load_event(sample), ROOT / "template.yaml")
        body = json.loads(result["body"])
        assert result["statusCode"] == 503 and result["multiValueHeaders"]["Retry-After"] == ["30"], (sample, body)
        assert body["error"] == "configuration_error" and body["message"] == f"invalid configuration: {variable}"
    failures = [line for line in _logs(log_output.getvalue()) if line.get("error") == "configuration_error"]
    assert len(failures) == 3
    assert all(why in line["details"]["settings"][variable] for line in failures)
    assert value not in log_output.getvalue() and json.dumps(value) not in log_output.getvalue()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SENDGRID_MAX_AGE_S", "3600"), ("PROVIDER_ORGS_JSON", '{"hubspot:5799819": "acme-private-org-7c1f",}')],
)
def test_a_failing_deep_health_check_logs_the_invalid_setting_by_name_never_its_value(
    db_url: str, log_output: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """The 503 names the variable; so does the log (where alarms and operators look), with the
    reason, at ERROR level, and never the value (some settings are secrets). (Only the answer
    named it: the log had nothing.)"""
    monkeypatch.setenv(variable, value)
    reset_settings()
    result = invoke("WebhooksFunction", _deep_event("webhooks"), ROOT / "template.yaml")
    assert result["statusCode"] == 503
    reason = json.loads(result["body"])["checks"]["settings"]["invalid"][variable]
    [line] = [line for line in _logs(log_output.getvalue()) if line.get("check") == "settings"]
    assert line["level"] == "ERROR" and line["message"] == "deep health check failed: invalid settings"
    assert line["invalid"] == {variable: reason}
    assert value not in log_output.getvalue() and json.dumps(value) not in log_output.getvalue()


def test_a_failing_dependency_check_is_logged_by_name(db_url: str, log_output: Any, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:hunter2-pw@127.0.0.1:1/none?connect_timeout=1")
    reset_settings()
    result = invoke("MessagesFunction", _deep_event("messages"), ROOT / "template.yaml")
    assert result["statusCode"] == 503
    [line] = [line for line in _logs(log_output.getvalue()) if line["message"] == "deep health check failed"]
    assert line["level"] == "WARNING" and line["failing"] == {"database": "DependencyUnavailable"}
    assert "hunter2-pw" not in log_output.getvalue()


@pytest.mark.parametrize(
    ("function", "sample"),
    [
        ("MessagesFunction", "messages_get.json"),  # an outcome that does not exist: logged as refused
        ("ReportsApiFunction", "reports_latest_get.json"),  # no report written yet: logged as refused
    ],
)
def test_every_log_line_of_an_api_request_carries_its_request_id(
    db_url: str, log_output: Any, function: str, sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_BUCKET", "flywheel-no-such-bucket")
    event = load_event(sample)
    result = invoke(function, event, ROOT / "template.yaml")
    assert 400 <= result["statusCode"] < 600
    logs = _logs(log_output.getvalue())
    assert logs
    assert {line.get("correlation_id") for line in logs} == {event["requestContext"]["requestId"]}


def test_classifier_log_lines_carry_sqs_message_ids_and_the_fallback_metric_is_written(
    db: Any,
    aws: dict[str, str],  # noqa: F811
    log_output: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # noqa: F811
    outcome_id = register()
    log_output.truncate(0)
    log_output.seek(0)
    event = sqs_event(outcome_id)
    invoke("ClassifierFunction", event, ROOT / "template.yaml")
    ids = {record["messageId"] for record in event["Records"]}
    logs = _logs(log_output.getvalue())
    assert any(line["message"] == "reply classified" for line in logs)
    for line in logs:
        assert set(str(line.get("correlation_id")).split(",")) <= ids, line
    metrics = [line for line in _lines(capsys.readouterr().out) if "ReplyClassifiedBySource" in line]
    assert metrics and {m["source"] for m in metrics} == {"fallback"}  # no OpenAI key configured


def test_an_exhausted_llm_quota_falls_back_and_is_logged_as_an_error(
    db: Any,
    aws: dict[str, str],  # noqa: F811
    log_output: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenAI's 429 insufficient_quota: the reply is classified offline (the classifier's policy for
    a provider that fails), and the log says at ERROR level that the quota is exhausted, once per
    reply, not a warning among the transient failures: only an operator (billing) can clear it."""
    from flywheel.clients import llm
    from tests.integration.test_classifier import FakeOpenAI
    from tests.webhook_helpers import configure

    fake = FakeOpenAI("quota")
    monkeypatch.setattr(llm, "TRANSPORT", httpx2.MockTransport(fake))
    configure(monkeypatch, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://fake-openai.local/v1")
    outcome_id = register()
    invoke("ClassifierFunction", sqs_event(outcome_id), ROOT / "template.yaml")
    assert len(fake.requests) == 1
    logs = _logs(log_output.getvalue())
    [quota] = [line for line in logs if line["message"] == "LLM quota exhausted; using the offline classifier"]
    assert quota["level"] == "ERROR" and "OpenAI quota exhausted (429 insufficient_quota)" in quota["error"]
    assert any(line["message"] == "reply classified" and line["source"] == "fallback" for line in logs)


def test_pipeline_log_lines_carry_the_execution_arn(db: Any, log_output: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:weekly-training:run-1"
    # later steps carry the ARN in the state (only the first Task passes it beside the state)
    invoke(
        "TrainingPipelineFunction",
        {
            "step": "record_failure",
            "state": {"execution_arn": arn, "error": {"Error": "States.Timeout", "Cause": "the job took too long"}},
        },
        ROOT / "template.yaml",
    )
    logs = _logs(log_output.getvalue())
    assert logs
    assert {line.get("correlation_id") for line in logs} == {arn}


def test_tracer_never_records_responses_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

    from flywheel.observability import tracer

    # even where the environment asks for capturing, the decorators are told not to
    monkeypatch.setenv(constants.TRACER_CAPTURE_RESPONSE_ENV, "true")
    monkeypatch.setenv(constants.TRACER_CAPTURE_ERROR_ENV, "true")
    for decorator in (tracer.capture_lambda_handler, tracer.capture_method):
        for option, env in (
            ("capture_response", constants.TRACER_CAPTURE_RESPONSE_ENV),
            ("capture_error", constants.TRACER_CAPTURE_ERROR_ENV),
        ):
            choice = decorator.keywords[option]  # type: ignore[attr-defined,union-attr]
            assert resolve_truthy_env_var_choice(env=os.getenv(env, "true"), choice=choice) is False


def test_crm_calls_of_one_request_stop_at_their_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def always_busy(request: httpx2.Request) -> httpx2.Response:
        calls.append(time.monotonic())
        return httpx2.Response(503, headers={"retry-after": "2"}, text="busy")

    monkeypatch.setattr(http, "TRANSPORT", httpx2.MockTransport(always_busy))
    client = HttpJsonClient("HubSpot", "https://api.hubapi.test", {}, timeout_s=4, retries=5, budget_s=0.6)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        client.request("GET", "/crm/v3/objects/deals/1")
    # the Retry-After of 2 s is cut to the budget: the request gives up in time, the provider retries
    assert time.monotonic() - started < 1.0
    assert len(calls) >= 1


def test_a_retry_after_that_is_no_number_is_an_ordinary_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "²" is a digit to `str.isdigit` and no number to `float`: the CRM call backs off as usual
    and ends as DependencyUnavailable (a 503 the provider retries), not a ValueError."""
    monkeypatch.setattr(
        http,
        "TRANSPORT",
        httpx2.MockTransport(lambda request: httpx2.Response(503, headers={b"retry-after": "²".encode("latin-1")})),
    )
    client = HttpJsonClient("HubSpot", "https://api.hubapi.test", {}, timeout_s=4, retries=2, budget_s=0.5)
    with pytest.raises(DependencyUnavailable):
        client.request("GET", "/crm/v3/objects/deals/1")

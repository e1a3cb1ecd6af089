"""AWS emulated in-process for local runs and tests: moto for every service, with Lambda
invocations (Step Functions tasks) running the template's handlers in this process, and
Bedrock inference answering like a tuned Nova model would."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from flywheel.clients.aws import reset_clients
from flywheel.local.invoke import invoke

SMOKE_ANSWER = ("Subject: {{first_name}}, a faster close\n\n"
                "Hi {{first_name}}, teams like {{company}} close 3 days faster.")


def _lambda_invoke(template_path: Path) -> Any:
    def handler(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                response_headers: Any) -> bytes:
        logical_id = function_name.rsplit(":", 1)[-1]
        event = json.loads(body) if body else {}
        try:
            result = invoke(logical_id, event, template_path)
        except Exception as exc:  # Lambda reports the error's class; Step Functions matches on it
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result, default=str).encode()

    return handler


def _bedrock_answer(self: Any, payload: dict[str, Any], model_id: str) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": [{"text": SMOKE_ANSWER}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 20, "outputTokens": 25}}


def _compressed_wait(max_wait_s: float) -> Any:
    """Step Functions Wait states wait at most `max_wait_s` real seconds (local time compression)."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def wait(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(min(wait_seconds, max_wait_s))

    return mock.patch.object(WaitFunction, "_wait_interval", wait)


def _recording_put_events(journal: Path) -> Any:
    """EventBridge PutEvents, also appended to a JSON-lines journal (`flywheel events tail`)."""
    from moto.events.models import EventsBackend

    original = EventsBackend.put_events
    lock = threading.Lock()

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = original(self, events)
        lines = []
        for event, entry in zip(events, entries, strict=False):
            if entry.get("EventId"):
                detail = event.get("Detail") or "{}"
                lines.append(json.dumps({
                    "id": entry["EventId"], "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "bus": event.get("EventBusName") or "default", "source": event.get("Source"),
                    "detail-type": event.get("DetailType"), "detail": json.loads(detail)}, default=str))
        if lines:
            with lock:
                journal.parent.mkdir(parents=True, exist_ok=True)
                with journal.open("a", encoding="utf-8") as handle:
                    handle.write("".join(line + "\n" for line in lines))
        return entries

    return mock.patch.object(EventsBackend, "put_events", put_events)


@contextmanager
def local_aws(template_path: Path, region: str = "us-east-1", *, max_wait_s: float | None = None,
              journal: Path | None = None) -> Iterator[None]:
    """moto for every service, Lambda invokes run in-process; optionally Wait states compressed to
    `max_wait_s` and published events recorded in `journal`."""
    from moto import mock_aws

    saved = {k: os.environ.get(k) for k in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_DEFAULT_REGION=region, AWS_ACCESS_KEY_ID="local",
                      AWS_SECRET_ACCESS_KEY="local")  # noqa: S106 - moto's fake credentials
    patches = [
        # with use_docker off, moto answers Lambda invokes from its "simple" backend
        mock.patch("moto.awslambda_simple.models.LambdaSimpleBackend.invoke", _lambda_invoke(template_path)),
        mock.patch("moto.bedrockruntime.models.BedrockRuntimeBackend.invoke_model", _bedrock_answer),
    ]
    if max_wait_s is not None:
        patches.append(_compressed_wait(max_wait_s))
    if journal is not None:
        patches.append(_recording_put_events(journal))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        for p in patches:
            p.start()
        reset_clients()
        try:
            yield
        finally:
            for p in patches:
                p.stop()
            reset_clients()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def complete_bedrock_jobs(status: str = "Completed", failure: str | None = None) -> int:
    """Finish the emulated Bedrock customization jobs still in progress (the provider's side)."""
    from moto.bedrock.models import bedrock_backends

    finished = 0
    for account in bedrock_backends.values():
        for backend in account.values():
            for job in backend.model_customization_jobs.values():
                if job.status == "InProgress":
                    job.status = status
                    if failure:
                        job.failure_message = failure
                    finished += 1
    return finished


def weekly_training_definition(root: Path) -> str:
    """The state machine's ASL with its substitution filled in, as `sam deploy` would."""
    asl = (root / "statemachine" / "weekly_training.asl.json").read_text()
    return asl.replace("${TrainingPipelineFunctionArn}",
                       "arn:aws:lambda:us-east-1:123456789012:function:TrainingPipelineFunction")


def create_weekly_training(root: Path) -> str:
    """The weekly training state machine, created in the emulated Step Functions; returns its ARN."""
    import boto3

    return str(boto3.client("stepfunctions").create_state_machine(
        name=f"weekly-training-{time.monotonic_ns()}", definition=weekly_training_definition(root),
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"])


def run_weekly_training(root: Path, payload: dict[str, Any], on_tick: Callable[[], object] | None = None,
                        timeout_s: float = 60) -> dict[str, Any]:
    """Run one execution to its end (calling `on_tick` while it runs); returns describe_execution."""
    import boto3

    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=create_weekly_training(root),
                                    input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        if on_tick:
            on_tick()
        time.sleep(0.05)
    raise TimeoutError(f"execution did not finish in {timeout_s} s")

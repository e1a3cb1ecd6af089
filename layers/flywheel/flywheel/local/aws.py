"""AWS emulated in-process for local runs and tests: moto for every service, with Lambda
invocations (Step Functions tasks) running the template's handlers in this process, and
Bedrock inference answering like a tuned Nova model would.

moto does not implement Bedrock's serving of custom models, and accepts InvokeModel on any model
id. `BedrockServing` fills the gap the way the service behaves: custom model deployments and
provisioned throughput are created `Creating` and become `Active` / `InService` when the
provider's side finishes (`complete_bedrock_jobs`), and InvokeModel / Converse refuse a custom
model's own ARN — a custom model is served only through a deployment or provisioned throughput
(https://docs.aws.amazon.com/bedrock/latest/userguide/deploy-custom-model-on-demand.html). Request
parameters are checked against the real service model first (botocore validates types and
lengths before these handlers run; the patterns, which AWS checks server-side, are checked here).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from flywheel.clients.aws import reset_clients
from flywheel.local.invoke import invoke

SERVING_OPERATIONS = {
    "CreateCustomModelDeployment",
    "GetCustomModelDeployment",
    "DeleteCustomModelDeployment",
    "CreateProvisionedModelThroughput",
    "GetProvisionedModelThroughput",
    "DeleteProvisionedModelThroughput",
}

SMOKE_ANSWER = (
    "Subject: {{first_name}}, a faster close\n\nHi {{first_name}}, teams like {{company}} close 3 days faster."
)


def _lambda_invoke(template_path: Path) -> Any:
    def handler(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
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
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": SMOKE_ANSWER}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 20, "outputTokens": 25},
    }


def _aws_error(code: str, message: str, operation: str, status: int = 400) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def _answer(parsed: dict[str, Any], status: int = 200) -> tuple[Any, dict[str, Any]]:
    """What a before-call handler returns instead of sending the request: (HTTP response, parsed body)."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    return AWSResponse("https://bedrock.emulated", status, HTTPHeaders(), None), parsed


class BedrockServing:
    """Custom model deployments and provisioned throughput, as Bedrock serves them (see module doc)."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _check_patterns(model: Any, params: dict[str, Any]) -> None:
        import re

        for name, shape in model.input_shape.members.items():
            pattern = shape.metadata.get("pattern")
            value = params.get(name)
            if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
                raise _aws_error(
                    "ValidationException",
                    f"1 validation error detected: Value '{value}' at '{name}' "
                    f"failed to satisfy constraint: Member must satisfy regular expression pattern: "
                    f"{pattern}",
                    model.name,
                )

    def _new_arn(self, kind: str) -> str:
        import secrets
        import string

        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
        return f"arn:aws:bedrock:{os.environ.get('AWS_DEFAULT_REGION', 'us-east-1')}:123456789012:{kind}/{suffix}"

    def _create(
        self,
        operation: str,
        kind: str,
        name: str,
        params: dict[str, Any],
        model_arn: str,
        status: int,
        extra: dict[str, Any],
    ) -> Any:
        """A deployment or a provisioned throughput, as Bedrock makes them: the same request token
        answers the one it made (idempotent); another request for a name in use is a conflict."""
        answer_key = "customModelDeploymentArn" if kind == "deployment" else "provisionedModelArn"
        token = params.get("clientRequestToken")
        for arn, resource in self.resources.items():
            if token and resource.get("token") == token:
                return _answer(parsed={answer_key: arn})
        if any(r["name"] == name for r in self.resources.values()):
            raise _aws_error("ConflictException", f"a {kind} resource with this name exists", operation, 409)
        arn = self._new_arn("custom-model-deployment" if kind == "deployment" else "provisioned-model")
        self.resources[arn] = {
            "kind": kind,
            "name": name,
            "token": token,
            "modelArn": model_arn,
            "status": "Creating",
            **extra,
        }
        return _answer(status=status, parsed={answer_key: arn})

    def _find(self, identifier: str, kind: str, operation: str) -> dict[str, Any]:
        for arn, resource in self.resources.items():
            if resource["kind"] == kind and identifier in (arn, resource["name"]):
                return resource
        raise _aws_error("ResourceNotFoundException", f"{identifier} not found", operation, 404)

    @staticmethod
    def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """before-parameter-build: keep the caller's parameters (before-call sees the HTTP request)."""
        context["flywheel_params"] = dict(params)

    def control(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        """before-call handler for the bedrock control plane: answers the serving operations."""
        operation = model.name
        if operation not in SERVING_OPERATIONS:
            return None  # moto answers the rest
        params = context["flywheel_params"]
        self._check_patterns(model, params)
        if operation == "CreateCustomModelDeployment":
            return self._create(
                operation, "deployment", params["modelDeploymentName"], params, params["modelArn"], 202, {}
            )
        if operation == "CreateProvisionedModelThroughput":
            return self._create(
                operation,
                "provisioned",
                params["provisionedModelName"],
                params,
                params["modelId"],
                201,
                {"modelUnits": params["modelUnits"]},
            )
        if operation == "GetCustomModelDeployment":
            found = self._find(params["customModelDeploymentIdentifier"], "deployment", operation)
            arn = next(a for a, r in self.resources.items() if r is found)
            return _answer(
                parsed={
                    "customModelDeploymentArn": arn,
                    "modelDeploymentName": found["name"],
                    "modelArn": found["modelArn"],
                    "status": found["status"],
                    **({"failureMessage": found["failure"]} if found.get("failure") else {}),
                }
            )
        if operation == "GetProvisionedModelThroughput":
            found = self._find(params["provisionedModelId"], "provisioned", operation)
            arn = next(a for a, r in self.resources.items() if r is found)
            return _answer(
                parsed={
                    "provisionedModelArn": arn,
                    "provisionedModelName": found["name"],
                    "modelArn": found["modelArn"],
                    "status": found["status"],
                    "modelUnits": found["modelUnits"],
                    "desiredModelUnits": found["modelUnits"],
                    **({"failureMessage": found["failure"]} if found.get("failure") else {}),
                }
            )
        kind, key = (
            ("deployment", "customModelDeploymentIdentifier")
            if operation == "DeleteCustomModelDeployment"
            else ("provisioned", "provisionedModelId")
        )
        found = self._find(params[key], kind, operation)
        del self.resources[next(a for a, r in self.resources.items() if r is found)]
        return _answer(parsed={})

    def runtime(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        """before-call handler for bedrock-runtime: what InvokeModel / Converse accept as modelId."""
        if model.name not in ("InvokeModel", "Converse", "InvokeModelWithResponseStream", "ConverseStream"):
            return None
        model_id = str(context["flywheel_params"].get("modelId", ""))
        if ":custom-model/" in model_id:
            raise _aws_error(
                "ValidationException",
                "The provided model identifier is invalid: a custom model is "
                "invoked through a custom model deployment or provisioned throughput, not its own ARN",
                model.name,
            )
        if ":custom-model-deployment/" in model_id or ":provisioned-model/" in model_id:
            resource = self.resources.get(model_id)
            if resource is None:
                raise _aws_error("ResourceNotFoundException", f"{model_id} not found", model.name, 404)
            if resource["status"] not in ("Active", "InService"):
                raise _aws_error(
                    "ValidationException", f"{model_id} is {resource['status']}, not ready for inference", model.name
                )
        return None  # moto (patched below) answers

    def finish(self, status: str = "Active", failure: str | None = None) -> int:
        finished = 0
        for resource in self.resources.values():
            if resource["status"] == "Creating":
                ready = "InService" if resource["kind"] == "provisioned" else "Active"
                resource["status"] = ready if status == "Active" else status
                if failure:
                    resource["failure"] = failure
                finished += 1
        return finished


SERVING = BedrockServing()


def _compressed_wait(max_wait_s: float) -> Any:
    """Step Functions Wait states wait at most `max_wait_s` real seconds (local time compression)."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def wait(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(min(wait_seconds, max_wait_s))

    return mock.patch.object(WaitFunction, "_wait_interval", wait)


def compressed_retries(max_interval_s: float) -> Any:
    """A Task's Retry waits at most `max_interval_s` real seconds between attempts (local time
    compression; moto sleeps the whole interval)."""
    import types

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, max_interval_s))

    return mock.patch.object(retrier_decl, "time", types.SimpleNamespace(sleep=sleep))


EventListener = Callable[[list[tuple[str, dict[str, Any]]]], None]


def _observed_put_events(listener: EventListener) -> Any:
    """EventBridge PutEvents, each accepted event also handed to `listener`: (the bus's name, the
    event as EventBridge delivers it to a rule's target)."""
    from moto.events.models import EventsBackend

    original = EventsBackend.put_events

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = original(self, events)
        accepted = [
            (
                str(event.get("EventBusName") or "default").rsplit("/", 1)[-1],
                delivered_event(
                    event.get("Source"),
                    event.get("DetailType"),
                    json.loads(event.get("Detail") or "{}"),
                    event_id=entry["EventId"],
                    resources=event.get("Resources"),
                ),
            )
            for event, entry in zip(events, entries, strict=False)
            if entry.get("EventId")
        ]
        if accepted:
            listener(accepted)
        return entries

    return mock.patch.object(EventsBackend, "put_events", put_events)


def delivered_event(
    source: Any, detail_type: Any, detail: Any, *, event_id: str | None = None, resources: list[str] | None = None
) -> dict[str, Any]:
    """An event as EventBridge hands it to a rule's target
    (https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html)."""
    import uuid

    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "resources": list(resources or []),
        "detail": detail,
    }


@contextmanager
def local_aws(
    template_path: Path,
    region: str = "us-east-1",
    *,
    max_wait_s: float | None = None,
    on_events: EventListener | None = None,
) -> Iterator[None]:
    """moto for every service, Lambda invokes run in-process; optionally Wait states (and the
    intervals between a Task's retries) compressed to `max_wait_s` and every event put on
    EventBridge handed to `on_events`."""
    from moto import mock_aws

    saved = {k: os.environ.get(k) for k in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_DEFAULT_REGION=region, AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")  # noqa: S106 - moto's fake credentials
    patches = [
        # with use_docker off, moto answers Lambda invokes from its "simple" backend
        mock.patch("moto.awslambda_simple.models.LambdaSimpleBackend.invoke", _lambda_invoke(template_path)),
        mock.patch("moto.bedrockruntime.models.BedrockRuntimeBackend.invoke_model", _bedrock_answer),
    ]
    if max_wait_s is not None:
        patches += [_compressed_wait(max_wait_s), compressed_retries(max_wait_s)]
    if on_events is not None:
        patches.append(_observed_put_events(on_events))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        for p in patches:
            p.start()
        events = _serving_events()
        reset_clients()
        try:
            yield
        finally:
            for p in patches:
                p.stop()
            for name, handler in events:
                boto3_session().events.unregister(name, handler)
            SERVING.resources.clear()
            reset_clients()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def boto3_session() -> Any:
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    return boto3.DEFAULT_SESSION  # handlers registered on it reach every client made from it


def _refuse_stopping_an_ended_job(context: dict[str, Any], **_: Any) -> None:
    """Bedrock stops only a job in progress: StopModelCustomizationJob on one that has completed,
    failed or stopped is a ValidationException (moto would mark it Stopped)."""
    from moto.bedrock.models import bedrock_backends

    name = str(context.get("flywheel_params", {}).get("jobIdentifier", ""))
    for account in bedrock_backends.values():
        for backend in account.values():
            job = backend.model_customization_jobs.get(name)
            if job is not None and job.status not in ("InProgress", "Stopping"):
                raise _aws_error(
                    "ValidationException", f"Cannot stop a job in status {job.status}", "StopModelCustomizationJob"
                )


def _serving_events() -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = [
        ("before-parameter-build.bedrock", SERVING.keep_params),
        ("before-parameter-build.bedrock-runtime", SERVING.keep_params),
        ("before-call.bedrock.StopModelCustomizationJob", _refuse_stopping_an_ended_job),
        ("before-call.bedrock", SERVING.control),
        ("before-call.bedrock-runtime", SERVING.runtime),
    ]
    for name, handler in events:
        boto3_session().events.register(name, handler)
    return events


def complete_bedrock_jobs(status: str = "Completed", failure: str | None = None) -> int:
    """Finish what Bedrock is still working on (the provider's side): customization jobs in
    progress (their custom model gets an ARN of the real form) and deployments being created."""
    import secrets
    import string

    from moto.bedrock.models import bedrock_backends

    finished = 0
    for account in bedrock_backends.values():
        for backend in account.values():
            for job in backend.model_customization_jobs.values():
                if job.status == "InProgress":
                    # everything before the status: the state machine polls from another thread
                    base = str(job.base_model_identifier).rsplit("foundation-model/", 1)[-1]
                    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
                    job.output_model_arn = (
                        f"arn:aws:bedrock:{job.region_name}:{job.account_id}:custom-model/{base}/{suffix}"
                    )
                    if failure:
                        job.failure_message = failure
                    job.status = status
                    finished += 1
    if status == "Completed":
        finished += SERVING.finish()
    return finished


def weekly_training_definition(root: Path) -> str:
    """The state machine's ASL with its substitution filled in, as `sam deploy` would."""
    asl = (root / "statemachine" / "weekly_training.asl.json").read_text()
    return asl.replace(
        "${TrainingPipelineFunctionArn}", "arn:aws:lambda:us-east-1:123456789012:function:TrainingPipelineFunction"
    )


def create_weekly_training(root: Path) -> str:
    """The weekly training state machine, created in the emulated Step Functions; returns its ARN."""
    import boto3

    return str(
        boto3.client("stepfunctions").create_state_machine(
            name=f"weekly-training-{time.monotonic_ns()}",
            definition=weekly_training_definition(root),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
    )


def run_weekly_training(
    root: Path, payload: dict[str, Any], on_tick: Callable[[], object] | None = None, timeout_s: float = 60
) -> dict[str, Any]:
    """Run one execution to its end (calling `on_tick` while it runs); returns describe_execution."""
    import boto3

    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=create_weekly_training(root), input=json.dumps(payload))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        if on_tick:
            on_tick()
        time.sleep(0.05)
    raise TimeoutError(f"execution did not finish in {timeout_s} s")

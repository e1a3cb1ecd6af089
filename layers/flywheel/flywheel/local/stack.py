"""The deployed stack's AWS side, emulated in this process: what `flywheel invoke`, `start-api`,
`training run` and the demo run against, so that they behave like the deployed stack.

From `template.yaml`, in moto: every SQS queue (with its redrive policy to its DLQ), S3 bucket,
Secrets Manager secret (the webhook secret holds the local development secrets) and state
machine (its Tasks invoke the template's functions in this process), plus the default event
bus. The functions' environment resolves the template's Refs to these resources, so the code
paths are the deployed ones. Around them:

- each SQS event source of the template (RepliesQueue -> ClassifierFunction) is polled and
  delivered in batches, with partial batch failures; failed messages come back after the
  queue's visibility timeout and go to the DLQ after `maxReceiveCount` receives, as in AWS;
- every event on the buses (those the functions put, and Step Functions' execution status
  changes, which AWS sends by itself) is appended to `<state>/events.jsonl` (`flywheel events
  tail`) and delivered to the functions whose EventBridgeRule matches it (the training run or the
  evaluation -> ReportFunction), invoked asynchronously as EventBridge does: a failure is retried
  `MaximumRetryAttempts` times, then goes to the function's on-failure queue;
- Wait states (and the pauses between a Task's retries) last at most FLYWHEEL_LOCAL_WAIT_S real
  seconds; the emulated Bedrock finishes fine-tuning jobs and custom model deployments on the next
  round (flywheel.local.aws);
- the template's conditions are evaluated with LOCAL_PARAMETERS, and the IAM roles it creates
  exist in moto;
- a CloudFormation custom resource request is answered to a local CloudFormation;
- HubSpot's and Pipedrive's APIs are served on localhost with the samples' CRM records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from flywheel.local import seed
from flywheel.local.aws import complete_bedrock_jobs, delivered_event, local_aws
from flywheel.local.cloudformation import LocalCloudFormation, is_custom_resource_request
from flywheel.local.config import local_setting, state_dir
from flywheel.local.crm import LocalCrm
from flywheel.local.invoke import environment_source, invoke
from flywheel.local.secrets import local_secrets, webhook_secrets_json
from flywheel.local.signing import sign_event
from flywheel.local.template import FunctionSpec, Template, read_template

STACK_NAME = "flywheel-local"
REGION, ACCOUNT = "us-east-1", "123456789012"
# Parameter values of the local stack, like `sam local invoke --parameter-overrides`: the
# samples' provider accounts and their parse domain, and the database as an existing one (the
# embedded PostgreSQL, which DATABASE_URL names: no VPC, cluster or proxy to resolve). Every
# other parameter keeps the template's default, as a first `sam deploy` does.
LOCAL_PARAMETERS = {
    "ProviderOrgs": json.dumps(seed.PROVIDER_ORGS),
    "InboundParseDomains": seed.PARSE_DOMAIN,
    "DatabaseMode": "existing",
}
Log = Callable[[str], None]
QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class QueueMapping:
    """An SQS event source of a function (Events: Type: SQS)."""

    function: str
    queue: str  # logical id
    url: str
    arn: str
    batch_size: int
    partial_failures: bool


@dataclass(frozen=True)
class RuleTarget:
    """An EventBridge rule of a function (Events: Type: EventBridgeRule), its pattern resolved."""

    function: str
    rule: str
    bus: str
    pattern: Any  # moto's EventPattern


@dataclass
class Delivery:
    mapping: QueueMapping
    messages: int
    failed: int
    error: str | None = None


class LocalStack:
    def __init__(self, root: Path, *, state: Path | None = None, log: Log = stderr_log, journal: bool = True) -> None:
        self.root = root
        self.template_path = root / "template.yaml"
        self.template: Template = read_template(self.template_path)
        self.state = state or state_dir(root)
        self.journal_path = self.state / "events.jsonl"
        self.log = log
        self._journal = journal
        self.known: dict[str, str] = dict(LOCAL_PARAMETERS)
        self.mappings: list[QueueMapping] = []
        self.rules: list[RuleTarget] = []
        self._events: list[tuple[str, dict[str, Any]]] = []  # (bus, event) not yet delivered to the rules' targets
        self._events_lock = threading.Lock()
        self.state_machines: dict[str, str] = {}  # logical id -> ARN
        self.extra_env: dict[str, str] = {}
        self._seen: dict[str, int] = {}  # execution ARN -> history events already reported
        self._finished: set[str] = set()
        self._pump_lock = threading.RLock()
        # only guards creating a state machine: taken while a function's environment is resolved,
        # i.e. under the invocation lock, so it must never be held while invoking
        self._machines_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exit = contextlib.ExitStack()

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        # moto logs a Fail state's internals as an error; the step report says it in one line
        moto_log = logging.getLogger("moto.stepfunctions")
        self._exit.callback(moto_log.setLevel, moto_log.level)
        moto_log.setLevel(logging.CRITICAL)
        try:
            self.secrets = local_secrets(self.state, self.log)
            self._exit.enter_context(
                local_aws(
                    self.template_path, max_wait_s=float(local_setting("FLYWHEEL_LOCAL_WAIT_S")), on_events=self.publish
                )
            )
            # made once: creating a client reads the whole environment, which the functions'
            # invocations change on other threads
            self.sqs, self.sfn = boto3.client("sqs"), boto3.client("stepfunctions")
            self.crm = self._exit.enter_context(
                LocalCrm(
                    seed.sample_crm_records(self.secrets["hubspot_access_token"], self.secrets["pipedrive_api_token"])
                )
            )
            self.extra_env = {"HUBSPOT_API_BASE": self.crm.base_url, "PIPEDRIVE_API_BASE": self.crm.base_url}
            self._provision()
            self._exit.enter_context(environment_source(self))
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._abort_running_executions()
        finally:
            self._exit.close()

    def _abort_running_executions(self) -> None:
        """The emulated Step Functions ends with this process (Ctrl-C, SIGTERM, an error): an
        execution still running is stopped, as StopExecution would, and its training run is read
        through the API, which reconciles it with the ABORTED execution (closed as cancelled).
        Otherwise the run would stay in flight in the database for good and every later
        `flywheel training run` would be refused with 409."""
        if not hasattr(self, "sfn"):
            return  # the stack never started
        from flywheel.local.server import LocalApi

        for arn in self.running_executions():
            try:
                # moto's interpreter thread must have begun the execution before it can be stopped,
                # and reflects the stop in the execution's status a moment later
                self._until(lambda: bool(self.sfn.get_execution_history(executionArn=arn, maxResults=1)["events"]))  # noqa: B023
                self.sfn.stop_execution(
                    executionArn=arn,
                    error="LocalStackStopped",
                    cause="the local stack stopped before the execution ended",
                )
                self._until(lambda: self.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")  # noqa: B023
                run_id = json.loads(self.sfn.describe_execution(executionArn=arn).get("input") or "{}").get("run_id")
                if run_id:
                    status, _, payload = LocalApi(self.template_path).handle("GET", f"/training/runs/{run_id}", {}, b"")
                    run = json.loads(payload) if status == 200 else {}
                    self.log(
                        f"{arn.rsplit(':', 1)[-1]}: aborted with the local stack; training run {run_id} "
                        f"{run.get('status', f'not reconciled ({status})')}"
                    )
            except Exception as exc:  # stopping must go on: the next execution, then the stack itself
                self.log(f"local stack: could not abort {arn}: {type(exc).__name__}: {exc}")

    @staticmethod
    def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_background(self, interval_s: float = 0.5) -> None:
        """Deliver queued messages and report state machine steps as they happen (start-api)."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.pump()
                except Exception as exc:  # keep serving; the next round retries
                    self.log(f"local stack: {type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, name="local-stack", daemon=True)
        self._thread.start()

    # --- resources ------------------------------------------------------------------------------

    def _name(self, logical_id: str) -> str:
        return f"{STACK_NAME}-{logical_id}"

    def _provision(self) -> None:
        template = self.template
        for logical_id in template.functions():
            self.known[logical_id] = logical_id
            self.known[f"{logical_id}.Arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
        sqs = self.sqs
        queues = self._resources("AWS::SQS::Queue")
        for logical_id, props in queues.items():
            name = self._name(logical_id)
            attributes: dict[Any, str] = {k: str(props[k]) for k in QUEUE_ATTRIBUTES if k in props}
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            self.known.update(
                {
                    logical_id: url,
                    f"{logical_id}.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                    f"{logical_id}.QueueName": name,
                    f"{logical_id}.QueueUrl": url,
                }
            )
        for logical_id, props in queues.items():
            redrive = props.get("RedrivePolicy")
            if redrive:
                policy = {
                    "deadLetterTargetArn": template.resolve(redrive["deadLetterTargetArn"], self.known),
                    "maxReceiveCount": int(redrive["maxReceiveCount"]),
                }
                sqs.set_queue_attributes(
                    QueueUrl=self.known[logical_id], Attributes={"RedrivePolicy": json.dumps(policy)}
                )
        iam = boto3.client("iam")
        for logical_id, props in self._resources("AWS::IAM::Role").items():
            # the roles the stack creates with these parameters (e.g. Bedrock's service role)
            name = self._name(logical_id)
            trust = json.dumps(self._resolved(props["AssumeRolePolicyDocument"]))
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            self.known.update({logical_id: name, f"{logical_id}.Arn": arn})
        s3 = boto3.client("s3")
        for logical_id in self._resources("AWS::S3::Bucket"):
            bucket = self._name(logical_id).lower()
            s3.create_bucket(Bucket=bucket)
            self.known.update({logical_id: bucket, f"{logical_id}.Arn": f"arn:aws:s3:::{bucket}"})
        self._provision_secrets()
        for logical_id in self._resources("AWS::Serverless::StateMachine"):
            name = self._name(logical_id)
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
            self.known.update({logical_id: arn, f"{logical_id}.Arn": arn, f"{logical_id}.Name": name})
        self.mappings = self._queue_mappings()
        self.rules = self._rule_targets()

    def _resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The template's resources of a type that the stack creates with the local parameters."""
        return self.template.resources(resource_type, self.known)

    def _resolved(self, node: Any) -> Any:
        """A property with every intrinsic in it resolved (a policy document)."""
        if isinstance(node, dict):
            keys = list(node)
            if len(keys) == 1 and (keys[0] == "Ref" or keys[0].startswith("Fn::")):
                return self.template.resolve(node, self.known)
            return {key: self._resolved(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._resolved(item) for item in node]
        return node

    def _state_machine(self, logical_id: str) -> str:
        """Created on first use (parsing its definition is the slowest part of starting the stack)."""
        with self._machines_lock:
            if logical_id not in self.state_machines:
                props = self._resources("AWS::Serverless::StateMachine")[logical_id]
                definition = (self.root / props["DefinitionUri"]).read_text()
                for key, value in (props.get("DefinitionSubstitutions") or {}).items():
                    definition = definition.replace("${" + key + "}", self.template.resolve(value, self.known) or "")
                name = self._name(logical_id)
                self.state_machines[logical_id] = self.sfn.create_state_machine(
                    name=name, definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}"
                )["stateMachineArn"]
            return self.state_machines[logical_id]

    def _provision_secrets(self) -> None:
        """The webhook secret (the one WEBHOOK_SECRETS_ARN names) holds the local secrets (or
        WEBHOOK_SECRETS_JSON when you set it); others keep the template's SecretString."""
        webhook_secret = next(
            (
                v["Ref"]
                for spec in self.template.functions().values()
                for k, v in spec.raw_environment.items()
                if k == "WEBHOOK_SECRETS_ARN" and isinstance(v, dict) and "Ref" in v
            ),
            None,
        )
        client = boto3.client("secretsmanager")
        for logical_id, props in self._resources("AWS::SecretsManager::Secret").items():
            name = self.template.resolve(props.get("Name"), self.known) or self._name(logical_id)
            if logical_id == webhook_secret:
                value = self._webhook_secrets()
            else:
                value = str(props.get("SecretString") or json.dumps({"password": uuid.uuid4().hex}))
            self.known[logical_id] = client.create_secret(Name=name, SecretString=value)["ARN"]

    def _webhook_secrets(self) -> str:
        return os.environ.get("WEBHOOK_SECRETS_JSON") or webhook_secrets_json(self.secrets)

    def _queue_mappings(self) -> list[QueueMapping]:
        by_arn = {self.known[f"{q}.Arn"]: q for q in self._resources("AWS::SQS::Queue")}
        mappings = []
        for spec in self.template.functions().values():
            for event in spec.events.values():
                if event.get("Type") != "SQS":
                    continue
                props = event.get("Properties") or {}
                arn = self.template.resolve(props.get("Queue"), self.known) or ""
                if arn in by_arn:
                    queue = by_arn[arn]
                    mappings.append(
                        QueueMapping(
                            function=spec.logical_id,
                            queue=queue,
                            url=self.known[queue],
                            arn=arn,
                            batch_size=int(props.get("BatchSize", 10)),
                            partial_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                        )
                    )
        return mappings

    def _rule_targets(self) -> list[RuleTarget]:
        from moto.events.models import EventPattern

        targets = []
        for spec in self.template.functions().values():
            for name, event in spec.events.items():
                props = event.get("Properties") or {}
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent") and props.get("Pattern"):
                    bus = self.template.resolve(props.get("EventBusName"), self.known) or "default"
                    pattern = EventPattern.load(json.dumps(self._resolved(props["Pattern"])))
                    targets.append(RuleTarget(spec.logical_id, name, bus.rsplit("/", 1)[-1], pattern))
        return targets

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        """The function's template environment with the local resources' Refs resolved."""
        machines = self._resources("AWS::Serverless::StateMachine")
        for value in spec.raw_environment.values():
            if isinstance(value, dict) and value.get("Ref") in machines:
                self._state_machine(value["Ref"])
        resolved = {k: self.template.resolve(v, self.known) for k, v in spec.raw_environment.items()}
        return {**{k: v for k, v in resolved.items() if v is not None}, **self.extra_env}

    def queue_url(self, logical_id: str) -> str:
        return self.known[logical_id]

    # --- the event source mappings, the provider side, the state machines -------------------------

    def pump(self) -> list[Delivery]:
        """One round: each SQS event source delivers a batch; emulated fine-tuning jobs finish;
        new state machine steps are reported; events on the buses reach their rules' targets."""
        with self._pump_lock:
            deliveries = [d for d in (self._deliver(m) for m in self.mappings) if d is not None]
            complete_bedrock_jobs()
            self._report_executions()
            self._deliver_events()
        return deliveries

    def publish(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Events put on a bus (by a function, or by AWS itself), as (bus, event): into the journal,
        and on their way to the rules' targets (the next round delivers them)."""
        with self._events_lock:
            self._events.extend(events)
            if self._journal:
                self.journal_path.parent.mkdir(parents=True, exist_ok=True)
                with self.journal_path.open("a", encoding="utf-8") as handle:
                    handle.write(
                        "".join(
                            json.dumps(
                                {
                                    "id": e["id"],
                                    "time": e["time"],
                                    "bus": bus,
                                    "source": e["source"],
                                    "detail-type": e["detail-type"],
                                    "detail": e["detail"],
                                },
                                default=str,
                            )
                            + "\n"
                            for bus, e in events
                        )
                    )

    def _deliver_events(self) -> None:
        """Each waiting event to every function whose rule matches it, as an asynchronous invoke."""
        with self._events_lock:
            events, self._events = self._events, []
        for bus, event in events:
            for target in self.rules:
                if target.bus == bus and target.pattern.matches_event(event):
                    self._invoke_async(target, event)

    def _invoke_async(self, target: RuleTarget, event: dict[str, Any]) -> None:
        """Lambda's asynchronous invocation: 1 + MaximumRetryAttempts tries (AWS waits minutes
        between them; not here), then the on-failure destination, when the function has one."""
        config = self.template.body["Resources"][target.function]["Properties"].get("EventInvokeConfig") or {}
        attempts = 1 + int(config.get("MaximumRetryAttempts", 2))
        error: dict[str, str] = {}
        for _ in range(attempts):
            try:
                invoke(target.function, event, self.template_path)
                self.log(f"{event['detail-type']} ({event['source']}) -> {target.function} (rule {target.rule})")
                return
            except Exception as exc:
                self.log(traceback.format_exc().rstrip())
                error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        destination = self.template.resolve(
            ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"), self.known
        )
        queue = next((q for q in self._resources("AWS::SQS::Queue") if self.known.get(f"{q}.Arn") == destination), None)
        if queue is not None:  # the record Lambda sends to an on-failure destination
            self.sqs.send_message(
                QueueUrl=self.known[queue],
                MessageBody=json.dumps(
                    {
                        "version": "1.0",
                        "timestamp": datetime.now(UTC).isoformat(),
                        "requestContext": {
                            "requestId": str(uuid.uuid4()),
                            "condition": "RetriesExhausted",
                            "functionArn": self.known[f"{target.function}.Arn"] + ":$LATEST",
                            "approximateInvokeCount": attempts,
                        },
                        "requestPayload": event,
                        "responseContext": {
                            "statusCode": 200,
                            "executedVersion": "$LATEST",
                            "functionError": "Unhandled",
                        },
                        "responsePayload": error,
                    }
                ),
            )
        self.log(
            f"{event['detail-type']} -> {target.function} failed {attempts} times ({error.get('errorType')}: "
            f"{error.get('errorMessage')}){f'; sent to {queue}' if queue else ''}"
        )

    def _deliver(self, mapping: QueueMapping) -> Delivery | None:
        sqs = self.sqs
        received = sqs.receive_message(
            QueueUrl=mapping.url,
            MaxNumberOfMessages=min(10, mapping.batch_size),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return None
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "messageAttributes": {
                    k: {k2[0].lower() + k2[1:]: v2 for k2, v2 in v.items()}
                    for k, v in (m.get("MessageAttributes") or {}).items()
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": mapping.arn,
                "awsRegion": REGION,
            }
            for m in received
        ]
        error = None
        try:
            result = invoke(mapping.function, {"Records": records}, self.template_path)
            failed = (
                {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
                if mapping.partial_failures
                else set()
            )
        except Exception as exc:  # the whole batch failed: SQS redelivers every message
            failed, error = {r["messageId"] for r in records}, f"{type(exc).__name__}: {exc}"
        done: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(received)
            if m["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=mapping.url, Entries=done)
        delivery = Delivery(mapping, len(records), len(failed), error)
        note = f" ({error})" if error else ""
        retry = "; failed messages come back after the visibility timeout, then go to the DLQ" if failed else ""
        self.log(f"{mapping.queue} -> {mapping.function}: {len(records)} message(s), {len(failed)} failed{note}{retry}")
        return delivery

    def running_executions(self) -> list[str]:
        sfn = self.sfn
        return [
            e["executionArn"]
            for arn in list(self.state_machines.values())
            for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        ]

    def _report_executions(self, only: str | None = None, log: Log | None = None) -> None:
        sfn = self.sfn
        arns = (
            [only]
            if only
            else [
                e["executionArn"]
                for sm in list(self.state_machines.values())
                for e in sfn.list_executions(stateMachineArn=sm)["executions"]
            ]
        )
        for arn in arns:
            if arn in self._finished:
                continue
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            seen = self._seen.get(arn, 0)
            for line in step_lines(events, seen):
                (log or self.log)(f"{arn.rsplit(':', 1)[-1]}: {line}")
            if seen == 0 and events:
                self._status_changed(arn, "RUNNING")
            self._seen[arn] = len(events)
            if any(e["type"] in FINAL_EVENTS for e in events):
                self._finished.add(arn)
                self._status_changed(arn)

    def _status_changed(self, execution_arn: str, status: str | None = None) -> None:
        """The event Step Functions sends to the default bus when an execution changes status
        (https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html)."""
        described = self.sfn.describe_execution(executionArn=execution_arn)
        status = status or described["status"]
        final = status != "RUNNING"

        def epoch_ms(key: str) -> int | None:
            return int(described[key].timestamp() * 1000) if described.get(key) else None

        self.publish(
            [
                (
                    "default",
                    delivered_event(
                        "aws.states",
                        "Step Functions Execution Status Change",
                        {
                            "executionArn": execution_arn,
                            "stateMachineArn": described["stateMachineArn"],
                            "name": described["name"],
                            "status": status,
                            "startDate": epoch_ms("startDate"),
                            "stopDate": epoch_ms("stopDate") if final else None,
                            "input": described.get("input"),
                            "output": described.get("output") if final else None,
                            "inputDetails": {"included": True},
                            "outputDetails": {"included": final},
                        },
                        resources=[execution_arn],
                    ),
                )
            ]
        )

    def settle(self, timeout_s: float = 600) -> None:
        """Run what the invocation set in motion to its end: queued messages delivered (until only
        failed ones wait for their retry), state machine executions finished."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            delivered = self.pump()
            if not delivered and not self.running_executions() and not self._events:
                waiting = self._messages_waiting()
                if waiting:
                    self.log(f"{waiting} message(s) wait for their retry on the queues (SQS visibility timeout)")
                return
            if not delivered:
                time.sleep(0.1)
        raise TimeoutError(f"the local stack did not settle in {timeout_s:.0f} s")

    def _messages_waiting(self) -> int:
        sqs = self.sqs
        total = 0
        for mapping in self.mappings:
            attrs = sqs.get_queue_attributes(QueueUrl=mapping.url, AttributeNames=["All"])["Attributes"]
            total += int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        return total

    def start_execution(self, logical_id: str, payload: dict[str, Any]) -> str:
        machines = self._resources("AWS::Serverless::StateMachine")
        if logical_id not in machines:
            raise KeyError(f"no state machine {logical_id!r} in the template; known: {', '.join(sorted(machines))}")
        return str(
            self.sfn.start_execution(
                stateMachineArn=self._state_machine(logical_id),
                name=f"local-{uuid.uuid4().hex[:12]}",
                input=json.dumps(payload),
            )["executionArn"]
        )

    def run(self, target: str, event: dict[str, Any], *, sign: bool = True) -> tuple[Any, bool]:
        """What `flywheel invoke` does: a function (its webhook event authenticated with the local
        secrets first; a custom resource request answered to the local CloudFormation) or a state
        machine (the event is its input), then whatever that set in motion runs to its end. Returns
        (result, failed); a function's exception is its result, as Lambda reports it, with the trace
        in the log."""
        if target in self._resources("AWS::Serverless::StateMachine"):
            described = self.wait_execution(self.start_execution(target, event))
            result = {
                k: described.get(k)
                for k in ("executionArn", "status", "startDate", "stopDate", "error", "cause")
                if described.get(k) is not None
            }
            if described.get("output"):
                result["output"] = json.loads(described["output"])
            return result, described["status"] != "SUCCEEDED"
        if sign:
            event, provider = sign_event(event, self.secrets)
            if provider is not None:
                self.log(
                    f"authenticated as {provider.name} does ({provider.scheme}) with the local secrets in "
                    f"{self.state / 'secrets.json'}"
                )
        if is_custom_resource_request(event):
            # the answer goes to the local CloudFormation, not to the sample's pre-signed S3 URL
            with LocalCloudFormation() as cloudformation:
                result, failed = self._invoke(target, {**event, "ResponseURL": cloudformation.url})
            accepted, verdict = cloudformation.verdict(event)
            self.log(verdict)
            failed = failed or not accepted
        else:
            result, failed = self._invoke(target, event)
        self.settle()
        return result, failed

    def _invoke(self, target: str, event: dict[str, Any]) -> tuple[Any, bool]:
        try:
            return invoke(target, event, self.template_path), False
        except Exception as exc:
            self.log(traceback.format_exc().rstrip())
            return {"errorType": type(exc).__name__, "errorMessage": str(exc)}, True

    def wait_execution(self, execution_arn: str, log: Log | None = None, timeout_s: float = 600) -> dict[str, Any]:
        """Drive one execution to its end, reporting each step as it happens; describe_execution."""
        sfn = self.sfn
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._pump_lock:
                for mapping in self.mappings:
                    self._deliver(mapping)
                complete_bedrock_jobs()
                self._report_executions(only=execution_arn, log=log)
                self._deliver_events()
            described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                with self._pump_lock:
                    self._report_executions(only=execution_arn, log=log)
                    self._deliver_events()  # the execution's end, to the rules that wait for it
                return described
            time.sleep(0.05)
        raise TimeoutError(f"execution {execution_arn} did not finish in {timeout_s:.0f} s")


FINAL_EVENTS = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}


def step_lines(events: list[dict[str, Any]], start: int = 0) -> Iterator[str]:
    """Readable lines for the history events from index `start`: each state when it exits (with
    its duration), task errors, and the execution's end."""
    entered: dict[str, datetime] = {}
    for index, event in enumerate(events):
        kind, details = event["type"], _details(event)
        if kind.endswith("StateEntered"):
            entered[details.get("name", "")] = event["timestamp"]
        if index < start:
            continue
        if kind.endswith("StateExited"):
            name = details.get("name", "")
            began = entered.get(name, event["timestamp"])
            seconds = (event["timestamp"] - began).total_seconds()
            yield f"{name} ({kind.removesuffix('StateExited').lower()}) {seconds:.1f} s"
        elif kind in ("LambdaFunctionFailed", "TaskFailed"):
            yield f"  task failed: {details.get('error')}: {str(details.get('cause', ''))[:300]}"
        elif kind == "ExecutionSucceeded":
            yield "SUCCEEDED"
        elif kind in ("ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            yield f"{kind.removeprefix('Execution').upper()}: {details.get('error')}: {details.get('cause')}"


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})

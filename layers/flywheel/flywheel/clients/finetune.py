"""Fine-tuning providers behind one interface: upload, start, status, cancel, serve, smoke test.

`openai` drives OpenAI (and Azure OpenAI, with an AzureOpenAI client); `bedrock` drives Amazon
Bedrock model customization. Both are chosen by configuration.

Serving: an OpenAI fine-tune is invoked by its model name. A Bedrock custom model is not
invocable by its own ARN (InvokeModel / Converse refuse it): it is served through an on-demand
custom model deployment (CreateCustomModelDeployment; Amazon Nova models customised after
2025-07-16, us-east-1 and us-west-2) or through provisioned throughput, and that resource's ARN is
the `modelId` every inference passes.
https://docs.aws.amazon.com/bedrock/latest/userguide/deploy-custom-model-on-demand.html
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.clients.openai_http import http_client, quota_exhausted
from flywheel.clients.secrets import openai_api_key
from flywheel.clients.storage import upload_file
from flywheel.errors import DependencyUnavailable, ProviderQuotaExhausted, ProviderRefused
from flywheel.settings import Settings

if TYPE_CHECKING:  # the SDK is imported when an OpenAI fine-tuner is built, not with this module
    import httpx2
    import openai

__all__ = ["ProviderRefused"]

# Tests point the openai SDK at a fake provider through this transport.
TRANSPORT: httpx2.BaseTransport | None = None


@dataclass
class JobStatus:
    state: str  # running | succeeded | failed | cancelled
    provider_status: str
    model_id: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Serving:
    """Where a model is invoked: `model_id` is what inference calls take."""

    model_id: str
    kind: str  # provider | on_demand | provisioned
    state: str  # creating | active | failed
    error: str | None = None


@dataclass
class UploadedDataset:
    training: str
    validation: str | None


class FineTuneProvider(Protocol):
    name: str
    dataset_format: str  # the JSONL shape the provider reads

    def upload(self, training: Path, validation: Path | None, s3_prefix: str) -> UploadedDataset: ...
    def start(
        self,
        dataset: UploadedDataset,
        *,
        base_model: str,
        suffix: str,
        seed: int,
        method: str,
        metadata: dict[str, str],
        hyperparameters: dict[str, Any],
        output_s3: str,
    ) -> str: ...
    def find(self, *, run_id: str, suffix: str) -> str | None: ...
    def status(self, job_id: str) -> JobStatus: ...
    def cancel(self, job_id: str) -> None: ...
    def serve(self, model_id: str, name: str, tags: dict[str, str]) -> Serving: ...
    def serving_status(self, serving_id: str, kind: str) -> Serving: ...
    def retire(self, serving_id: str, kind: str) -> None: ...
    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str: ...


# --- OpenAI / Azure OpenAI -------------------------------------------------------------------

OPENAI_STATES = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def _refusal(exc: openai.APIStatusError, what: str) -> ProviderRefused | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    code = (error or {}).get("code") if isinstance(error, dict) else None
    if quota_exhausted(exc.status_code, body):
        return ProviderQuotaExhausted(
            f"OpenAI quota exhausted ({what}: 429 {code or 'insufficient_quota'}): the account's credits or "
            "spend limit are used up and retrying does not clear it. Add credits or raise the limit "
            "(platform.openai.com/settings/organization/billing), then start the run again.",
            provider="openai",
        )
    if exc.status_code == 403 and (code == "training_not_available" or "training_not_available" in str(exc)):
        return ProviderRefused(
            "OpenAI refused the fine-tuning job (403 training_not_available): this organisation cannot start "
            "new fine-tuning jobs (OpenAI stops new jobs on 2027-01-06). Switch FINETUNE_PROVIDER to 'bedrock' "
            "(or to an Azure OpenAI deployment) and start the run again.",
            provider="openai",
        )
    return None


class OpenAIFineTuner:
    name = "openai"
    dataset_format = "openai-chat"

    def __init__(self, sdk: openai.OpenAI) -> None:
        self.sdk = sdk
        # Calls that create what OpenAI bills or keeps (a fine-tuning job, an uploaded file) are sent
        # once: the SDK would resend a POST whose answer was lost (a read timeout, a 5xx) with no
        # idempotency key OpenAI honours, starting and billing a second job. The state machine's
        # StartJob / Upload retrier repeats the step instead, and the step first looks for what an
        # earlier attempt created (`find`, the files recorded on the run).
        self._once = sdk.with_options(max_retries=0)

    @classmethod
    def from_settings(
        cls,
        api_key: str,
        base_url: str | None = None,
        azure_endpoint: str | None = None,
        azure_api_version: str | None = None,
        timeout_s: float = 60,
    ) -> OpenAIFineTuner:
        import openai

        # the SDK retries 429s; one that says the quota is exhausted is not retried (see openai_http)
        http = http_client(timeout_s, TRANSPORT)
        if azure_endpoint:
            return cls(
                openai.AzureOpenAI(
                    api_key=api_key,
                    azure_endpoint=azure_endpoint,
                    timeout=timeout_s,
                    api_version=azure_api_version or "2025-04-01-preview",
                    http_client=http,
                )
            )
        return cls(openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, http_client=http))

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIStatusError as exc:
            refused = _refusal(exc, what)
            if refused:
                raise refused from exc
            if exc.status_code in (400, 401, 403, 404, 422):
                raise ProviderRefused(f"OpenAI rejected {what}: {exc.status_code} {exc.message}") from exc
            raise DependencyUnavailable(f"OpenAI {what} failed: {exc.status_code}") from exc
        except openai.APIConnectionError as exc:
            raise DependencyUnavailable(f"OpenAI {what} failed: {exc}") from exc

    def upload(self, training: Path, validation: Path | None, s3_prefix: str) -> UploadedDataset:
        def put(path: Path) -> str:
            with path.open("rb") as handle:
                return str(self._call("file upload", self._once.files.create, file=handle, purpose="fine-tune").id)

        return UploadedDataset(put(training), put(validation) if validation else None)

    def start(
        self,
        dataset: UploadedDataset,
        *,
        base_model: str,
        suffix: str,
        seed: int,
        method: str,
        metadata: dict[str, str],
        hyperparameters: dict[str, Any],
        output_s3: str,
    ) -> str:
        job = self._call(
            "job creation",
            self._once.fine_tuning.jobs.create,
            model=base_model,
            training_file=dataset.training,
            validation_file=dataset.validation,
            suffix=suffix[:64],
            seed=seed,
            metadata=metadata,
            method={"type": method, method: {"hyperparameters": hyperparameters}},
        )
        return str(job.id)

    def find(self, *, run_id: str, suffix: str) -> str | None:
        """The job this run started already, if any: the newest jobs, matched on the run id given
        as metadata at creation (OpenAI has no idempotency key for jobs; Azure takes no filter)."""
        page = self._call("job listing", self.sdk.fine_tuning.jobs.list, limit=100)
        return next((str(job.id) for job in page.data if (job.metadata or {}).get("run_id") == run_id), None)

    def status(self, job_id: str) -> JobStatus:
        job = self._call("status", self.sdk.fine_tuning.jobs.retrieve, job_id)
        error = getattr(job, "error", None)
        return JobStatus(
            state=OPENAI_STATES.get(job.status, "running"),  # validating_files, queued, running, or new ones
            provider_status=str(job.status),
            model_id=job.fine_tuned_model,
            trained_tokens=getattr(job, "trained_tokens", None),
            error=getattr(error, "message", None) if error else None,
            raw=job.model_dump(mode="json"),
        )

    def cancel(self, job_id: str) -> None:
        self._call("cancel", self.sdk.fine_tuning.jobs.cancel, job_id)

    def serve(self, model_id: str, name: str, tags: dict[str, str]) -> Serving:
        return Serving(model_id, "provider", "active")  # OpenAI serves its fine-tunes by name

    def serving_status(self, serving_id: str, kind: str) -> Serving:
        return Serving(serving_id, "provider", "active")

    def retire(self, serving_id: str, kind: str) -> None:
        """Nothing to release: the fine-tune stays listed in the OpenAI account (deleting it would be final)."""

    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str:
        answer = self._call(
            "smoke test",
            self.sdk.chat.completions.create,
            model=model_id,
            messages=messages,
            max_tokens=400,
            temperature=0,
        )
        return str(answer.choices[0].message.content or "")


# --- Amazon Bedrock model customization ------------------------------------------------------

BEDROCK_STATES = {
    "Completed": "succeeded",
    "Failed": "failed",
    "Stopped": "cancelled",
    "Stopping": "running",
    "InProgress": "running",
}
# custom model deployments: Creating | Active | Failed; provisioned throughput: Creating | InService |
# Updating | Failed (an update keeps serving)
SERVING_STATES = {
    "Creating": "creating",
    "Active": "active",
    "InService": "active",
    "Updating": "active",
    "Failed": "failed",
}


def _aws(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in (
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ServiceQuotaExceededException",
            "TooManyTagsException",
        ):
            raise ProviderRefused(f"Bedrock rejected {what}: {code}: {exc}") from exc
        raise DependencyUnavailable(f"Bedrock {what} failed: {code}") from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable(f"Bedrock {what} failed: {exc}") from exc


def _request_token(name: str) -> str:
    """The same token for the same deployment name: a retried step creates nothing twice."""
    return hashlib.sha256(name.encode()).hexdigest()[:64]


class BedrockFineTuner:
    name = "bedrock"
    dataset_format = "bedrock-conversation-2024"

    def __init__(self, role_arn: str, serving: str = "on_demand", model_units: int = 1) -> None:
        self.role_arn = role_arn
        self.serving = serving  # on_demand | provisioned
        self.model_units = model_units

    def upload(self, training: Path, validation: Path | None, s3_prefix: str) -> UploadedDataset:
        train_uri = upload_file(training, f"{s3_prefix}/bedrock/train.jsonl")
        validation_uri = upload_file(validation, f"{s3_prefix}/bedrock/validation.jsonl") if validation else None
        return UploadedDataset(train_uri, validation_uri)

    def start(
        self,
        dataset: UploadedDataset,
        *,
        base_model: str,
        suffix: str,
        seed: int,
        method: str,
        metadata: dict[str, str],
        hyperparameters: dict[str, Any],
        output_s3: str,
    ) -> str:
        if method != "supervised":
            raise ProviderRefused("Bedrock fine-tuning takes supervised datasets; use method 'supervised'")
        name = f"flywheel-{suffix}"[:63]
        kwargs: dict[str, Any] = {
            "jobName": name,
            "customModelName": name,
            "roleArn": self.role_arn,
            "baseModelIdentifier": base_model,
            # the same run asking twice (a retried step) gets the same job, not a second one
            "clientRequestToken": name,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": dataset.training},
            "outputDataConfig": {"s3Uri": output_s3},
            "hyperParameters": {k: str(v) for k, v in hyperparameters.items()},
            "jobTags": [{"key": k, "value": v} for k, v in metadata.items()],
        }
        if dataset.validation:
            kwargs["validationDataConfig"] = {"validators": [{"s3Uri": dataset.validation}]}
        _aws("job creation", client("bedrock").create_model_customization_job, **kwargs)
        return name  # the job name identifies the job in every later call (and reads better than its ARN)

    def find(self, *, run_id: str, suffix: str) -> str | None:
        """The job this run started already (its name is the run's), if any."""
        name = f"flywheel-{suffix}"[:63]
        try:
            client("bedrock").get_model_customization_job(jobIdentifier=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException", "ValidationException"):
                return None
            raise DependencyUnavailable(
                f"Bedrock job lookup failed: {exc.response.get('Error', {}).get('Code')}"
            ) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable(f"Bedrock job lookup failed: {exc}") from exc
        return name

    def status(self, job_id: str) -> JobStatus:
        job = _aws("status", client("bedrock").get_model_customization_job, jobIdentifier=job_id)
        state = BEDROCK_STATES.get(job["status"], "running")
        return JobStatus(
            state=state,
            provider_status=job["status"],
            model_id=job.get("outputModelArn") if state == "succeeded" else None,
            error=job.get("failureMessage") if state == "failed" else None,
            raw=json.loads(json.dumps(job, default=str)),
        )

    def cancel(self, job_id: str) -> None:
        _aws("cancel", client("bedrock").stop_model_customization_job, jobIdentifier=job_id)

    def serve(self, model_id: str, name: str, tags: dict[str, str]) -> Serving:
        """Start serving a custom model; `serving_status` says when it is active (minutes).

        Idempotent by `name`: the request token is derived from it, and Bedrock answers a repeated
        token with the resource it made; should it no longer remember the token, the name is taken
        by the resource an earlier call made, which is looked up by name. The service model lists no
        ConflictException for these two calls, so a taken name may come back as a ValidationException:
        on either, the name is looked up, and the first error stands when nothing has it."""
        name = re.sub(r"[^0-9a-zA-Z]+", "-", name).strip("-")[:63]
        aws_tags = [{"key": k, "value": v} for k, v in tags.items()]
        try:
            if self.serving == "provisioned":
                # no commitment term: billed by the hour until deleted
                arn = _aws(
                    "provisioned throughput",
                    client("bedrock").create_provisioned_model_throughput,
                    modelUnits=self.model_units,
                    provisionedModelName=name,
                    modelId=model_id,
                    tags=aws_tags,
                    clientRequestToken=_request_token(name),
                )["provisionedModelArn"]
                return Serving(str(arn), "provisioned", "creating")
            arn = _aws(
                "custom model deployment",
                client("bedrock").create_custom_model_deployment,
                modelDeploymentName=name,
                modelArn=model_id,
                tags=aws_tags,
                description="flywheel: on-demand serving of a fine-tuned model",
                clientRequestToken=_request_token(name),
            )["customModelDeploymentArn"]
            return Serving(str(arn), "on_demand", "creating")
        except (DependencyUnavailable, ProviderRefused) as exc:
            cause = exc.__cause__
            code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
            if code not in ("ConflictException", "ValidationException"):
                raise
            try:
                return self._serving("provisioned" if self.serving == "provisioned" else "on_demand", name)
            except ProviderRefused:  # no resource of that name: the error was about something else
                raise exc from None

    def serving_status(self, serving_id: str, kind: str) -> Serving:
        return self._serving(kind, serving_id)

    def _serving(self, kind: str, identifier: str) -> Serving:
        """The deployment (or provisioned throughput) by ARN or name: its ARN and state."""
        if kind == "provisioned":
            found = _aws(
                "provisioned throughput status",
                client("bedrock").get_provisioned_model_throughput,
                provisionedModelId=identifier,
            )
            arn = found.get("provisionedModelArn", identifier)
        else:
            found = _aws(
                "deployment status",
                client("bedrock").get_custom_model_deployment,
                customModelDeploymentIdentifier=identifier,
            )
            arn = found.get("customModelDeploymentArn", identifier)
        state = SERVING_STATES.get(found["status"], "creating")
        return Serving(str(arn), kind, state, found.get("failureMessage") if state == "failed" else None)

    def retire(self, serving_id: str, kind: str) -> None:
        """Delete the deployment (or provisioned throughput); one already gone is fine."""
        try:
            if kind == "provisioned":
                client("bedrock").delete_provisioned_model_throughput(provisionedModelId=serving_id)
            else:
                client("bedrock").delete_custom_model_deployment(customModelDeploymentIdentifier=serving_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise DependencyUnavailable(f"Bedrock could not delete {serving_id}", reason=str(exc)) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable(f"Bedrock could not delete {serving_id}", reason=str(exc)) from exc

    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str:
        system = [{"text": m["content"]} for m in messages if m["role"] == "system"]
        body = {
            "schemaVersion": "messages-v1",
            "system": system,
            "messages": [
                {"role": m["role"], "content": [{"text": m["content"]}]} for m in messages if m["role"] != "system"
            ],
            "inferenceConfig": {"maxTokens": 400, "temperature": 0},
        }
        answer = _aws(
            "smoke test",
            client("bedrock-runtime").invoke_model,
            modelId=model_id,
            body=json.dumps(body),
            contentType="application/json",
            accept="application/json",
        )
        payload = json.loads(answer["body"].read() or b"{}")
        content = payload.get("output", {}).get("message", {}).get("content", [])
        return "".join(part.get("text", "") for part in content)


def provider_for(name: str, settings: Settings) -> FineTuneProvider:
    """The configured fine-tuning provider (`openai` or `bedrock`)."""
    if name == "openai":
        key = openai_api_key()
        if not key:
            raise ProviderRefused("no OpenAI API key configured (openai_api_key in the flywheel/<stage>/openai secret)")
        return OpenAIFineTuner.from_settings(
            key, settings.openai_base_url, settings.azure_openai_endpoint, settings.azure_openai_api_version
        )
    return BedrockFineTuner(settings.bedrock_role_arn or "", settings.bedrock_serving, settings.bedrock_model_units)

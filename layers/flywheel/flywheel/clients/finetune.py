"""Fine-tuning providers behind one interface: upload, start, status, cancel, smoke test.

`openai` drives OpenAI (and Azure OpenAI, with an AzureOpenAI client); `bedrock` drives Amazon
Bedrock model customization. Both are chosen by configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2
import openai
from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.clients.storage import upload_file
from flywheel.errors import DependencyUnavailable, ProviderRefused

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
class UploadedDataset:
    training: str
    validation: str | None


class FineTuneProvider(Protocol):
    name: str
    dataset_format: str  # the JSONL shape the provider reads

    def upload(self, training: Path, validation: Path | None, s3_prefix: str) -> UploadedDataset: ...
    def start(self, dataset: UploadedDataset, *, base_model: str, suffix: str, seed: int, method: str,
              metadata: dict[str, str], hyperparameters: dict[str, Any], output_s3: str) -> str: ...
    def find(self, *, run_id: str, suffix: str) -> str | None: ...
    def status(self, job_id: str) -> JobStatus: ...
    def cancel(self, job_id: str) -> None: ...
    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str: ...


# --- OpenAI / Azure OpenAI -------------------------------------------------------------------

OPENAI_STATES = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def _refusal(exc: openai.APIStatusError) -> ProviderRefused | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    code = (error or {}).get("code") if isinstance(error, dict) else None
    if exc.status_code == 403 and (code == "training_not_available" or "training_not_available" in str(exc)):
        return ProviderRefused(
            "OpenAI refused the fine-tuning job (403 training_not_available): this organisation cannot start "
            "new fine-tuning jobs (OpenAI stops new jobs on 2027-01-06). Switch FINETUNE_PROVIDER to 'bedrock' "
            "(or to an Azure OpenAI deployment) and start the run again.", provider="openai")
    return None


class OpenAIFineTuner:
    name = "openai"
    dataset_format = "openai-chat"

    def __init__(self, sdk: openai.OpenAI) -> None:
        self.sdk = sdk

    @classmethod
    def from_settings(cls, api_key: str, base_url: str | None = None, azure_endpoint: str | None = None,
                      azure_api_version: str | None = None, timeout_s: float = 60) -> OpenAIFineTuner:
        http = httpx2.Client(transport=TRANSPORT, timeout=timeout_s) if TRANSPORT else None
        if azure_endpoint:
            return cls(openai.AzureOpenAI(api_key=api_key, azure_endpoint=azure_endpoint, timeout=timeout_s,
                                          api_version=azure_api_version or "2025-04-01-preview", http_client=http))
        return cls(openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, http_client=http))

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except openai.APIStatusError as exc:
            refused = _refusal(exc)
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
                return str(self._call("file upload", self.sdk.files.create, file=handle, purpose="fine-tune").id)
        return UploadedDataset(put(training), put(validation) if validation else None)

    def start(self, dataset: UploadedDataset, *, base_model: str, suffix: str, seed: int, method: str,
              metadata: dict[str, str], hyperparameters: dict[str, Any], output_s3: str) -> str:
        job = self._call(
            "job creation", self.sdk.fine_tuning.jobs.create, model=base_model, training_file=dataset.training,
            validation_file=dataset.validation, suffix=suffix[:64], seed=seed, metadata=metadata,
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
            provider_status=str(job.status), model_id=job.fine_tuned_model,
            trained_tokens=getattr(job, "trained_tokens", None),
            error=getattr(error, "message", None) if error else None, raw=job.model_dump(mode="json"),
        )

    def cancel(self, job_id: str) -> None:
        self._call("cancel", self.sdk.fine_tuning.jobs.cancel, job_id)

    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str:
        answer = self._call("smoke test", self.sdk.chat.completions.create, model=model_id, messages=messages,
                            max_tokens=400, temperature=0)
        return str(answer.choices[0].message.content or "")


# --- Amazon Bedrock model customization ------------------------------------------------------

BEDROCK_STATES = {"Completed": "succeeded", "Failed": "failed", "Stopped": "cancelled", "Stopping": "running",
                  "InProgress": "running"}


def _aws(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ValidationException", "AccessDeniedException", "ResourceNotFoundException",
                    "ServiceQuotaExceededException"):
            raise ProviderRefused(f"Bedrock rejected {what}: {code}: {exc}") from exc
        raise DependencyUnavailable(f"Bedrock {what} failed: {code}") from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable(f"Bedrock {what} failed: {exc}") from exc


class BedrockFineTuner:
    name = "bedrock"
    dataset_format = "bedrock-conversation-2024"

    def __init__(self, role_arn: str) -> None:
        self.role_arn = role_arn

    def upload(self, training: Path, validation: Path | None, s3_prefix: str) -> UploadedDataset:
        train_uri = upload_file(training, f"{s3_prefix}/bedrock/train.jsonl")
        validation_uri = upload_file(validation, f"{s3_prefix}/bedrock/validation.jsonl") if validation else None
        return UploadedDataset(train_uri, validation_uri)

    def start(self, dataset: UploadedDataset, *, base_model: str, suffix: str, seed: int, method: str,
              metadata: dict[str, str], hyperparameters: dict[str, Any], output_s3: str) -> str:
        if method != "supervised":
            raise ProviderRefused("Bedrock fine-tuning takes supervised datasets; use method 'supervised'")
        name = f"flywheel-{suffix}"[:63]
        kwargs: dict[str, Any] = {
            "jobName": name, "customModelName": name, "roleArn": self.role_arn, "baseModelIdentifier": base_model,
            # the same run asking twice (a retried step) gets the same job, not a second one
            "clientRequestToken": name,
            "customizationType": "FINE_TUNING", "trainingDataConfig": {"s3Uri": dataset.training},
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
            raise DependencyUnavailable(f"Bedrock job lookup failed: {exc.response.get('Error', {}).get('Code')}") \
                from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable(f"Bedrock job lookup failed: {exc}") from exc
        return name

    def status(self, job_id: str) -> JobStatus:
        job = _aws("status", client("bedrock").get_model_customization_job, jobIdentifier=job_id)
        state = BEDROCK_STATES.get(job["status"], "running")
        return JobStatus(state=state, provider_status=job["status"],
                         model_id=job.get("outputModelArn") if state == "succeeded" else None,
                         error=job.get("failureMessage") if state == "failed" else None,
                         raw=json.loads(json.dumps(job, default=str)))

    def cancel(self, job_id: str) -> None:
        _aws("cancel", client("bedrock").stop_model_customization_job, jobIdentifier=job_id)

    def smoke_test(self, model_id: str, messages: list[dict[str, str]]) -> str:
        system = [{"text": m["content"]} for m in messages if m["role"] == "system"]
        body = {"schemaVersion": "messages-v1", "system": system,
                "messages": [{"role": m["role"], "content": [{"text": m["content"]}]}
                             for m in messages if m["role"] != "system"],
                "inferenceConfig": {"maxTokens": 400, "temperature": 0}}
        answer = _aws("smoke test", client("bedrock-runtime").invoke_model, modelId=model_id,
                      body=json.dumps(body), contentType="application/json", accept="application/json")
        payload = json.loads(answer["body"].read() or b"{}")
        content = payload.get("output", {}).get("message", {}).get("content", [])
        return "".join(part.get("text", "") for part in content)

"""Serving a Bedrock custom model, against the real Bedrock service model (botocore's Stubber
checks every request's parameters): on-demand deployments, provisioned throughput, deletion, and
inference through the deployment's ARN — never the custom model's own ARN, which Bedrock refuses."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from flywheel.clients.aws import client, reset_clients
from flywheel.clients.finetune import BedrockFineTuner, ProviderRefused, _request_token
from flywheel.errors import DependencyUnavailable
from flywheel.settings import reset_settings

CUSTOM_MODEL = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/a1b2c3d4e5f6"
DEPLOYMENT = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/k9j8h7g6f5d4"
PROVISIONED = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/p1q2r3s4t5u6"


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Stubber]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    reset_settings()
    reset_clients()
    stubs = {"bedrock": Stubber(client("bedrock")), "bedrock-runtime": Stubber(client("bedrock-runtime"))}
    for stub in stubs.values():
        stub.activate()
    yield stubs
    for stub in stubs.values():
        stub.assert_no_pending_responses()
        stub.deactivate()
    reset_clients()


def test_on_demand_serving_creates_a_deployment_idempotently_and_waits_for_it(bedrock: dict[str, Stubber]) -> None:
    stub = bedrock["bedrock"]
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock", "on_demand")
    # the same name gives the same client request token on a retried step: Bedrock creates one deployment
    expected = {
        "modelDeploymentName": "fw-4f2c-run",
        "modelArn": CUSTOM_MODEL,
        "description": ANY,
        "tags": [{"key": "run_id", "value": "4f2c"}],
        "clientRequestToken": _request_token("fw-4f2c-run"),
    }
    stub.add_response("create_custom_model_deployment", {"customModelDeploymentArn": DEPLOYMENT}, expected)
    stub.add_response("create_custom_model_deployment", {"customModelDeploymentArn": DEPLOYMENT}, expected)
    first = tuner.serve(CUSTOM_MODEL, "fw-4f2c-run", {"run_id": "4f2c"})
    again = tuner.serve(CUSTOM_MODEL, "fw-4f2c-run", {"run_id": "4f2c"})  # a retried step
    assert (first.model_id, first.kind, first.state) == (DEPLOYMENT, "on_demand", "creating")
    assert again == first

    stub.add_response(
        "get_custom_model_deployment", _deployment("Creating"), {"customModelDeploymentIdentifier": DEPLOYMENT}
    )
    stub.add_response(
        "get_custom_model_deployment", _deployment("Active"), {"customModelDeploymentIdentifier": DEPLOYMENT}
    )
    stub.add_response(
        "get_custom_model_deployment",
        _deployment("Failed", "Model is not supported for on-demand"),
        {"customModelDeploymentIdentifier": DEPLOYMENT},
    )
    assert tuner.serving_status(DEPLOYMENT, "on_demand").state == "creating"
    assert tuner.serving_status(DEPLOYMENT, "on_demand").state == "active"
    failed = tuner.serving_status(DEPLOYMENT, "on_demand")
    assert (failed.state, failed.error) == ("failed", "Model is not supported for on-demand")


def test_a_taken_name_refused_as_invalid_is_the_earlier_calls_deployment(bedrock: dict[str, Stubber]) -> None:
    """(An outside review.) CreateCustomModelDeployment lists no ConflictException in the service
    model: a name an earlier call took (its token forgotten) may be refused as a ValidationException.
    The deployment of that name is the one to use; a ValidationException of another kind stands."""
    stub = bedrock["bedrock"]
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock", "on_demand")
    taken = "A deployment with the name fw-4f2c-run already exists."
    stub.add_client_error("create_custom_model_deployment", "ValidationException", taken, 400)
    stub.add_response(
        "get_custom_model_deployment", _deployment("Active"), {"customModelDeploymentIdentifier": "fw-4f2c-run"}
    )
    found = tuner.serve(CUSTOM_MODEL, "fw-4f2c-run", {"run_id": "4f2c"})
    assert (found.model_id, found.state) == (DEPLOYMENT, "active")

    stub.add_client_error("create_custom_model_deployment", "ValidationException", "Model is not supported", 400)
    stub.add_client_error("get_custom_model_deployment", "ResourceNotFoundException", "not found", 404)
    with pytest.raises(ProviderRefused, match="Model is not supported"):
        tuner.serve(CUSTOM_MODEL, "fw-4f2c-run", {"run_id": "4f2c"})


def test_provisioned_throughput_serving(bedrock: dict[str, Stubber]) -> None:
    stub = bedrock["bedrock"]
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock", "provisioned", model_units=2)
    stub.add_response(
        "create_provisioned_model_throughput",
        {"provisionedModelArn": PROVISIONED},
        {
            "modelUnits": 2,
            "provisionedModelName": "fw-run",
            "modelId": CUSTOM_MODEL,
            "tags": [],
            "clientRequestToken": ANY,
        },
    )
    served = tuner.serve(CUSTOM_MODEL, "fw-run", {})
    assert (served.model_id, served.kind) == (PROVISIONED, "provisioned")
    stub.add_response(
        "get_provisioned_model_throughput",
        {
            "modelUnits": 2,
            "desiredModelUnits": 2,
            "provisionedModelName": "fw-run",
            "provisionedModelArn": PROVISIONED,
            "modelArn": CUSTOM_MODEL,
            "desiredModelArn": CUSTOM_MODEL,
            "foundationModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
            "status": "InService",
            "creationTime": "2026-11-02T10:00:00Z",
            "lastModifiedTime": "2026-11-02T10:20:00Z",
        },
        {"provisionedModelId": PROVISIONED},
    )
    assert tuner.serving_status(PROVISIONED, "provisioned").state == "active"
    stub.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": PROVISIONED})
    tuner.retire(PROVISIONED, "provisioned")


def test_retiring_deletes_the_deployment_and_tolerates_one_already_gone(bedrock: dict[str, Stubber]) -> None:
    stub = bedrock["bedrock"]
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock")
    stub.add_response("delete_custom_model_deployment", {}, {"customModelDeploymentIdentifier": DEPLOYMENT})
    stub.add_client_error(
        "delete_custom_model_deployment",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params={"customModelDeploymentIdentifier": DEPLOYMENT},
    )
    stub.add_client_error(
        "delete_custom_model_deployment",
        "ThrottlingException",
        http_status_code=429,
        expected_params={"customModelDeploymentIdentifier": DEPLOYMENT},
    )
    tuner.retire(DEPLOYMENT, "on_demand")
    tuner.retire(DEPLOYMENT, "on_demand")
    with pytest.raises(DependencyUnavailable):
        tuner.retire(DEPLOYMENT, "on_demand")


def test_the_smoke_test_invokes_the_deployment_arn(bedrock: dict[str, Stubber]) -> None:
    answer = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "Hi {{first_name}}"}]}}})
    bedrock["bedrock-runtime"].add_response(
        "invoke_model",
        {"body": StreamingBody(io.BytesIO(answer.encode()), len(answer)), "contentType": "application/json"},
        {"modelId": DEPLOYMENT, "body": ANY, "contentType": "application/json", "accept": "application/json"},
    )
    tuner = BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock")
    assert tuner.smoke_test(DEPLOYMENT, [{"role": "user", "content": "Write to {{first_name}}"}]) == "Hi {{first_name}}"


def test_a_refused_deployment_is_a_provider_refusal(bedrock: dict[str, Stubber]) -> None:
    bedrock["bedrock"].add_client_error(
        "create_custom_model_deployment",
        "ValidationException",
        "Custom model deployment is not supported for this model",
        expected_params={
            "modelDeploymentName": "fw-run",
            "modelArn": CUSTOM_MODEL,
            "description": ANY,
            "tags": [],
            "clientRequestToken": ANY,
        },
    )
    # no deployment has the name: the refusal stands
    bedrock["bedrock"].add_client_error(
        "get_custom_model_deployment",
        "ResourceNotFoundException",
        "not found",
        404,
        {"customModelDeploymentIdentifier": "fw-run"},
    )
    with pytest.raises(ProviderRefused, match="not supported"):
        BedrockFineTuner("arn:aws:iam::123456789012:role/bedrock").serve(CUSTOM_MODEL, "fw-run", {})


def _deployment(status: str, failure: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "customModelDeploymentArn": DEPLOYMENT,
        "modelDeploymentName": "fw-4f2c-run",
        "modelArn": CUSTOM_MODEL,
        "createdAt": "2026-11-02T10:00:00Z",
        "status": status,
    }
    if failure:
        found["failureMessage"] = failure
    return found


# What the serving calls may answer, as the Bedrock service model lists it for each operation:
# throttling and internal errors pass (the step is retried), everything else is a refusal.
TRANSIENT = {"ThrottlingException", "InternalServerException"}
SERVING_CALLS: dict[str, tuple[str, tuple[Any, ...], str | None]] = {
    # operation: (tuner method, its arguments, the lookup by name a refusal of the name leads to)
    "GetCustomModelDeployment": ("serving_status", (DEPLOYMENT, "on_demand"), None),
    "GetProvisionedModelThroughput": ("serving_status", (PROVISIONED, "provisioned"), None),
    "CreateCustomModelDeployment": ("serve", (CUSTOM_MODEL, "fw-run", {}), "get_custom_model_deployment"),
    "CreateProvisionedModelThroughput": ("serve", (CUSTOM_MODEL, "fw-run", {}), "get_provisioned_model_throughput"),
}


def _modeled_errors(operation: str) -> list[tuple[str, int]]:
    model = client("bedrock").meta.service_model.operation_model(operation)
    return [(shape.name, shape.metadata["error"]["httpStatusCode"]) for shape in model.error_shapes]


@pytest.mark.parametrize("operation", sorted(SERVING_CALLS))
def test_serving_errors_are_transient_only_when_retrying_can_clear_them(
    bedrock: dict[str, Stubber], operation: str
) -> None:
    """Every error the service model lists for the serving calls, through the Stubber (which checks
    each error's modeled fields against the service model): a throttle or an internal error is
    DependencyUnavailable (the state machine retries the step for minutes), the rest ProviderRefused
    (the run fails at once). TooManyTagsException was taken as transient."""
    method, args, lookup = SERVING_CALLS[operation]
    tuner = BedrockFineTuner(
        "arn:aws:iam::123456789012:role/bedrock", "provisioned" if "Provisioned" in operation else "on_demand"
    )
    stub = bedrock["bedrock"]
    codes = _modeled_errors(operation)
    assert {code for code, _ in codes} >= TRANSIENT
    for code, status in codes:
        name = next(m for m, api in stub.client.meta.method_to_api_mapping.items() if api == operation)
        stub.add_client_error(name, code, f"{code} from Bedrock", status, modeled_fields={"message": "from Bedrock"})
        if lookup and code == "ValidationException":  # a taken name may be refused so: looked up, not found
            stub.add_client_error(lookup, "ResourceNotFoundException", "not found", 404)
        expected = DependencyUnavailable if code in TRANSIENT else ProviderRefused
        with pytest.raises(expected) as raised:
            getattr(tuner, method)(*args)
        assert code in str(raised.value), code

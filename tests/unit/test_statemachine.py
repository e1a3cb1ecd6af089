"""The weekly training ASL: well-formed, every Task retried and caught, every path reachable."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import BaseModel

from flywheel.models.training import RunRequest
from flywheel.services.training import STEPS
from flywheel.settings import Settings
from tests.conftest import ROOT

ASL = json.loads((ROOT / "statemachine" / "weekly_training.asl.json").read_text())
STATES = ASL["States"]


# https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
AWS_RECOMMENDED_RETRIES = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}


def _targets(state: dict) -> set[str]:
    found = {state["Next"]} if "Next" in state else set()
    found |= {c["Next"] for c in state.get("Choices", [])} | ({state["Default"]} if "Default" in state else set())
    found |= {c["Next"] for c in state.get("Catch", [])}
    return found


def test_every_transition_points_at_a_state_and_every_state_is_reachable() -> None:
    assert ASL["StartAt"] in STATES
    for name, state in STATES.items():
        assert _targets(state) <= set(STATES), name
        assert state["Type"] in ("Task", "Choice", "Wait", "Succeed", "Fail"), name
        assert ("Next" in state) != (state["Type"] in ("Succeed", "Fail", "Choice")), name
    seen, todo = set(), [ASL["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_targets(STATES[name]))
    assert seen == set(STATES)


def test_every_task_retries_transient_errors_and_records_failures() -> None:
    for name, state in STATES.items():
        if state["Type"] != "Task":
            continue
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {"Lambda.TooManyRequestsException", "DependencyUnavailable"} <= retried
        assert retried >= AWS_RECOMMENDED_RETRIES, name
        [catch] = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
        assert catch["Next"] == ("Failed" if name == "RecordFailure" else "RecordFailure")
        assert state["Parameters"]["FunctionName"] == "${TrainingPipelineFunctionArn}"
        assert state["Parameters"]["Payload"]["step"] in STEPS


def test_wait_seconds_come_from_the_input() -> None:
    assert STATES["WaitForJob"] == {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "PollJob"}


def test_a_job_that_ended_before_its_cancel_goes_on_by_its_state() -> None:
    """CancelJob answers a job that succeeded meanwhile (job_state succeeded): it is registered;
    anything else (cancelled, failed) is recorded as the run's failure."""
    assert STATES["JobState"]["Choices"][-1] == {
        "Variable": "$.job_state",
        "StringEquals": "timed_out",
        "Next": "CancelJob",
    }
    assert STATES["CancelJob"]["Next"] == "CancelledJobState"
    after = STATES["CancelledJobState"]
    assert after["Type"] == "Choice" and after["Default"] == "RecordFailure"
    assert after["Choices"] == [{"Variable": "$.job_state", "StringEquals": "succeeded", "Next": "Register"}]


def test_the_model_is_served_before_its_smoke_test_by_a_wait_and_poll_loop() -> None:
    # the state machine waits (no Lambda sleeps): Register -> StartServing -> ServingState
    #   -> active: SmokeTest | failed, timed_out: RecordFailure | else WaitForServing -> PollServing
    assert STATES["Register"]["Next"] == "StartServing"
    assert STATES["StartServing"]["Next"] == STATES["PollServing"]["Next"] == "ServingState"
    routes = {c["StringEquals"]: c["Next"] for c in STATES["ServingState"]["Choices"]}
    assert routes == {"active": "SmokeTest", "failed": "RecordFailure", "timed_out": "RecordFailure"}
    assert STATES["ServingState"]["Default"] == "WaitForServing"
    assert STATES["WaitForServing"] == {"Type": "Wait", "SecondsPath": "$.serving_wait_seconds", "Next": "PollServing"}


def test_the_template_wires_the_definition_and_the_monday_schedule() -> None:
    from flywheel.local.template import read_template

    machine = read_template(ROOT / "template.yaml").body["Resources"]["WeeklyTrainingStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachine/weekly_training.asl.json"
    assert "TrainingPipelineFunctionArn" in machine["DefinitionSubstitutions"]
    weekly = machine["Events"]["Weekly"]["Properties"]
    assert weekly["Schedule"] == "cron(0 2 ? * MON *)"
    assert json.loads(weekly["Input"]) == {"min_quality_score": 0.6, "deploy": True, "canary_percentage": 10}


def _retry_delays(retrier: dict) -> float:
    """The longest a retrier waits in all: each interval grows by BackoffRate, capped at
    MaxDelaySeconds (jitter only shortens it)."""
    interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", math.inf)
    return sum(min(interval * rate**n, cap) for n in range(retrier.get("MaxAttempts", 3)))


# the Tasks whose step calls a provider (fine-tuning, serving) and may be repeated: a repeat finds
# what an earlier attempt did (files recorded on the run, a job or deployment by its name and token)
PROVIDER_TASKS = {"Upload", "StartJob", "CancelJob", "StartServing", "PollServing", "SmokeTest"}


@pytest.mark.parametrize("name", sorted(PROVIDER_TASKS))
def test_a_step_that_cannot_reach_the_provider_is_retried_for_minutes(name: str) -> None:
    """A throttled or overloaded provider says nothing about the job or the model: these Tasks
    retry DependencyUnavailable on a retrier of its own (Step Functions uses the first retrier that
    matches), for minutes (time for a throttling burst to pass, for a fresh deployment to take
    traffic), before RecordFailure. (PollServing, StartServing, StartJob, CancelJob and Upload had
    only the 3 quick retries, about 14 s: one throttling burst failed the run.)"""
    retriers = STATES[name]["Retry"]
    [provider] = [r for r in retriers if "DependencyUnavailable" in r["ErrorEquals"]]
    assert provider["ErrorEquals"] == ["DependencyUnavailable"]
    assert "JitterStrategy" not in provider  # the full backoff, not a random share of it
    assert 300 <= _retry_delays(provider) <= 900 and provider["MaxAttempts"] >= 5
    assert STATES[name]["Parameters"]["Payload"]["step"] in STEPS


def test_steps_that_call_no_provider_keep_the_quick_retries() -> None:
    """The others call no provider (or, PollJob, absorb its errors themselves; BuildDataset would
    repeat a whole build): DependencyUnavailable there is the database, retried quickly."""
    tasks = {name for name, state in STATES.items() if state["Type"] == "Task"}
    assert tasks > PROVIDER_TASKS
    for name in tasks - PROVIDER_TASKS:
        [retrier] = STATES[name]["Retry"]
        assert "DependencyUnavailable" in retrier["ErrorEquals"] and retrier["MaxAttempts"] == 3, name


def _upper_bound(model: type[BaseModel], field: str) -> int:
    [bound] = [m.le for m in model.model_fields[field].metadata if hasattr(m, "le")]
    return int(bound)


def test_an_execution_times_out_above_its_longest_legitimate_run_and_before_the_next_weekly_one() -> None:
    """Without TimeoutSeconds an execution that hangs runs for a year and TrainingExecutionsTimedOutAlarm
    never fires; with one below the longest run the limits allow, a slow but healthy run is cut off
    (and its provider job is not cancelled)."""
    from flywheel.local.template import read_template

    function = read_template(ROOT / "template.yaml").body["Resources"]["TrainingPipelineFunction"]["Properties"]
    tasks = [s for s in STATES.values() if s["Type"] == "Task"]
    # each retrier counts its own attempts: a Task runs at most once plus every retrier's maximum,
    # and waits (jitter at most) every retrier's full backoff
    attempts = sum(1 + sum(r["MaxAttempts"] for r in s["Retry"]) for s in tasks)
    backoff = sum(_retry_delays(r) for s in tasks for r in s["Retry"])
    max_wait = max(_upper_bound(RunRequest, "max_wait_seconds"), _upper_bound(Settings, "training_max_wait_s"))
    serving_wait = 60  # start_serving: min(60, wait_seconds)
    serving_max = _upper_bound(Settings, "serving_max_wait_s")
    # polling counts the clock since the job (the serving) started, so every poll before the limit,
    # its retries and their backoff included, is inside max_wait (serving_max). Past it: the poll
    # that read the clock just before (its one answered attempt, the function's whole timeout), one
    # more wait, and the poll that stops (every attempt and backoff: counted with the Tasks below)
    job = max_wait + function["Timeout"] + _upper_bound(RunRequest, "wait_seconds")
    serving = serving_max + function["Timeout"] + serving_wait
    # every Task at its worst once (each attempt running the function's whole timeout)
    longest = job + serving + attempts * function["Timeout"] + backoff
    assert (attempts, backoff) == (84, 2958)  # the README's terms
    assert longest == 260_418  # the README's sum ("Timeouts and limits")
    assert longest < ASL["TimeoutSeconds"] < 7 * 86_400
    readme = (ROOT / "README.md").read_text()
    assert f"{ASL['TimeoutSeconds']:,} s ({ASL['TimeoutSeconds'] // 3600} h)" in readme

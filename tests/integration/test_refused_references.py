"""Input that names what the caller may not use is refused, and nothing is written: a registered
message's `route` must be one `GET /route` could have answered for its organisation's lead (a model
in the registry, an experiment that routed this lead, the lead's own arm and that arm's model), and
`POST /replies` attaches a reply only to an outcome of the organisation it names (another
organisation's outcome is a 404, like an unknown one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from flywheel.client import FlywheelClient
from flywheel.services import experiments, training
from flywheel.settings import reset_settings
from tests.conftest import ApiClient, load_event
from tests.integration.test_api_fuzz import COUNTS
from tests.integration.test_experiments import insert_models
from tests.webhook_helpers import configure

pytestmark = pytest.mark.integration

CHAMPION, CHALLENGER = "flywheel-v1.0.0", "flywheel-v1.1.0"
WRITES = COUNTS.replace("SELECT ", "SELECT (SELECT count(*) FROM report_count_changes) AS report_count_changes, ", 1)


@pytest.fixture
def running(db, db_url) -> Iterator[dict[str, Any]]:
    """A champion, a challenger in a running experiment, and leads of acme routed in it (one lead of
    each arm, named by its arm), plus a lead of globex."""
    insert_models(db)
    training.deploy_model(CHAMPION, canary_percentage=50, actor="test", reason="first model")
    training.deploy_model(CHALLENGER, canary_percentage=50, actor="test", reason="weekly run")
    experiments.forget_cache()
    arms: dict[str, str] = {}
    for i in range(40):
        routed = experiments.route("acme", f"lead-{i}")
        arms.setdefault(routed["arm"], f"lead-{i}")
    assert set(arms) == {"champion", "challenger"}
    experiments.route("globex", "globex-lead")
    [experiment] = db.execute("SELECT experiment_id FROM experiments").fetchall()
    yield {"experiment_id": experiment["experiment_id"], "lead": arms}
    experiments.forget_cache()


def message(lead: str, route: dict[str, Any] | None, org: str = "acme") -> dict[str, Any]:
    return {
        "org_id": org,
        "campaign_id": "q4",
        "lead_id": lead,
        "lead_email": f"{lead}@example.com",
        "body": f"Hi {lead}, a short note.",
        "sent_at": "2026-11-20T09:00:00Z",
        "idempotency_key": f"{org}-{lead}",
        "route": route,
    }


def routed(running: dict[str, Any], arm: str) -> dict[str, Any]:
    """The message GET /route's answer makes for the lead of this arm."""
    model = CHALLENGER if arm == "challenger" else CHAMPION
    return message(
        running["lead"][arm], {"model_registry_id": model, "experiment_id": running["experiment_id"], "arm": arm}
    )


def writes(db: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    row = db.execute(WRITES).fetchone()
    assert row is not None
    return row


def bad_routes(running: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (message, field, what the message says)."""
    experiment = running["experiment_id"]
    champion_lead, challenger_lead = running["lead"]["champion"], running["lead"]["challenger"]
    return {
        "unknown_model": (
            message("lead-x", {"model_registry_id": "flywheel-v9.9.9"}),
            "route.model_registry_id",
            "no model flywheel-v9.9.9 in the registry",
        ),
        "unknown_experiment": (
            message(champion_lead, {"model_registry_id": CHAMPION, "experiment_id": "exp-nope", "arm": "champion"}),
            "route.experiment_id",
            "no experiment exp-nope",
        ),
        # globex's lead was routed in the experiment, acme's lead of the same name never was
        "lead_of_another_org": (
            message("globex-lead", {"model_registry_id": CHAMPION, "experiment_id": experiment, "arm": "champion"}),
            "route.experiment_id",
            f"experiment {experiment} never routed lead globex-lead of organisation acme",
        ),
        "other_arm": (
            message(champion_lead, {"model_registry_id": CHALLENGER, "experiment_id": experiment, "arm": "challenger"}),
            "route.arm",
            f"lead {champion_lead} is in the champion arm of experiment {experiment}, not challenger",
        ),
        "no_arm": (
            message(challenger_lead, {"model_registry_id": CHALLENGER, "experiment_id": experiment}),
            "route.arm",
            f"missing: lead {challenger_lead} is in the challenger arm of experiment {experiment}",
        ),
        "other_arms_model": (
            message(challenger_lead, {"model_registry_id": CHAMPION, "experiment_id": experiment, "arm": "challenger"}),
            "route.model_registry_id",
            f"the challenger of experiment {experiment} is {CHALLENGER}, not {CHAMPION}",
        ),
        "challenger_outside_an_experiment": (
            message(challenger_lead, {"model_registry_id": CHALLENGER, "arm": "challenger"}),
            "route.arm",
            "the challenger arm exists only in an experiment: experiment_id is missing",
        ),
    }


CASES = [
    "unknown_model",
    "unknown_experiment",
    "lead_of_another_org",
    "other_arm",
    "no_arm",
    "other_arms_model",
    "challenger_outside_an_experiment",
]


@pytest.mark.parametrize("case", CASES)
def test_a_route_naming_what_does_not_exist_refuses_the_whole_batch(
    api: ApiClient, db, running: dict[str, Any], case: str
) -> None:
    bad, field, reason = bad_routes(running)[case]
    good = [routed(running, "champion"), routed(running, "challenger"), message("lead-plain", None)]
    before = writes(db)
    status, body = api.post("/messages", {"messages": [*good[:2], bad, good[2]]})
    assert status == 422, body
    assert body == {
        "error": "validation_error",
        "message": f"messages.2.{field}: {reason}",
        "fields": [{"field": f"messages.2.{field}", "message": reason}],
    }
    assert writes(db) == before  # nothing written, not even the batch's good messages or its organisation
    # the rest of the batch, alone, is registered: the refusal was the bad route's
    status, body = api.post("/messages", {"messages": good})
    assert status == 201 and body["created"] == 3, body
    stored = db.execute("SELECT lead_id, model_registry_id, experiment_id, experiment_arm FROM outcome_labels")
    assert {r["lead_id"]: r["experiment_arm"] for r in stored.fetchall()} == {
        running["lead"]["champion"]: "champion",
        running["lead"]["challenger"]: "challenger",
        "lead-plain": None,
    }


def test_a_single_message_names_its_field_without_an_index(api: ApiClient, db, running: dict[str, Any]) -> None:
    bad, field, reason = bad_routes(running)["unknown_model"]
    before = writes(db)
    status, body = api.post("/messages", bad)
    assert (status, body["error"], body["message"]) == (422, "validation_error", f"{field}: {reason}"), body
    assert body["fields"] == [{"field": field, "message": reason}]
    assert writes(db) == before


def test_every_bad_route_of_a_batch_is_named(api: ApiClient, db, running: dict[str, Any]) -> None:
    cases = bad_routes(running)
    batch = [routed(running, "champion")] + [cases[name][0] for name in CASES]
    before = writes(db)
    status, body = api.post("/messages", {"messages": batch})
    assert status == 422, body
    assert [f["field"] for f in body["fields"]] == [f"messages.{i + 1}.{cases[n][1]}" for i, n in enumerate(CASES)]
    assert writes(db) == before


def test_what_get_route_answered_is_registered_and_a_plain_champion_route_too(
    api: ApiClient, db, running: dict[str, Any]
) -> None:
    """The sender's loop: every lead's route passed back as it came (through the client's
    route_info), and a route with no experiment (champion only, as before any challenger)."""
    batch = []
    for i in range(40):
        answer = experiments.route("acme", f"lead-{i}")
        batch.append(message(f"lead-{i}", FlywheelClient.route_info(answer)))
    batch.append(message("new-lead", {"model_registry_id": CHAMPION, "arm": "champion", "provider_model_id": "x"}))
    status, body = api.post("/messages", {"messages": batch})
    assert status == 201 and body["created"] == 41, body


def test_the_route_lookup_is_one_statement_whatever_the_batch_size(
    api: ApiClient, db, running: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The references of a batch are looked up set-wise: a batch of 40 routed messages costs the
    same statements as a batch of 2."""
    statements: list[str] = []
    execute = psycopg.Connection.execute

    def counted(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counted)

    def register(leads: list[str]) -> int:
        batch = [message(lead, FlywheelClient.route_info(experiments.route("acme", lead))) for lead in leads]
        statements.clear()  # routing's own reads and assignments are not the registration's
        status, body = api.post("/messages", {"messages": batch})
        assert status == 201, body
        assert sum("JOIN assignments" in s for s in statements) == 1
        return len(statements)

    assert register([f"lead-{i}" for i in range(2)]) == register([f"lead-{i}" for i in range(2, 40)])


# --- POST /replies --------------------------------------------------------------------------------


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    configure(monkeypatch)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="replies")["QueueUrl"]
        monkeypatch.setenv("REPLIES_QUEUE_URL", url)
        reset_settings()
        yield url
    reset_settings()


def register(api: ApiClient, org: str) -> str:
    body = {**json.loads(load_event("messages_register_single.json")["body"]), "org_id": org}
    status, answer = api.post("/messages", body)
    assert status in (200, 201), answer
    return str(answer["outcomes"][0]["outcome_id"])


def test_a_reply_to_another_organisations_outcome_is_not_found_and_nothing_is_written(
    api: ApiClient, db, queue: str
) -> None:
    acme = register(api, "acme")
    reply = {"outcome_id": acme, "text": "Yes, let's talk on Tuesday", "channel": "linkedin", "external_id": "li-1"}
    before = writes(db)
    status, other = api.post("/replies?org_id=globex", reply)
    # exactly the answer an unknown outcome gets: nothing tells globex the id exists
    unknown = {**reply, "outcome_id": "0b7e3f0c-0000-4000-8000-000000000000"}
    status_unknown, answer_unknown = api.post("/replies?org_id=globex", unknown)
    assert (status, status_unknown) == (404, 404), (other, answer_unknown)
    assert other == {**answer_unknown, "message": f"no outcome {acme}", "outcome_id": acme}
    assert other["error"] == "not_found"
    assert writes(db) == before
    assert db.execute("SELECT replied_at FROM outcome_labels").fetchone()["replied_at"] is None
    sqs = boto3.client("sqs", region_name="us-east-1")
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    # its own organisation attaches it
    status, body = api.post("/replies?org_id=acme", reply)
    assert status == 202 and body["outcome_id"] == acme and body["duplicate"] is False, body
    assert db.execute("SELECT count(*) AS n FROM outcome_events WHERE event_type = 'reply'").fetchone()["n"] == 1


def test_a_reply_without_org_id_is_refused(api: ApiClient, db, queue: str) -> None:
    acme = register(api, "acme")
    before = writes(db)
    status, body = api.post("/replies", {"outcome_id": acme, "text": "Sure", "channel": "linkedin"})
    assert (status, body["error"], body["message"]) == (422, "validation_error", "org_id: Field required"), body
    assert writes(db) == before

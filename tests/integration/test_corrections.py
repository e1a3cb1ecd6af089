"""POST /outcomes/{outcome_id}/corrections: corrections are events, derived like every other event,
visible in the history, reversible, and exported as labelled examples."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flywheel import cli
from flywheel.local.invoke import invoke
from flywheel.local.seed import DANA
from tests.conftest import ROOT, count, load_event
from tests.integration.test_classifier import aws, classify, outcome, register, sqs_event  # noqa: F401


def correction_event(
    outcome_id: str, body: dict[str, Any] | None = None, org_id: str | None = "acme"
) -> dict[str, Any]:
    event = json.loads(json.dumps(load_event("outcomes_correction_post.json")).replace(str(DANA), outcome_id))
    if body is not None:
        event["body"] = json.dumps(body)
    event["queryStringParameters"] = {"org_id": org_id} if org_id else None
    event["multiValueQueryStringParameters"] = {"org_id": [org_id]} if org_id else None
    return event


def correct(
    outcome_id: str, body: dict[str, Any] | None = None, org_id: str | None = "acme"
) -> tuple[int, dict[str, Any]]:
    result = invoke("MessagesFunction", correction_event(outcome_id, body, org_id), ROOT / "template.yaml")
    return result["statusCode"], json.loads(result["body"])


def history(outcome_id: str) -> list[dict[str, Any]]:
    event = load_event("messages_get.json")
    event["pathParameters"] = {"outcome_id": outcome_id}
    event["path"] = f"/messages/{outcome_id}"
    return json.loads(invoke("MessagesFunction", event, ROOT / "template.yaml")["body"])["events"]


def corrections(db) -> int:
    return db.execute("SELECT count(*) AS n FROM outcome_events WHERE event_type = 'correction'").fetchone()["n"]


def test_a_correction_is_an_event_applied_by_derivation_and_reversible(db, aws) -> None:  # noqa: F811
    outcome_id = register()
    classify(outcome_id, "Could you send the deck and a case study from manufacturing?")
    before = outcome(db, outcome_id)
    assert (before["reply_category"], before["training_label"], before["training_weight"]) == (
        "interested",
        "positive",
        3.0,
    )

    status, body = correct(outcome_id)  # the sample: not_interested, with reason and actor
    assert status == 201 and body["correction_id"] == "corr-2026-11-27-0001" and not body["duplicate"]
    row = outcome(db, outcome_id)
    assert (row["reply_category"], row["reply_classification_source"]) == ("not_interested", "human")
    assert (row["training_label"], row["training_weight"]) == ("negative", 2.0)  # the same label rules
    assert row["corrected_by"] == "maria.ops@acme.example" and row["corrected_at"] is not None
    assert row["reply_text"] == before["reply_text"]  # nothing else was edited
    [entry] = [e for e in history(outcome_id) if e["event_type"] == "correction"]
    assert entry["data"]["reason"] == "reads as a polite no, not interest" and entry["data"]["fields"] == [
        "reply_category"
    ]

    status, body = correct(outcome_id)  # a retry of the same correction
    assert status == 200 and body["duplicate"] and count(db, "outcome_events") == 3

    status, _ = correct(
        outcome_id,
        {
            "training_label": "positive",
            "training_weight": 6,
            "reason": "they bought later",
            "actor": "lead@acme.example",
        },
    )
    row = outcome(db, outcome_id)
    assert status == 201 and (row["training_label"], row["training_weight"]) == ("positive", 6.0)
    assert row["reply_category"] == "not_interested" and row["corrected_by"] == "lead@acme.example"

    status, _ = correct(
        outcome_id,
        {
            "reply_category": None,
            "training_label": None,
            "training_weight": None,
            "reason": "undo",
            "actor": "lead@acme.example",
        },
    )
    row = outcome(db, outcome_id)
    assert status == 201 and (row["reply_category"], row["reply_classification_source"]) == ("interested", "fallback")
    assert (row["training_label"], row["training_weight"], row["corrected_at"]) == ("positive", 3.0, None)
    assert len([e for e in history(outcome_id) if e["event_type"] == "correction"]) == 3


def test_correcting_an_auto_reply_into_a_human_one_and_back(db, aws) -> None:  # noqa: F811
    outcome_id = register()
    classify(outcome_id, "Thank you for your email. This is an automated response, we will reply within 2 days.")
    assert outcome(db, outcome_id)["stage"] == "auto_replied"
    correct(outcome_id, {"reply_category": "question", "reason": "a person wrote it", "actor": "ops@acme.example"})
    row = outcome(db, outcome_id)
    assert (row["stage"], row["reply_category"], row["auto_replied_at"]) == ("replied", "question", None)
    correct(outcome_id, {"reply_category": "out_of_office", "reason": "no, it was OOO", "actor": "ops@acme.example"})
    row = outcome(db, outcome_id)
    assert (row["stage"], row["auto_reply_category"], row["replied_at"]) == ("auto_replied", "out_of_office", None)


def test_a_corrected_unsubscribe_suppresses_the_lead(db, aws) -> None:  # noqa: F811
    outcome_id = register()
    classify(outcome_id, "Thanks, maybe later.")
    correct(
        outcome_id,
        {"reply_category": "unsubscribe", "reason": "asked on the phone to stop", "actor": "sdr@acme.example"},
    )
    assert db.execute("SELECT reason FROM suppressions").fetchone()["reason"] == "reply_unsubscribe"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"reply_category": "enthusiastic", "reason": "x", "actor": "a"}, 422, "validation_error"),
        ({"reason": "nothing to correct", "actor": "a"}, 422, "validation_error"),
        ({"reply_category": "interested", "actor": "a"}, 422, "validation_error"),
        ({"training_weight": -1, "reason": "x", "actor": "a"}, 422, "validation_error"),
        ({"reply_category": "interested", "reason": "x", "actor": "a", "extra": 1}, 422, "validation_error"),
    ],
)
def test_bad_corrections_write_nothing(db, aws, body, status: int, error: str) -> None:  # noqa: F811
    outcome_id = register()
    got, answer = correct(outcome_id, body)
    assert (got, answer["error"]) == (status, error) and count(db, "outcome_events") == 0


def test_unknown_outcome_and_nothing_to_correct(db, aws) -> None:  # noqa: F811
    status, answer = correct("0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10")
    assert (status, answer["error"]) == (404, "not_found")
    outcome_id = register()
    status, answer = correct(outcome_id)  # no reply yet: a category has nothing to apply to
    assert (status, answer["error"]) == (409, "conflict") and count(db, "outcome_events") == 0
    status, _ = correct(outcome_id, {"training_label": "negative", "reason": "bad fit", "actor": "a@acme.example"})
    assert status == 201 and outcome(db, outcome_id)["training_label"] == "negative"


def test_corrections_export_as_labelled_examples(db, aws, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    first = register()
    classify(first, "Could you send the deck?")
    correct(first)
    capsys.readouterr()  # the handlers' logs and metrics
    export = ["--template", str(ROOT / "template.yaml"), "classify", "--export-corrections"]
    # the corpus ships in the layer to every customer: only organisations that opted in to training
    assert cli.main(export) == 0 and capsys.readouterr().out == ""
    assert cli.main(["--template", str(ROOT / "template.yaml"), "org", "opt-in", "acme"]) == 0
    capsys.readouterr()
    assert cli.main([*export, "--org", "globex"]) == 0 and capsys.readouterr().out == ""
    assert cli.main([*export, "--org", "acme"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    example = json.loads(line)
    assert (example["text"], example["category"]) == ("Could you send the deck?", "not_interested")
    assert example["corrected_by"] == "maria.ops@acme.example" and example["source"] == "correction"


def test_a_corrected_unsubscribe_and_its_suppression_commit_together(db, aws, monkeypatch) -> None:  # noqa: F811
    from flywheel.dal import suppressions

    outcome_id = register()
    classify(outcome_id, "Thanks, maybe later.")
    events = count(db, "outcome_events")

    def down(conn: Any, *rows: Any) -> Any:
        if rows[0]:  # writing a suppression (in whichever statement) fails
            raise RuntimeError("suppressions table unavailable")
        return 0

    with monkeypatch.context() as patched:
        patched.setattr(suppressions, "suppress", down)
        patched.setattr(suppressions, "suppress_many", down)
        status, _ = correct(
            outcome_id,
            {
                "reply_category": "unsubscribe",
                "reason": "asked to stop",
                "actor": "sdr@acme.example",
                "correction_id": "c-1",
            },
        )
    assert status == 500 and count(db, "outcome_events") == events  # no correction without its suppression
    status, _ = correct(
        outcome_id,
        {
            "reply_category": "unsubscribe",
            "reason": "asked to stop",
            "actor": "sdr@acme.example",
            "correction_id": "c-1",
        },
    )
    assert status == 201 and db.execute("SELECT reason FROM suppressions").fetchone()["reason"] == "reply_unsubscribe"


def test_corrections_are_scoped_to_the_callers_organisation(db, aws) -> None:  # noqa: F811
    """Found by the review of #12: any caller could correct (and suppress the lead of) any
    organisation's outcome, and a correction_id reused on another outcome answered with the first
    outcome's id and state while dropping the correction."""
    outcome_id = register()
    classify(outcome_id, "Could you send the deck?")
    status, answer = correct(outcome_id, {"reply_category": "unsubscribe", "reason": "x", "actor": "a"}, "globex")
    assert (status, answer["error"]) == (404, "not_found")
    status, answer = correct(outcome_id, org_id=None)
    assert (status, answer["error"]) == (422, "validation_error")
    assert corrections(db) == 0 and count(db, "suppressions") == 0

    event = load_event("messages_register_single.json")
    message = json.loads(event["body"])
    event["body"] = json.dumps(
        {
            **message,
            "idempotency_key": "another",
            "lead_email": "kim@globex.example",
            "provider_message_id": "another.1",
            "email_message_id": "<another@mail.acme.example>",
        }
    )
    other = json.loads(invoke("MessagesFunction", event, ROOT / "template.yaml")["body"])["outcomes"][0]["outcome_id"]
    assert other != outcome_id
    job = sqs_event(other, "Could you send the deck?")
    job["Records"][0]["body"] = job["Records"][0]["body"].replace("sendgrid_inbound:", "sendgrid_inbound:another-")
    invoke("ClassifierFunction", job, ROOT / "template.yaml")
    assert correct(outcome_id)[0] == 201
    status, answer = correct(other)  # the sample's correction_id again, on another outcome: its own correction
    assert status == 201 and answer["outcome_id"] == other and not answer["duplicate"]
    assert outcome(db, other)["reply_category"] == "not_interested"


def test_a_reused_correction_id_with_another_correction_is_a_conflict(db, aws) -> None:  # noqa: F811
    outcome_id = register()
    classify(outcome_id, "Could you send the deck?")
    assert correct(outcome_id)[0] == 201
    body = json.loads(load_event("outcomes_correction_post.json")["body"])
    status, answer = correct(outcome_id, {**body, "reply_category": "question"})
    assert (status, answer["error"]) == (409, "conflict")
    assert outcome(db, outcome_id)["reply_category"] == "not_interested"
    assert corrections(db) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"reply_category": "other", "reason": "nul \u0000 byte", "actor": "a"},
        {"reply_category": "other", "reason": "x", "actor": "\ud800"},
        {"reply_category": "other", "reason": "x", "actor": "a", "occurred_at": "2999-01-01T00:00:00Z"},
        {"reply_category": "other", "reason": "x", "actor": "a", "occurred_at": "1970-01-01T00:00:00Z"},
    ],
)
def test_unstorable_or_unrevertable_corrections_are_refused(db, aws, body: dict[str, Any]) -> None:  # noqa: F811
    """A NUL answered 500; a correction dated ahead was in force for ever (no later one could revert it)."""
    outcome_id = register()
    classify(outcome_id, "Could you send the deck?")
    status, answer = correct(outcome_id, body)
    assert (status, answer["error"]) == (422, "validation_error")
    assert corrections(db) == 0


def test_concurrent_corrections_end_as_their_latest(db, db_url, aws) -> None:  # noqa: F811
    """Four processes, each with its own connection, correct the same outcome at once (and retry):
    the outcome ends as the latest correction says, the unsubscribe among them suppresses once."""
    from datetime import UTC, datetime, timedelta

    from tests.integration.test_concurrency import run_concurrently

    outcome_id = register()
    classify(outcome_id, "Could you send the deck?")
    start = datetime.now(UTC) - timedelta(hours=1)
    categories = [
        "question",
        "not_now",
        "objection",
        "unsubscribe",
        "referral",
        "other",
        "interested",
        "meeting_request",
        "not_interested",
        "wrong_person",
        "question",
        "not_now",
    ]
    bodies = [
        {
            "reply_category": category,
            "reason": f"look {n}",
            "actor": f"ops{n}@acme.example",
            "correction_id": f"c-{n}",
            "occurred_at": (start + timedelta(minutes=n)).isoformat(),
        }
        for n, category in enumerate(categories)
    ]
    requests = [{"function": "MessagesFunction", "event": correction_event(outcome_id, body)} for body in bodies]
    streams = [requests[i::4] + requests[i::4][:1] for i in range(4)]  # every stream retries its first
    assert run_concurrently(db_url, streams) == []
    row = outcome(db, outcome_id)
    assert (row["reply_category"], row["corrected_by"]) == ("not_now", "ops11@acme.example")
    assert corrections(db) == len(bodies)
    assert count(db, "suppressions") == 1

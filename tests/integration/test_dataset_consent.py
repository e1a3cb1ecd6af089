"""A lead who opted out is left out of every training set (the outside review of 62c462a: "erase my
data under GDPR" suppressed the lead, and their messages still went to the provider, the message
they opted out from as a DPO pair's rejected side). One who only refused e-mail for calls stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.services.dataset import DatasetSpec, build_dataset
from flywheel.settings import get_settings
from tests.conftest import ApiClient
from tests.dedupe_planted import BASES

MARKS = {  # a sentence planted in each watched lead's message
    "gone": "Our zebra-striped onboarding playbook is attached.",
    "gone2": "Our tangerine quarterly benchmark is attached.",
    "channel": "Our cobalt pricing calculator is attached.",
}


def _messages() -> list[dict[str, Any]]:
    emails = [e for family in BASES for e in family["emails"]][:14]
    leads = ["gone", "gone2", "channel", *(f"l{i}" for i in range(3, 14))]
    return [
        {
            "org_id": "acme",
            "campaign_id": "q4",
            "lead_id": lead,
            "lead_email": f"{lead}@example-mail.com",
            "subject": "an idea",
            "body": body.replace("{{first_name}}", "Dana").replace("{{company}}", "Northwind")
            + ("\n" + MARKS[lead] if lead in MARKS else ""),
            "framework": "PAS",
            "tone": "warm",
            "lead": {"first_name": "Dana", "company": "Northwind", "industry": "fintech", "role": "cfo"},
            "sent_at": f"2026-11-{10 + i:02d}T09:00:00Z",
            "idempotency_key": f"consent-{i}",
        }
        for i, (lead, body) in enumerate(zip(leads, emails, strict=True))
    ]


@pytest.mark.parametrize("method", ["supervised", "dpo"])
def test_an_opted_out_lead_is_in_no_dataset(api: ApiClient, db, tmp_path: Path, method: str) -> None:
    status, result = api.post("/messages", {"messages": _messages()})
    assert status == 201, result
    db.execute("UPDATE organizations SET training_opt_in = true")
    db.execute(
        """UPDATE outcome_labels SET quality_score = 0.9, delivered_at = now(), stage = 'replied', replied_at = now(),
                  training_label = CASE WHEN lead_id IN ('gone2', 'l3', 'l5', 'l7', 'l9', 'l11', 'l13')
                                        THEN 'negative' ELSE 'positive' END"""
    )
    for lead, reason in (
        ("gone", "sendgrid_unsubscribe"),
        ("gone2", "reply_unsubscribe"),
        ("channel", "reply_email_opt_out"),
    ):
        db.execute(
            "INSERT INTO suppressions (org_id, email, reason) VALUES ('acme', %s, %s)",
            (f"{lead}@example-mail.com", reason),
        )

    built = build_dataset(DatasetSpec(method=method), tmp_path, get_settings())
    text = "".join((tmp_path / name).read_text() for name in ("train.jsonl", "validation.jsonl"))
    assert MARKS["gone"] not in text and MARKS["gone2"] not in text
    if method == "supervised":  # the lead who asked to be called rather than e-mailed is still a positive example
        assert MARKS["channel"] in text
        assert built.manifest["counts"]["candidates"] == 14 - 7 - 1, built.manifest["counts"]


def _suppression(db, email: str) -> dict[str, Any]:
    return db.execute("SELECT reason, outcome_id, created_at FROM suppressions WHERE email = %s", (email,)).fetchone()


def test_a_lead_who_opts_out_after_changing_channel_leaves_the_datasets(db) -> None:
    """One suppression row a lead: "call me rather than e-mail me" (reply_email_opt_out, kept in
    datasets) followed by an unsubscribe or a spam report becomes the full opt-out, which leaves
    them out of every dataset and out of the readiness count. The row keeps its created_at (the
    listing's keyset). The first reason used to stand: such a lead stayed in every dataset."""
    from flywheel.dal import suppressions as suppressions_dal
    from flywheel.dal import training as training_dal
    from flywheel.dal.connection import transaction
    from tests.training_helpers import seed_outcomes

    seed_outcomes(db, 20)
    ids = {
        r["lead_email"]: r["outcome_id"]
        for r in db.execute("SELECT lead_email, outcome_id FROM outcome_labels WHERE org_id = 'acme'")
    }
    switched, spam, stays = "lead1@northwind1.example", "lead2@northwind2.example", "lead3@northwind3.example"

    def counts() -> tuple[int, int]:
        with transaction() as conn:
            streamed, _ = training_dal.count_outcomes(
                conn, min_quality=0.6, since=None, until=None, for_preferences=False
            )
            ready = sum(int(r["examples"]) for r in training_dal.readiness(conn, 0.6, None))
        return streamed, ready

    with transaction() as conn:
        rows = [("acme", e, "reply_email_opt_out", ids[e]) for e in (switched, spam, stays)]
        assert suppressions_dal.suppress_many(conn, rows) == 3
    first = _suppression(db, switched)
    assert counts() == (20, 20)  # a change of channel keeps the lead in the datasets

    with transaction() as conn:
        assert suppressions_dal.suppress(conn, "acme", switched.upper(), "sendgrid_unsubscribe", None)
        # in one batch, the full opt-out wins whatever the order
        batch = [("acme", spam, "sendgrid_spam_report", ids[spam]), ("acme", spam, "reply_email_opt_out", None)]
        assert suppressions_dal.suppress_many(conn, batch) == 1
    upgraded = _suppression(db, switched)
    assert upgraded["reason"] == "sendgrid_unsubscribe" and upgraded["created_at"] == first["created_at"]
    assert _suppression(db, spam)["reason"] == "sendgrid_spam_report"
    assert _suppression(db, stays)["reason"] == "reply_email_opt_out"
    assert counts() == (18, 18)

    with transaction() as conn:  # a full opt-out is never weakened back to a change of channel
        assert not suppressions_dal.suppress(conn, "acme", switched, "reply_email_opt_out", ids[switched])
        assert not suppressions_dal.suppress(conn, "acme", spam, "reply_unsubscribe", None)
    assert _suppression(db, switched)["reason"] == "sendgrid_unsubscribe"
    assert _suppression(db, spam) == {
        "reason": "sendgrid_spam_report",
        "outcome_id": ids[spam],
        "created_at": first["created_at"],
    }
    assert counts() == (18, 18)


def test_readiness_counts_what_the_build_streams(db) -> None:
    """CheckData's `sufficient` and GET /training/stats count with the dataset's filter: a lead who
    opted out is not counted (readiness used to ignore suppressions)."""
    from flywheel.dal import training as training_dal
    from flywheel.dal.connection import transaction
    from tests.training_helpers import seed_outcomes

    seed_outcomes(db, 12)
    for i in (1, 2, 3):
        db.execute(
            "INSERT INTO suppressions (org_id, email, reason) VALUES ('acme', %s, 'reply_unsubscribe')",
            (f"lead{i}@northwind{i}.example",),
        )
    with transaction() as conn:
        ready = training_dal.readiness(conn, 0.6, None)
        assert training_dal.readiness(conn, 0.6, None, org_id="other") == []
    assert [(r["label"], int(r["examples"])) for r in ready] == [("positive", 9)]

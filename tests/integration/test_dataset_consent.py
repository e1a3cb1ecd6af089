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

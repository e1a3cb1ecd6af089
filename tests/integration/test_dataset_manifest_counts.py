"""The manifest's redaction counts describe the files written (the outside review of 62c462a: they
counted every candidate, the near-duplicates the build then drops included, twice what the files
held); what was done to every candidate is kept beside them."""

from __future__ import annotations

from pathlib import Path

from flywheel.services.dataset import DatasetSpec, build_dataset
from flywheel.settings import get_settings
from tests.conftest import ApiClient
from tests.dedupe_planted import BASES


def test_redaction_counts_describe_the_written_files(api: ApiClient, db, tmp_path: Path) -> None:
    emails = [e for family in BASES for e in family["emails"]][:12]
    messages = [  # 12 distinct emails, each sent twice: the second copy is a near-duplicate, dropped
        {
            "org_id": "acme",
            "campaign_id": f"c{i}",
            "lead_id": f"l{i}",
            "subject": "an idea",
            "body": emails[i % 12].replace("{{first_name}}", "Dana").replace("{{company}}", "Northwind")
            + "\nCall me on +1 415 555 0132.",
            "framework": "PAS",
            "tone": "warm",
            "lead": {"first_name": "Dana", "last_name": "Reyes", "company": "Northwind", "country": "US"},
            "sent_at": "2026-11-20T09:00:00Z",
            "idempotency_key": f"cnt-{i}",
        }
        for i in range(24)
    ]
    status, result = api.post("/messages", {"messages": messages})
    assert status == 201, result
    db.execute("UPDATE organizations SET training_opt_in = true")
    db.execute(
        "UPDATE outcome_labels SET quality_score = 0.9, delivered_at = now(), replied_at = now(), training_label = 'positive'"
    )
    built = build_dataset(DatasetSpec(), tmp_path, get_settings())
    written = "".join((tmp_path / n).read_text() for n in ("train.jsonl", "validation.jsonl"))
    manifest = built.manifest
    assert manifest["counts"]["duplicates_dropped"]["near_duplicate"] >= 10, manifest["counts"]
    assert manifest["redactions"]["phone"] == written.count("{{phone}}") > 0
    assert manifest["redactions_in_candidates"]["phone"] == 24

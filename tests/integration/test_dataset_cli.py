"""`flywheel dataset build` / `validate` as an operator runs them, on messages registered through
the real API with personal data planted in every field, checked by the independent validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from flywheel.domain.redaction import DEFAULT_DETECTORS, Redactor
from flywheel.services.dataset import DatasetSpec, build_dataset
from flywheel.settings import get_settings
from tests.conftest import ROOT, ApiClient
from tests.dedupe_planted import BASES
from tests.provider_rules import validate_file

CLI = [sys.executable, "-m", "flywheel.cli"]
LEADS = [  # first, last, company, country, a local phone number, a colleague
    ("Dana", "Reyes", "Northwind Traders Inc.", "US", "(415) 555-0132", "Tom Becker"),
    ("Jonas", "Müller", "Müller & Söhne AG", "DE", "030 901820", "Ana Silva"),
    ("Amélie", "Dubois", "Dubois Logistique SAS", "FR", "01 42 68 53 00", "Luc Martin"),
    ("Priya", "Sharma", "Sharma Textiles Pvt Ltd", "IN", "098765 43210", "Ravi Kumar"),
    ("太郎", "山田", "株式会社山田製作所", "JP", "03-1234-5678", "佐藤 花子"),
    ("Ольга", "Иванова", "ООО Ромашка", "RU", "8 (495) 123-45-67", "Ирина Петрова"),
    ("Siobhan", "O'Brien", "O'Brien & Partners Ltd", "IE", "01 234 5678", "Niamh Walsh"),
    ("Chloe", "Nguyen", "Harbour Analytics Pty Ltd", "AU", "0412 345 678", "Jack Wilson"),
]
SENDER = {
    "name": "Sam Lee",
    "title": "Senior Account Executive",
    "company": "Acme Robotics GmbH",
    "signature": "Sam Lee\nSenior Account Executive | Acme Robotics\n+44 20 7946 0958",
    "country": "GB",
}
EXTRAS = [
    "Book a slot: calendly.com/sam-lee/30min",
    "My profile: linkedin.com/in/sam-lee-acme",
    "Or write to {first}.{last_ascii}@example-mail.com or jane at acme dot com.",
    "Office: Friedrichstraße 123, 10117 Berlin",
    "Deck: https://acme.example/deck?utm_content=8f14e45f&lead={first}",
    "Call me on +44 7700 900123 or {phone}.",
    "{colleague} suggested I write.",
    "PO Box 4432, Austin, TX 78765",
]
# what an outside review found surviving (each line failed before its fix): a link after "at",
# a link holding our placeholder, a hyphenated street, the company's first word, look-alike and
# invisible characters in names, full-width digits, a committee member named only in the CRM record
REVIEW_EXTRAS = [
    "Pick a slot at meetings.hubspot.com/sam-acme-{i}",
    "Book: https://calendly.com/acme-ae-{i}/30min?n={{{{first_name}}}}",
    "Büro: Karl-Marx-Straße {i}, 10243 Berlin",
    "{short}'s roadmap looked strong.",
    "Hi {homoglyph}, quick one.",
    "電話 ０３－５５５５－０１{i:02d}",
    "Lena Kraus from your buying committee agreed.",
    "Thanks, {zero_width}!",
]
QUOTES = [
    "\n\nOn Mon, 6 Jan 2025 at 10:00, {first} {last} <x@y.example> wrote:\n> We signed with a competitor.",
    "\n\nDe : {first} {last} <x@y.example>\nEnvoyé : lundi 6 janvier 2025 10:00\nObjet : RE\n\n"
    "Nous avons signé avec un competitor.",
]


def planted_messages() -> tuple[list[dict[str, Any]], list[str]]:
    """40 distinct emails (the hand-written planted set) sent to 8 leads in 8 countries, each with
    PII planted in the subject, body, brief, campaign id, signature and a quoted reply."""
    emails = [e for family in BASES for e in family["emails"]]
    messages: list[dict[str, Any]] = []
    planted: list[str] = []
    for i, body in enumerate(emails):
        first, last, company, country, phone, colleague = LEADS[i % len(LEADS)]
        values = {
            "first": first,
            "last_ascii": "".join(c for c in last if c.isascii() and c.isalpha()) or "x",
            "phone": phone,
            "colleague": colleague,
        }
        short = company.split()[-1] if company.startswith("ООО") else company.split()[0]  # as people call it
        review: dict[str, Any] = {
            "i": i,
            "short": short,
            "homoglyph": first.replace("a", "\u0430", 1).replace("o", "\u043e", 1),
            "zero_width": first[:1] + "\u200b" + first[1:],
        }
        text = (
            body.replace("{{first_name}}", first).replace("{{company}}", company)
            + "\n"
            + EXTRAS[i % len(EXTRAS)].format(**values)
            + "\n"
            + EXTRAS[(i + 3) % len(EXTRAS)].format(**values)
            + "\n"
            + REVIEW_EXTRAS[i % len(REVIEW_EXTRAS)].format(**review)
            + f"\n\nBest,\n{SENDER['name']}\n{SENDER['title']} | Acme Robotics\n+44 20 7946 0958"
            + QUOTES[i % 2].format(first=first, last=last)
        )
        shared = i % 2 == 0  # half share a campaign/segment/framework, so DPO has pairs to make
        messages.append(
            {
                "org_id": "acme",
                "campaign_id": "q4-close" if shared else f"abm-{_slug(company)}-{i}",
                "lead_id": f"lead-{i}",
                "lead_email": f"lead{i}@example-mail.com",
                "subject": f"{first}, an idea for {short}",
                "body": text,
                "framework": "PAS" if shared else "AIDA",
                "tone": "warm",
                "brief": f"{first} {last} at {company}, tel {phone}, assistant {colleague}; PowerUser: yes",
                "lead": {
                    "first_name": first,
                    "last_name": last,
                    "company": company,
                    "industry": "fintech",
                    "role": "cfo",
                    "company_size": "201-1000",
                    "country": country,
                    # CRM fields that are not people ("Email" used to become a colleague's name
                    # and fail every build) next to people under keys that name them
                    "extra": {
                        "assistant_name": colleague,
                        "buying_committee": [{"first": "Lena", "last": "Kraus"}],
                        "contact_preference": "Email",
                        "account_tier": "Enterprise",
                    },
                },
                "sender": SENDER,
                "sent_at": "2026-11-20T09:00:00Z",
                "idempotency_key": f"planted-{i}",
            }
        )
        planted += [first, last, short, phone, colleague, review["homoglyph"], review["zero_width"]]
    planted += [
        "Sam Lee",
        "Acme Robotics",
        "Senior Account Executive",
        "7946",
        "7700 900123",
        "calendly",
        "linkedin",
        "example-mail",
        "jane at acme",
        "Friedrichstraße",
        "10117",
        "utm_content",
        "4432",
        "78765",
        "competitor",
        "Müller",
        "Söhne",
        "O'Brien",
        "山田",
        "Иванова",
        "sam-acme",
        "acme-ae",
        "Karl-Marx",
        "５５５５",
        "Lena",
        "Kraus",
        "Envoyé",
    ]
    return messages, sorted(set(planted))


def _slug(company: str) -> str:
    """A campaign id naming the account, as ABM teams write them (ASCII names only), by its first
    word or its first two."""
    words = [
        w.strip("'.,&").lower() for w in company.split()[: 1 + len(company) % 2] if w.isascii() and w.strip("'.,&")
    ]
    return "-".join(words) or "account"


@pytest.fixture
def planted(api: ApiClient, db) -> list[str]:
    messages, planted = planted_messages()
    status, result = api.post("/messages", {"messages": messages})
    assert status == 201 and result["created"] == len(messages)
    db.execute("UPDATE organizations SET training_opt_in = true WHERE org_id = 'acme'")
    db.execute("""UPDATE outcome_labels SET quality_score = 0.9, delivered_at = now(), stage = 'replied',
                         training_label = CASE WHEN (substring(lead_id from '[0-9]+$')::int % 4) = 0
                                               THEN 'negative' ELSE 'positive' END,
                         replied_at = CASE WHEN (substring(lead_id from '[0-9]+$')::int % 4) = 0 THEN NULL
                                           ELSE now() END""")
    return planted


def run(*args: str, db_url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT / "layers" / "flywheel"), **(env or {})}
    full_env.pop("FINETUNE_BASE_MODEL", None)
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def prompts(path: Path) -> set[str]:
    """The user prompt of every line, whatever its shape."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        messages = record.get("messages") or record["input"]["messages"]
        user = next(m for m in messages if m["role"] == "user")
        found.add(user["content"] if isinstance(user["content"], str) else user["content"][0]["text"])
    return found


@pytest.mark.parametrize(
    ("fmt", "method", "shape"),
    [
        ("openai", "supervised", "openai-sft"),
        ("openai", "dpo", "openai-dpo"),
        ("bedrock", "supervised", "nova-sft"),
        ("bedrock", "dpo", "nova-dpo"),
    ],
)
def test_every_format_is_free_of_planted_pii_and_valid(
    planted: list[str], db_url: str, tmp_path: Path, fmt: str, method: str, shape: str
) -> None:
    out = tmp_path / "ds"
    built = run("dataset", "build", "--out", str(out), "--format", fmt, "--method", method, db_url=db_url)
    assert built.returncode == 0, built.stdout + built.stderr
    summary, manifest = json.loads(built.stdout), json.loads((out / "manifest.json").read_text())
    written = "".join((out / name).read_text(encoding="utf-8") for name in ("train.jsonl", "validation.jsonl"))
    assert [p for p in planted if p in written or p in built.stdout] == []
    assert validate_file(out / "train.jsonl", shape) == []
    assert validate_file(out / "validation.jsonl", shape, role="validation") == []
    train_prompts, validation_prompts = prompts(out / "train.jsonl"), prompts(out / "validation.jsonl")
    assert not validation_prompts & train_prompts  # a prompt is never on both sides
    assert validation_prompts or method == "dpo"  # the DPO pairs here all share one prompt: one group
    assert manifest["residual_scan"]["passed"], manifest["residual_scan"]
    assert manifest["residual_scan"]["lines_scanned"] == summary["examples"], manifest["counts"]
    assert manifest["residual_scan"]["detectors"] == [d.name for d in DEFAULT_DETECTORS]
    assert summary["base_model"] == ("gpt-4.1-mini-2025-04-14" if fmt == "openai" else "amazon.nova-micro-v1:0:128k")
    assert manifest["tokens"]["example_limit"] == (65_536 if fmt == "openai" else 32_000)
    assert manifest["redactions"]["phone"] >= summary["examples"] <= manifest["redactions"]["colleague_name"]
    if method == "dpo":
        assert summary["examples"] >= 5
        if fmt == "bedrock":
            assert "SageMaker AI" in manifest["trainable_on"]
    else:
        # thirty positive emails, all different: none is dropped as a near-duplicate
        assert summary["examples"] == 30 and manifest["counts"]["duplicates_dropped"]["near_duplicate"] == 0
    assert run("dataset", "validate", str(out / "train.jsonl"), "--format", shape, db_url=db_url).returncode == (
        0 if summary["examples"] - manifest["counts"]["validation"] >= (10 if fmt == "openai" else 8) else 1
    )


def test_an_empty_build_fails(db, db_url: str, tmp_path: Path) -> None:
    built = run("dataset", "build", "--out", str(tmp_path / "empty"), db_url=db_url)
    summary = json.loads(built.stdout)
    assert built.returncode == 1 and summary["valid"] is False and summary["examples"] == 0
    assert any("empty" in p for p in summary["problems"])


def test_a_base_model_of_the_other_provider_is_refused(db, db_url: str, tmp_path: Path) -> None:
    built = run(
        "dataset",
        "build",
        "--out",
        str(tmp_path / "x"),
        "--format",
        "openai",
        "--base-model",
        "amazon.nova-lite-v1:0:300k",
        db_url=db_url,
    )
    assert built.returncode == 2 and "bedrock model" in json.loads(built.stderr)["message"]


def test_the_residual_scan_fails_a_build_that_leaks(planted: list[str], tmp_path: Path) -> None:
    """A redactor that forgets phone numbers: the scan, which always runs every detector, fails the
    build and names the examples by outcome id, never by their text."""
    weak = Redactor(detectors=[d for d in DEFAULT_DETECTORS if d.name != "phone"])
    built = build_dataset(DatasetSpec(), tmp_path, get_settings(), redactor=weak)
    scan = built.manifest["residual_scan"]
    assert not scan["passed"] and scan["hits"] == 30 and scan["by_detector"]["phone"] >= 30
    assert built.failure is not None and "residual scan" in built.failure and not built.manifest["valid"]
    assert [p for p in planted if p in built.failure or p in json.dumps(built.manifest)] == []


def test_comprehend_second_pass_is_batched_and_priced(
    planted: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.clients import comprehend as comprehend_client

    client = boto3.client("comprehend", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(comprehend_client, "client", lambda service: client)
    requests: list[str] = []
    client.meta.events.register(
        "provide-client-params.comprehend.DetectPiiEntities", lambda params, **_: requests.append(params["Text"])
    )
    with Stubber(client) as stubber:
        for _ in range(1):  # 30 examples of ~1.5 kB (60 texts) fit one request
            stubber.add_response(
                "detect_pii_entities",
                {
                    "Entities": [
                        {"Score": 0.98, "Type": "NAME", "BeginOffset": 0, "EndOffset": 5},
                        {"Score": 0.9, "Type": "DATE_TIME", "BeginOffset": 6, "EndOffset": 9},
                    ]
                },
                None,
            )
        pii = comprehend_client.ComprehendPii()
        built = build_dataset(DatasetSpec(), tmp_path, get_settings(), pii_pass=pii)
    info = built.manifest["comprehend"]
    assert info["enabled"] and info["requests"] == len(requests) == 1 and requests[0].count("Write an outbound") == 30
    assert info["units"] == sum(max(3, -(-len(r) // 100)) for r in requests)
    assert info["usd"] == round(info["units"] * 0.0001, 4) and info["replaced"] == {"name": 1}
    assert built.manifest["residual_scan"]["passed"]


def test_preference_pairs_never_cross_organisations(planted: list[str], db) -> None:
    """Campaign ids are each sender's own names: another organisation's "q4-close" messages for the
    same segment and framework are not comparable with acme's, and are paired among themselves."""
    from flywheel.dal import training as training_dal
    from flywheel.dal.connection import get_connection
    from flywheel.domain import dataset as ds

    def pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        rows = training_dal.stream_outcomes(
            get_connection(), min_quality=0.0, since=None, until=None, for_preferences=True
        )
        return [pair for group in ds.grouped(rows) for pair in ds.pair_group(group)]

    alone = pairs()
    assert alone and all(a["org_id"] == b["org_id"] == "acme" for a, b in alone)
    db.execute("INSERT INTO organizations (org_id, training_opt_in) VALUES ('globex', true)")
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, quality_score,
                                       training_label, stage, lead_industry, lead_role, framework)
           SELECT 'globex', 'copy-' || dedupe_key, campaign_id, lead_id, body, sent_at, quality_score,
                  training_label, stage, lead_industry, lead_role, framework
             FROM outcome_labels WHERE org_id = 'acme'"""
    )
    both = pairs()
    assert all(a["org_id"] == b["org_id"] for a, b in both)
    assert sum(a["org_id"] == "globex" for a, _ in both) == len(alone)  # globex pairs among its own

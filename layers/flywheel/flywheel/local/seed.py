"""`flywheel seed`: the records the sample events in `events/` refer to, under fixed ids.

- the messages of `events/messages_register_single.json` and `..._batch.json` (organisation
  `acme`), registered with the outcome ids the other samples name;
- the provider accounts of the webhook samples, mapped to `acme` (HubSpot portal, Pipedrive
  company, Salesforce org), and the CRM records their APIs are asked about;
- `acme` opted in to training, with 90 past messages that were delivered, opened, clicked and
  answered with interest, so the training samples have enough clean examples to train on.

Seeding is idempotent: run it as often as you like.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from flywheel.local.crm import CrmRecords

SAMPLE_ORG = "acme"
# idempotency key of each sample message -> the outcome id the samples use for it
SAMPLE_OUTCOME_IDS: dict[str, UUID] = {
    "send-7f3a-1001": UUID("0b7e3f0c-2a51-4f6e-9d0c-6f1f3c2b9a10"),  # Dana Reyes, Northwind
    "send-batch-0": UUID("1d3c5e7a-0b2f-4c6e-8a1d-3f5b7c9e0a12"),  # Lee, Contoso
    "send-batch-1": UUID("2e4d6f8b-1c3a-4d7f-9b2e-4a6c8d0f1b23"),  # Priya, Fabrikam
    "send-batch-2": UUID("3f5e7a9c-2d4b-4e8a-8c3f-5b7d9e1a2c34"),  # Omar, Tailspin
}
DANA, LEE = SAMPLE_OUTCOME_IDS["send-7f3a-1001"], SAMPLE_OUTCOME_IDS["send-batch-0"]
SAMPLE_MESSAGE_EVENTS = ("messages_register_single.json", "messages_register_batch.json")
# the webhook samples' provider accounts (HubSpot portal, Pipedrive company, Salesforce org)
PROVIDER_ORGS = {
    "hubspot:5799819": SAMPLE_ORG,
    "pipedrive:8087566": SAMPLE_ORG,
    "salesforce:00D7F00000107Xs": SAMPLE_ORG,
}
PARSE_DOMAIN = "reply.flywheel.example"
HISTORY_CAMPAIGN = "history-2026-q3"
HISTORY_SIZE = 90


def sample_crm_records(hubspot_token: str, pipedrive_token: str) -> CrmRecords:
    """The deal of the HubSpot sample and the person of the Pipedrive sample: Dana's Northwind deal."""
    return CrmRecords(
        hubspot_token=hubspot_token,
        pipedrive_token=pipedrive_token,
        hubspot_deals={
            "697680835": (
                {
                    "amount": "42000",
                    "dealstage": "closedwon",
                    "closedate": "2026-11-26T16:00:00Z",
                    "hs_is_closed_won": "true",
                    "hs_is_closed": "true",
                    "deal_currency_code": "USD",
                },
                {"501": "dana.reyes@northwind.example"},
            )
        },
        pipedrive_persons={"8": ["dana.reyes@northwind.example"]},
    )


def sample_messages(root: Path) -> list[dict[str, Any]]:
    """The messages the registration samples send, in file order."""
    messages: list[dict[str, Any]] = []
    for name in SAMPLE_MESSAGE_EVENTS:
        body = json.loads(json.loads((root / "events" / name).read_text())["body"])
        messages += body.get("messages", [body])
    return messages


# --- a varied history, as a real one would be -------------------------------------------------

INDUSTRIES = ["saas", "fintech", "logistics", "healthcare"]
ROLES = ["vp sales", "head of growth", "cto", "founder"]
FRAMEWORKS = ["PAS", "AIDA", "BAB"]
TONES = ["professional", "casual"]
OPENERS = [
    "Your forecast calls probably eat half of every Monday.",
    "Pipeline reviews tend to drift into guesswork.",
    "Reps update the CRM the night before the board meeting.",
    "Regional leaders rarely trust the roll-up.",
    "Deals slip a quarter and nobody saw it coming.",
    "Commit numbers move every time someone asks.",
    "New managers inherit territories with no history.",
    "Win rates hide inside spreadsheets nobody opens.",
]
PROOFS = [
    "We flag at-risk deals from email and calendar activity.",
    "Teams cut forecast prep from hours to minutes.",
    "Managers see which stage conversions changed this week.",
    "Every number links back to the deals behind it.",
    "It works on top of Salesforce and HubSpot as they are.",
    "Leaders get a weekly summary written for them.",
    "Coaching notes attach to the exact deal moment.",
    "The rollout takes two weeks, not two quarters.",
    "Finance and sales finally look at the same figure.",
    "Historical accuracy is scored per rep and segment.",
    "Alerts arrive in Slack before a deal goes quiet.",
]
ASKS = [
    "Worth fifteen minutes on Thursday?",
    "Open to a short teardown of last quarter?",
    "Should I send a sample report?",
    "Who runs forecasting on your side?",
    "Could we compare notes next week?",
    "Is this a priority this half?",
    "Would a benchmark for your segment help?",
    "Shall I hold a slot on Tuesday morning?",
    "Want the two-page summary first?",
    "Any appetite for a pilot with one team?",
    "Can I show you the deal risk view?",
    "Does your RevOps lead want to join?",
    "Interested in a quick demo?",
]


def synthetic_campaign(org_id: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    start = datetime.now(UTC) - timedelta(days=3)
    messages = []
    for i in range(count):
        first = rng.choice(["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"])
        framework, tone = rng.choice(FRAMEWORKS), rng.choice(TONES)
        messages.append(
            {
                "org_id": org_id,
                "campaign_id": "demo-q4-outbound",
                "lead_id": f"lead-{i:04d}",
                "lead_email": f"{first.lower()}.{i}@prospect{i % 17}.example",
                "subject": f"{first}, a faster way to forecast pipeline",
                "body": f"Hi {first},\n\nTeams like yours cut forecast prep by half with us ({framework}/{tone}).\n"
                "Worth a 15-minute look next week?\n\nSam",
                "framework": framework,
                "tone": tone,
                "brief": "pipeline forecasting pain for revenue leaders",
                "agent_decisions": {
                    "PersonalizerAgent": {"hook": "forecasting"},
                    "CopywriterAgent": {"framework": framework},
                },
                "model_id": "gpt-4o-mini-2024-07-18",
                "lead": {
                    "first_name": first,
                    "company": f"Prospect {i % 17}",
                    "industry": rng.choice(INDUSTRIES),
                    "role": rng.choice(ROLES),
                    "company_size": rng.choice(["11-50", "51-200", "201-1000"]),
                    "icp_score": round(rng.random(), 2),
                },
                "sent_at": (start + timedelta(minutes=7 * i)).isoformat(),
                "provider_message_id": f"demo{i:04d}.sgmsg",
            }
        )
    return messages


def history(org_id: str, n: int, campaign: str = HISTORY_CAMPAIGN) -> list[dict[str, Any]]:
    """Past messages of an organisation: varied, as a real history would be."""
    start = datetime.now(UTC) - timedelta(days=30)
    messages = synthetic_campaign(org_id, n, seed=23)
    for i, m in enumerate(messages):
        first = m["lead"]["first_name"]
        m.update(
            campaign_id=campaign,
            lead_id=f"hist-{i}",
            provider_message_id=f"{org_id}-hist{i}",
            idempotency_key=f"{campaign}-{i}",
            sent_at=(start + timedelta(hours=5 * i)).isoformat(),
            subject=f"{first}, {OPENERS[i % 8].split(' ')[1]} and your forecast",
            body=f"Hi {first},\n\n{OPENERS[i % 8]} {PROOFS[i % 11]} {ASKS[i % 13]}\n\nSam",
        )
    return messages


def record_engagement(messages: list[dict[str, Any]], outcome_ids: list[str]) -> None:
    """Each message delivered, opened and clicked (SendGrid events), and answered with interest."""
    from flywheel.models.classification import Classification
    from flywheel.models.replies import ReplyJob
    from flywheel.services.classification import store_classification
    from flywheel.services.ingest import ingest_events
    from flywheel.webhooks import sendgrid

    raw = [
        {
            "email": m["lead_email"],
            "event": kind,
            "sg_event_id": f"{oid}-{kind}",
            "outcome_id": oid,
            "timestamp": int(datetime.fromisoformat(m["sent_at"]).timestamp()) + 60 * n,
        }
        for m, oid in zip(messages, outcome_ids, strict=True)
        for n, kind in enumerate(["delivered", "open", "click"])
    ]
    events, _ = sendgrid.normalise(raw)
    ingest_events(events, window_days=365)
    interested = Classification.model_validate(
        {
            "category": "interested",
            "sentiment_score": 0.8,
            "interest_level": "high",
            "objection_type": "none",
            "referral_contact": None,
            "return_date": None,
            "confidence": 0.9,
            "reason": "asked for details",
            "source": "fallback",
            "model": "seed",
        }
    )
    for m, oid in zip(messages, outcome_ids, strict=True):
        job = ReplyJob(
            outcome_id=UUID(oid),
            reply_key=f"seed_reply:{oid}",
            text="Sounds good, tell me more",
            received_at=datetime.fromisoformat(m["sent_at"]) + timedelta(hours=3),
        )
        store_classification(job, interested)


class SeedConflict(Exception):
    """A sample message was registered before seeding, under another id."""


def seed(root: Path) -> dict[str, Any]:
    """Register the samples' records (the caller provides the database and an AWS to publish to)."""
    from flywheel.models.messages import MessageIn
    from flywheel.services.outcomes import register_messages, set_training_opt_in

    samples = [MessageIn.model_validate(m) for m in sample_messages(root)]
    fixed = [SAMPLE_OUTCOME_IDS[str(m.idempotency_key)] for m in samples]
    registered = register_messages(samples, fixed)
    for message, wanted, got in zip(samples, fixed, registered.outcomes, strict=True):
        if got.outcome_id != wanted:
            raise SeedConflict(
                f"sample message {message.idempotency_key} is already registered as {got.outcome_id} "
                f"(it was registered before `flywheel seed`); start from a fresh local database "
                "with `flywheel seed --fresh`"
            )
    set_training_opt_in(SAMPLE_ORG, True)
    past = history(SAMPLE_ORG, HISTORY_SIZE)
    past_ids = [str(o.outcome_id) for o in register_messages([MessageIn.model_validate(m) for m in past]).outcomes]
    record_engagement(past, past_ids)
    return {
        "org_id": SAMPLE_ORG,
        "training_opt_in": True,
        "sample_outcomes": {str(m.idempotency_key): str(i) for m, i in zip(samples, fixed, strict=True)},
        "created": registered.created,
        "history": {"campaign": HISTORY_CAMPAIGN, "messages": len(past_ids)},
        "provider_accounts": PROVIDER_ORGS,
    }

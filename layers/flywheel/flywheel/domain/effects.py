"""What applying an event causes besides its outcome's derived columns, as a pure function.

The same rules run when an event is applied on arrival and when an orphan is claimed later by its
message, so a claimed orphan has exactly the effects it would have had live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flywheel.domain.lifecycle import EventType

# a global unsubscribe or a spam complaint means: never email this lead again
SUPPRESSING = {
    ("sendgrid", EventType.UNSUBSCRIBE.value): "sendgrid_unsubscribe",
    ("sendgrid", EventType.SPAM_REPORT.value): "sendgrid_spam_report",
}
NEEDS_ATTENTION = frozenset({"interested", "meeting_request"})


@dataclass(frozen=True)
class Suppression:
    org_id: str
    email: str
    reason: str
    outcome_id: Any


@dataclass(frozen=True)
class OutboxMessage:
    topic: str  # "replies" (the classifier's queue) or "events" (EventBridge)
    dedupe_key: str
    payload: dict[str, Any]


@dataclass
class Effects:
    suppressions: list[Suppression]
    outbox: list[OutboxMessage]


# the event types `effects_of` can find something in (most events have nothing but a re-derivation)
WITH_EFFECTS = frozenset(
    t.value
    for t in (
        EventType.UNSUBSCRIBE,
        EventType.SPAM_REPORT,
        EventType.REPLY,
        EventType.REPLY_CLASSIFIED,
        EventType.CORRECTION,
    )
)


def may_have_effects(row: Mapping[str, Any]) -> bool:
    """Whether `effects_of` can find anything in this applied event (most events have none: no
    need to read their outcome's lead)."""
    return row["event_type"] in WITH_EFFECTS


def effects_of(applied: Iterable[Mapping[str, Any]], contexts: Mapping[Any, Mapping[str, Any]]) -> Effects:
    """`applied`: event rows just attached to an outcome (provider, event_key, event_type, data,
    occurred_at, outcome_id); `contexts`: each outcome's org_id and lead_email."""
    rows = list(applied)
    classified = {str(r["data"].get("reply_key")) for r in rows if r["event_type"] == EventType.REPLY_CLASSIFIED}
    suppressions: list[Suppression] = []
    outbox: list[OutboxMessage] = []
    for row in rows:
        context = contexts.get(row["outcome_id"]) or {}
        org_id, email = context.get("org_id"), context.get("lead_email")
        data, kind = row["data"] or {}, row["event_type"]
        reason = SUPPRESSING.get((row["provider"], kind))
        if kind == EventType.REPLY_CLASSIFIED and data.get("category") == "unsubscribe":
            reason = "reply_unsubscribe"
        if kind == EventType.CORRECTION and data.get("reply_category") == "unsubscribe":
            reason = "reply_unsubscribe"  # an opt-out a person spotted is an opt-out
        if reason and org_id and email:
            suppressions.append(Suppression(org_id, email.lower(), reason, row["outcome_id"]))
        reply_key = f"{row['provider']}:{row['event_key']}"
        # a person's reply goes to the classifier; an automatic one (known by its headers) is not read
        if kind == EventType.REPLY and data.get("text") and not data.get("automated") and reply_key not in classified:
            outbox.append(
                OutboxMessage(
                    "replies",
                    reply_key,
                    {
                        "outcome_id": str(row["outcome_id"]),
                        "reply_key": reply_key,
                        "text": data["text"],
                        "subject": data.get("subject"),
                        "from": data.get("from"),
                        "received_at": row["occurred_at"].isoformat(),
                    },
                )
            )
        if kind == EventType.REPLY_CLASSIFIED and data.get("category") in NEEDS_ATTENTION:
            # consumers dedupe on reply_key
            outbox.append(
                OutboxMessage(
                    "events",
                    f"ReplyNeedsAttention:{data.get('reply_key')}",
                    {
                        "detail_type": "ReplyNeedsAttention",
                        "detail": {
                            "reply_key": data.get("reply_key"),
                            "outcome_id": str(row["outcome_id"]),
                            "org_id": org_id,
                            "lead_email": email,
                            "category": data.get("category"),
                            "text": data.get("text"),
                            "reason": data.get("reason"),
                        },
                    },
                )
            )
    return Effects(suppressions, outbox)

"""What applying an event causes besides its outcome's derived columns, as a pure function.

The same rules run when an event is applied on arrival and when an orphan is claimed later by its
message, so a claimed orphan has exactly the effects it would have had live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flywheel.domain.lifecycle import EventType

# a global unsubscribe or a spam complaint means: never email this lead again
SUPPRESSING = {
    ("sendgrid", EventType.UNSUBSCRIBE.value): "sendgrid_unsubscribe",
    ("sendgrid", EventType.SPAM_REPORT.value): "sendgrid_spam_report",
}
# "don't email me, call me": a change of channel, not an objection to the lead's data being used
EMAIL_ONLY_OPT_OUT = "reply_email_opt_out"
NEEDS_ATTENTION = frozenset({"interested", "meeting_request"})
# the classifier's job takes at most this much text (models.replies.ReplyJob): a longer one would
# fail there on every delivery; a header (subject, sender) is a line of at most 998 (RFC 5322)
REPLY_JOB_TEXT_CHARS = 50_000
REPLY_JOB_HEADER_CHARS = 998


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
        elif kind == EventType.REPLY_CLASSIFIED and data.get("email_opt_out"):
            reason = EMAIL_ONLY_OPT_OUT  # "don't email me, call me": called, and never emailed again
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


def fit_reply_job(payload: Mapping[str, Any], max_size: int, size: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    """The classifier's job for a queued reply, made to fit: the text cut to what the job takes and
    then, when the message would still be over `max_size` (as measured by `size`), to the longest
    start that fits. The whole reply stays in `outcome_events`; the classifier reads a reply's top."""
    job = dict(payload)
    for name in ("subject", "from"):
        if isinstance(job.get(name), str):
            job[name] = job[name][:REPLY_JOB_HEADER_CHARS]
    text = str(job.get("text") or "")[:REPLY_JOB_TEXT_CHARS]
    job["text"] = text
    if size(job) <= max_size:
        return job
    fits, over = 0, len(text)  # the longest start that fits: within [fits, over)
    while over - fits > 1:
        middle = (fits + over) // 2
        if size({**job, "text": text[:middle]}) <= max_size:
            fits = middle
        else:
            over = middle
    return {**job, "text": text[: max(fits, 1)]}

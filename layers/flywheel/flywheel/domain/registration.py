"""What a registered message is: its identity for idempotency and its stored columns."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the message function builds these models; the ingest paths never load them
    from flywheel.models.messages import MessageIn


def normalise_message_id(value: str | None) -> str | None:
    """`<abc@host>` and `abc@host` are the same Message-ID."""
    return value.strip().strip("<>").strip().lower() or None if value else None


def dedupe_key(message: MessageIn) -> str:
    """Same key, same message: client key first, then provider id and recipient, then the content
    itself. A provider message id alone is not a message: SendGrid gives every recipient of one
    send request the same X-Message-Id."""
    if message.idempotency_key:
        return f"key:{message.idempotency_key}"
    if message.provider_message_id:
        # the id's length first: no id and recipient can spell another pair's key
        recipient = f"to:{message.lead_email}" if message.lead_email else f"lead:{message.lead_id}"
        return f"send:{len(message.provider_message_id)}:{message.provider_message_id}:{recipient}"
    content = json.dumps(
        [
            message.campaign_id,
            message.lead_id,
            message.channel,
            message.sent_at.isoformat(),
            message.subject,
            message.body,
        ]
    )
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


def legacy_dedupe_key(row: dict[str, Any]) -> str | None:
    """The key a message identified by its provider message id was stored under before recipients
    were told apart (`pmid:<id>`, for all of one send's recipients): a retry of such a message must
    still find it."""
    if not row["dedupe_key"].startswith("send:") or not row["provider_message_id"]:
        return None
    return f"pmid:{row['provider_message_id']}"


def same_recipient(row: dict[str, Any], stored: dict[str, Any]) -> bool:
    """A stored message under a legacy key is this message when it went to the same recipient
    (the one this message's key names: its email, else, without one, its lead id)."""
    if row["lead_email"]:
        return (stored["lead_email"] or "").lower() == row["lead_email"].lower()
    return stored["lead_email"] is None and stored["lead_id"] == row["lead_id"]


def message_row(message: MessageIn) -> dict[str, Any]:
    lead, route = message.lead, message.route
    return {
        "org_id": message.org_id,
        "dedupe_key": dedupe_key(message),
        "campaign_id": message.campaign_id,
        "lead_id": message.lead_id,
        "lead_email": message.lead_email,
        "channel": message.channel,
        "subject": message.subject,
        "body": message.body,
        "framework": message.framework,
        "tone": message.tone,
        "brief": message.brief,
        "agent_decisions": message.agent_decisions,
        "provider_message_id": message.provider_message_id,
        "email_message_id": normalise_message_id(message.email_message_id),
        "sent_at": message.sent_at.isoformat(),
        "model_id": message.model_id or (route.provider_model_id if route else None),
        "model_registry_id": route.model_registry_id if route else None,
        "experiment_id": route.experiment_id if route else None,
        "experiment_arm": route.arm if route else None,
        "lead_first_name": lead.first_name,
        "lead_last_name": lead.last_name,
        "lead_company": lead.company,
        "lead_industry": lead.industry,
        "lead_role": lead.role,
        "lead_company_size": lead.company_size,
        "lead_icp_score": lead.icp_score,
        "lead_context": lead.extra,
        "lead_country": lead.country,
        "sender": message.sender.model_dump(exclude_none=True) if message.sender else None,
    }

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


RouteReference = tuple[str, str, str | None, str | None]


def route_reference(row: dict[str, Any]) -> RouteReference | None:
    """What a registered message's route names in the database (org, lead, registry model,
    experiment); None when it names neither a registry model nor an experiment."""
    if row["model_registry_id"] is None and row["experiment_id"] is None:
        return None
    return (row["org_id"], row["lead_id"], row["model_registry_id"], row["experiment_id"])


def route_problems(
    rows: list[dict[str, Any]], found: dict[RouteReference, dict[str, Any]]
) -> list[tuple[int, str, str]]:
    """(index, field, reason) of every message whose route is not one `GET /route` could have
    answered for its lead: a model not in the registry, an experiment that does not exist or never
    routed this organisation's lead, an arm other than the lead's recorded one, a model that is not
    its arm's, or the challenger arm outside an experiment. Such a message would be counted against a
    model or arm that does not exist, or in an experiment its organisation's lead never joined."""
    problems: list[tuple[int, str, str]] = []
    for index, row in enumerate(rows):
        model, experiment, arm = row["model_registry_id"], row["experiment_id"], row["experiment_arm"]
        if experiment is None and arm == "challenger":
            problems.append(
                (index, "route.arm", "the challenger arm exists only in an experiment: experiment_id is missing")
            )
        reference = route_reference(row)
        if reference is None:
            continue
        seen = found.get(reference) or {}
        if model is not None and not seen.get("model_registered"):
            problems.append((index, "route.model_registry_id", f"no model {model} in the registry"))
        if experiment is None:
            continue
        if not seen.get("experiment_exists"):
            problems.append((index, "route.experiment_id", f"no experiment {experiment}"))
            continue
        assigned = seen.get("assigned_arm")
        if assigned is None:
            problems.append(
                (
                    index,
                    "route.experiment_id",
                    f"experiment {experiment} never routed lead {row['lead_id']} of organisation {row['org_id']}",
                )
            )
            continue
        if arm != assigned:
            where = f"lead {row['lead_id']} is in the {assigned} arm of experiment {experiment}"
            problems.append((index, "route.arm", f"{where}, not {arm}" if arm else f"missing: {where}"))
            continue
        arm_model = seen["challenger_model_id"] if arm == "challenger" else seen["champion_model_id"]
        if model is not None and seen.get("model_registered") and model != arm_model:
            problems.append(
                (index, "route.model_registry_id", f"the {arm} of experiment {experiment} is {arm_model}, not {model}")
            )
    return problems

"""Human corrections: a person's word on a reply's category or an outcome's training label.

A correction is an event like every other (never an in-place edit): it is stored in
outcome_events, applied by the same derivation (`domain.lifecycle`), listed in the outcome's
history, and reverted or replaced by a later correction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flywheel.dal import events as events_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal.connection import transaction
from flywheel.domain.ingest import IncomingEvent
from flywheel.domain.lifecycle import EventType
from flywheel.errors import Conflict, NotFound
from flywheel.models.replies import CorrectionIn
from flywheel.services.ingest import ingest_events
from flywheel.settings import get_settings

PROVIDER = "correction"


def correct_outcome(outcome_id: UUID, org_id: str, correction: CorrectionIn) -> dict[str, Any]:
    """Store a correction of this organisation's outcome (another organisation's is not found, as
    on GET /messages/{outcome_id}). A correction_id is an idempotency key per outcome: a retry is a
    duplicate, the same id with another correction is a conflict."""
    with transaction() as conn:
        context = outcomes_dal.reply_contexts(conn, [outcome_id]).get(outcome_id)
        if context is None or context["org_id"] != org_id:
            raise NotFound(f"no outcome {outcome_id}", outcome_id=str(outcome_id))
        if correction.reply_category is not None and not events_dal.has_reply(conn, outcome_id):
            raise Conflict("this outcome has no reply whose category could be corrected", outcome_id=str(outcome_id))
    correction_id = correction.correction_id or str(uuid.uuid4())
    key = f"{outcome_id}:{correction_id}"
    data = {
        "fields": correction.fields,
        **{name: getattr(correction, name) for name in correction.fields},
        "reason": correction.reason,
        "actor": correction.actor,
    }
    event = IncomingEvent(
        provider=PROVIDER,
        event_key=key,
        event_type=EventType.CORRECTION.value,
        occurred_at=correction.occurred_at or datetime.now(UTC),
        payload=correction.model_dump(mode="json", exclude_unset=True),
        data=data,
        outcome_id=str(outcome_id),
    )
    # an unsubscribe correction suppresses the lead in the same transaction (domain.effects)
    summary = ingest_events([event], window_days=get_settings().attribution_window_days)
    with transaction() as conn:
        if summary.duplicates and events_dal.event_data(conn, PROVIDER, key) != data:
            raise Conflict(
                f"correction_id {correction_id!r} was already used for another correction", outcome_id=str(outcome_id)
            )
        row = outcomes_dal.get_outcome(conn, outcome_id) or {}
    return {
        "outcome_id": str(outcome_id),
        "correction_id": correction_id,
        "duplicate": summary.duplicates == 1,
        "outcome": {
            k: row.get(k)
            for k in (
                "reply_category",
                "reply_classification_source",
                "auto_reply_category",
                "training_label",
                "training_weight",
                "stage",
                "corrected_at",
                "corrected_by",
            )
        },
    }


def export_corrections(since: datetime | None = None, org_id: str | None = None) -> list[dict[str, Any]]:
    """Replies whose category a person set, as labelled examples (`text`, `category`) for the
    offline model's corpus; one per outcome, the correction in force. Like every training use of
    outcome data, only organisations that opted in to training are read."""
    with transaction() as conn:
        return events_dal.corrected_replies(conn, since, org_id)

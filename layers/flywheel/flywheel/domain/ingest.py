"""Provider events in normalised form, and how each finds the message it belongs to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.domain.lifecycle import EventType

KNOWN_TYPES = frozenset(t.value for t in EventType)


@dataclass
class IncomingEvent:
    """One provider event, normalised by its webhook adapter; `payload` is kept verbatim."""

    provider: str
    event_key: str
    event_type: str  # an EventType value, or the provider's own name when we do not use it
    occurred_at: datetime
    payload: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    org_id: str | None = None
    # link hints, strongest first: an explicit outcome id, the provider's message id,
    # RFC Message-IDs the event refers to, and the lead's email address
    outcome_id: str | None = None
    provider_message_id: str | None = None
    references: list[str] = field(default_factory=list)
    email: str | None = None

    @property
    def known(self) -> bool:
        return self.event_type in KNOWN_TYPES

    @property
    def claimed_outcome_id(self) -> UUID | None:
        try:
            return UUID(str(self.outcome_id)) if self.outcome_id else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Match:
    outcome_id: UUID
    org_id: str


@dataclass
class Lookups:
    """What the store answered for a batch's link hints."""

    outcomes: dict[UUID, str] = field(default_factory=dict)
    provider_message_ids: dict[str, Match] = field(default_factory=dict)
    email_message_ids: dict[str, Match] = field(default_factory=dict)
    meetings: dict[str, Match] = field(default_factory=dict)  # meeting id -> outcome of its booking
    emails: dict[int, Match] = field(default_factory=dict)  # by the event's index in the batch


def choose_match(index: int, event: IncomingEvent, found: Lookups) -> Match | None:
    """The strongest link that resolves: outcome id, provider message id, Message-ID, the meeting
    it is about, then the lead's email."""
    claimed = event.claimed_outcome_id
    if claimed is not None and claimed in found.outcomes:
        return Match(claimed, found.outcomes[claimed])
    if event.provider_message_id and event.provider_message_id in found.provider_message_ids:
        return found.provider_message_ids[event.provider_message_id]
    for reference in event.references:
        if reference in found.email_message_ids:
            return found.email_message_ids[reference]
    meeting_id = event.data.get("meeting_id")
    if meeting_id and meeting_id in found.meetings:
        return found.meetings[meeting_id]
    return found.emails.get(index)


def content_key(payload: Any) -> str:
    """A stable key for events that carry no id of their own: the hash of their canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    applied: int = 0
    orphans: int = 0
    ignored: int = 0
    outcome_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received, "stored": self.stored, "duplicates": self.duplicates,
            "applied": self.applied, "orphans": self.orphans, "ignored": self.ignored,
        }

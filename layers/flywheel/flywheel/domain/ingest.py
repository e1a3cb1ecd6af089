"""Provider events in normalised form, and how each finds the message it belongs to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.domain.inputs import IDENTIFIER, BadValue, check_json, nested_too_deep, plausible
from flywheel.domain.lifecycle import DEAL_CLOSES, DEAL_EVENTS, EventType

KNOWN_TYPES = frozenset(t.value for t in EventType)
_DEAL_TYPES = frozenset(t.value for t in DEAL_EVENTS)
_CLOSE_TYPES = frozenset(t.value for t in DEAL_CLOSES)

# one lead's deal in one organisation, as a CRM names it: (provider, org, deal id, lead email)
DealGroup = tuple[str, str, str, str]
# one deal as credited to one message (dal.events._DEAL_CREDITS): (org, CRM account, deal id)
DealKey = tuple[str, str, str]


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

    # the provider's own key when `event_key` names the organisation too (`scoped_key`): a copy
    # stored under it by the release before is this event, when it is of the same organisation
    legacy_key: str | None = None
    # stored in the organisation's form (`org_keys`): the mark that tells it from a legacy row
    key_scoped: bool = False

    # how far back an event known only by email may be attributed (set by the ingest service)
    window_days: int | None = None
    # the outcome id it names, when that is a UUID (parsed once: every lookup asks)
    claimed_outcome_id: UUID | None = field(init=False, default=None, repr=False)
    # an over-long id as the provider sent it -> its stored (hashed) form (`__post_init__`)
    long_ids: dict[str, str] = field(init=False, default_factory=dict, repr=False)

    @property
    def known(self) -> bool:
        return self.event_type in KNOWN_TYPES

    @property
    def meeting_id(self) -> str | None:
        value = self.data.get("meeting_id")
        return str(value) if value else None

    @property
    def meeting_links(self) -> list[str]:
        """The meeting ids this event can be linked through, its own first: a rescheduled booking
        also names the booking it replaces (Calendly's `old_invitee`), and a cancellation by a
        reschedule the booking that replaces it (`new_invitee`). The bookings of one reschedule
        chain are one meeting, and belong to one message."""
        links = [self.meeting_id, self.data.get("rescheduled_from"), self.data.get("rescheduled_to")]
        links += [long for long, stored in self.long_ids.items() if stored in links]
        return list(dict.fromkeys(str(m) for m in links if m))

    @property
    def names_message(self) -> bool:
        """The event says which message (or booking) it is about: it never falls back to email.

        A cancellation, no-show or completion names its booking by meeting id; the booking itself
        carries the meeting id as its own identity, not as a reference."""
        return bool(
            self.claimed_outcome_id
            or self.provider_message_id
            or self.references
            or (self.meeting_id and self.event_type != EventType.MEETING_BOOKED.value)
        )

    @property
    def email_key(self) -> str | None:
        """Email attribution stays inside one organisation: no org, no email attribution."""
        return email_link(self.org_id, self.email) if self.email and self.org_id else None

    @property
    def named_deal(self) -> str | None:
        """The deal id of a deal event that names its message (outcome id, provider message id):
        that message is the deal's home when this is its first close (`deal_home`)."""
        deal_id = self.data.get("deal_id")
        if self.event_type not in _DEAL_TYPES or not deal_id or not self.names_message:
            return None
        return str(deal_id)

    @property
    def deal_id(self) -> str | None:
        """The deal a CRM deal event is about (None for any other event, or a deal without an id)."""
        deal_id = self.data.get("deal_id")
        return str(deal_id) if deal_id and self.event_type in _DEAL_TYPES else None

    @property
    def deal_account(self) -> str:
        """The CRM account the deal is numbered in (a Pipedrive company, a HubSpot portal, a
        Salesforce organisation; empty for the in-house CRM): one organisation may map several."""
        return str(self.data.get("deal_account") or "")

    def deal_key(self, org_id: str | None = None) -> DealKey | None:
        """The deal as credited (`dal.events._DEAL_CREDITS`): its organisation (the event's, else
        the one it is linked in), account and id; None for no deal or no organisation yet."""
        org = self.org_id or org_id
        return (org, self.deal_account, deal_id) if org and (deal_id := self.deal_id) else None

    @property
    def deal_group(self) -> DealGroup | None:
        """The deal this event is about, when it is attributed by the lead's email: every event of
        one lead's deal goes to one message (`deal_home`), not each to the lead's latest."""
        deal_id = self.data.get("deal_id")
        if self.event_type not in _DEAL_TYPES or not deal_id or self.names_message or not self.email_key:
            return None
        return (self.provider, str(self.org_id), str(deal_id), str(self.email))

    def link_keys(self) -> list[str]:
        """Everything that can link this event to a message; a registration of that message, or
        another event about the same meeting, locks the same keys (see dal.locks)."""
        keys = [f"outcome:{self.claimed_outcome_id}"] if self.claimed_outcome_id else []
        if self.provider_message_id:
            keys.append(f"pmid:{self.provider_message_id}")
        keys += [f"msgid:{r}" for r in self.references]
        keys += [f"meeting:{m}" for m in self.meeting_links]
        if self.email_key and not self.names_message:
            keys.append(self.email_key)
        if deal := self.deal_key():  # which of a deal's messages counts it depends on all of them
            keys.append(deal_link(*deal))  # (an event of unknown organisation: once linked, services.ingest)
        return keys

    def __post_init__(self) -> None:
        # provider-chosen ids that land in an indexed expression (meeting and deal ids): one longer
        # than MAX_KEY (an iCalendar UID has no bound) is stored under its hash, as keys are; the
        # payload keeps it. Its own spelling stays a link too (`meeting_links`): a row stored before
        # under a long id that still fitted the index is found by it.
        if any(isinstance(self.data.get(name), str) and len(self.data[name]) > MAX_KEY for name in INDEXED_IDS):
            self.data = dict(self.data)
            for name in INDEXED_IDS:
                value = self.data.get(name)
                if isinstance(value, str) and len(value) > MAX_KEY:
                    self.long_ids[value] = self.data[name] = bounded(value)
        try:
            self.claimed_outcome_id = UUID(str(self.outcome_id)) if self.outcome_id else None
        except ValueError:
            self.claimed_outcome_id = None


# never in an organisation id (IDENTIFIER): "<org>|<key>" names one organisation's key unambiguously
SCOPE = "|"


def scoped_key(org_id: str | None, key: str) -> str:
    """An event key that names the organisation of the request it came in (empty when that is
    unknown): for providers whose keys an organisation chooses (its in-house system's
    `webhook-id`, a payload its own credential signs) or that reach several organisations (one
    mail's Message-ID at each one's parse address), so one organisation's key neither pre-empts nor
    takes over another's event."""
    return f"{org_id or ''}{SCOPE}{key}"


def org_keys(org_id: str | None, key: str) -> dict[str, Any]:
    """`event_key` and `legacy_key` of an event whose provider (or sender) chose `key`, received
    for organisation `org_id` (`scoped_key`).

    A key longer than MAX_KEY characters (a Message-ID may fill RFC 5322's 998-character line, and
    nothing bounds a `webhook-id` or a provider's id) is stored under its hash, `long_key`: the
    event is kept, and a redelivery hashes alike, so it is still a duplicate. The full key stays in
    the event's payload (or data). Such a key has no `legacy_key`: the release before refused it, so
    nothing is stored under it."""
    return {
        "event_key": scoped_key(org_id, bounded(key)),
        "legacy_key": key if len(key) <= MAX_KEY else None,
        "key_scoped": True,
    }


def bounded(key: str) -> str:
    """A key as stored: itself up to MAX_KEY characters, else its hash - 80 ASCII characters, so
    with the longest organisation id (128) the (provider, event_key) index entry stays far below
    PostgreSQL's btree limit. Its own prefix: never a content_key."""
    if len(key) <= MAX_KEY:
        return key
    return "long-key:sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Match:
    outcome_id: UUID
    org_id: str


@dataclass(frozen=True)
class Sent:
    """A message an id names, and whom it went to: one provider message id (SendGrid's
    X-Message-Id, one per send request) names every recipient of that request, and nothing stops
    two organisations from registering the same id or Message-ID."""

    outcome_id: UUID
    org_id: str
    lead_email: str | None
    lead_id: str | None = None

    @property
    def recipient(self) -> tuple[str, str | None, str | None]:
        """(org, lead email) - or, for a message registered without one, (org, None, lead id): two
        leads of one send registered without emails are two recipients, not one."""
        if self.lead_email:
            return self.org_id, self.lead_email.lower(), None
        return self.org_id, None, self.lead_id


@dataclass
class Lookups:
    """What the store answered for a batch's link hints."""

    outcomes: dict[UUID, str] = field(default_factory=dict)
    # every recipient's latest message with that id (`Sent`), in any order: `named_by` chooses
    provider_message_ids: dict[str, list[Sent]] = field(default_factory=dict)
    email_message_ids: dict[str, list[Sent]] = field(default_factory=dict)
    # (meeting id, org) -> the outcome of its booking in that organisation
    meetings: dict[tuple[str, str], Match] = field(default_factory=dict)
    emails: dict[int, Match] = field(default_factory=dict)  # by the event's index in the batch


MAX_KEY = 512  # btree entries must stay well under PostgreSQL's 2704-byte limit
# data fields indexed in outcome_events (sql/0006 outcome_events_meeting, sql/0022 outcome_events_deal)
# or compared with those that are: bounded like keys (IncomingEvent.__post_init__)
INDEXED_IDS = ("meeting_id", "rescheduled_from", "rescheduled_to", "deal_id")


def storable_problem(event: IncomingEvent, *, scan_strings: bool = True) -> str | None:
    """Why this normalised event cannot be stored as it is, naming no value (or None)."""
    # the provider's own key is bounded; the organisation a scoped key adds is at most 129 ASCII bytes
    if not event.event_key or len(event.legacy_key or event.event_key) > MAX_KEY:
        return f"event key is empty or longer than {MAX_KEY} characters"
    if event.provider_message_id and len(event.provider_message_id) > 256:
        return "provider message id is longer than 256 characters"
    if event.email and len(event.email) > 320:
        return "email is longer than 320 characters"
    if event.org_id is not None and not IDENTIFIER.fullmatch(event.org_id):
        return "org_id must be 1-128 letters, digits or _.:@/+-"
    if any(len(r) > 998 for r in event.references):
        return "a referenced Message-ID is longer than 998 characters"
    try:
        plausible(event.occurred_at, "occurred_at")
    except BadValue as exc:
        return str(exc)
    if not scan_strings:
        # the raw body was strict UTF-8 JSON without NUL or surrogate escapes: its strings are
        # storable and its numbers finite, and every field here comes from it; only depth is left
        return nested_too_deep(event.payload)
    return (
        check_json(
            [
                event.event_key,
                event.event_type,
                event.email,
                event.outcome_id,
                event.provider_message_id,
                event.references,
            ]
        )
        or check_json(event.data)
        or check_json(event.payload)
    )


def deal_link(org_id: str, account: str, deal_id: str) -> str:
    """The link key of one organisation's deal (`DealKey`): another organisation's deal of the same
    number (Pipedrive numbers deals per company) neither waits for it nor is re-derived with it.
    ('|' is in no organisation id, nor in a CRM account.)"""
    return f"deal:{org_id}|{account}|{deal_id}"


def email_link(org_id: str, email: str) -> str:
    return f"email:{org_id}:{email.lower()}"


def named_by(sent: list[Sent], event: IncomingEvent, *, same_lead: bool) -> Match | None:
    """The one message a shared id names for this event, or None (an orphan) when it names none or
    several recipients. Candidates are the id's messages in the event's organisation (all of them
    when it has none); the event's email (case-insensitive) picks its own lead's message among
    them. An event of unknown organisation only ever matches a message to its own email: that is
    all that tells one organisation's lead from another's.

    Within its organisation, an event whose email is no recipient's (or that has none) takes the
    id's single recipient, if there is one, except that `same_lead` ids (a provider message id:
    every event carries the recipient it is about) never go to another lead's message, only to one
    registered without an email. A Message-ID (`same_lead` False) is the message a reply answers,
    whoever the reply comes from."""
    scope = [s for s in sent if event.org_id is None or s.org_id == event.org_id]
    email = event.email.lower() if event.email else None
    chosen = [s for s in scope if email and s.recipient[1] == email]
    # no recipient of its own: within its organisation, the id's single one (see above)
    if not chosen and event.org_id is not None and (not email or not same_lead or all(not s.lead_email for s in scope)):
        chosen = scope
    if len({s.recipient for s in chosen}) != 1:
        return None
    return Match(chosen[0].outcome_id, chosen[0].org_id)


def choose_match(index: int, event: IncomingEvent, found: Lookups) -> Match | None:
    """The strongest link that resolves: outcome id, provider message id, Message-ID (each to the
    one recipient it names for this event, see `named_by`), the meeting
    it is about (then the booking it replaces in a reschedule, or that replaces it); the lead's email
    only for events that name no message (an event that names one waits as an orphan for it rather
    than landing on another message to the same lead).

    An event never lands in another organisation than its own (when it has one: from the payload
    or the provider account): a reference to another organisation's message leaves it an orphan."""
    candidates: list[Match] = []
    claimed = event.claimed_outcome_id
    if claimed is not None and claimed in found.outcomes:
        candidates.append(Match(claimed, found.outcomes[claimed]))
    named = []
    if event.provider_message_id and event.provider_message_id in found.provider_message_ids:
        named.append(named_by(found.provider_message_ids[event.provider_message_id], event, same_lead=True))
    named += [
        named_by(found.email_message_ids[r], event, same_lead=False)
        for r in event.references
        if r in found.email_message_ids
    ]
    candidates += [m for m in named if m is not None]
    for meeting_id in event.meeting_links:  # its own meeting first, then the one it replaces
        bookings = [m for (mid, _), m in sorted(found.meetings.items()) if mid == meeting_id]
        # a meeting id is only unique within one organisation
        candidates += bookings if event.org_id or len(bookings) == 1 else []
    if not event.names_message and index in found.emails:
        candidates.append(found.emails[index])
    return next((m for m in candidates if event.org_id is None or m.org_id == event.org_id), None)


@dataclass(frozen=True)
class DealEvent:
    """One event of a deal: `home` is where a stored one is applied (None while it waits), or the
    message a new one's email is attributed to. A `fixed` one named its message: it stays there."""

    key: str  # provider:event_key, the lifecycle's tie-break
    event_type: str
    occurred_at: datetime
    home: Match | None
    fixed: bool = False


def deal_home(events: list[DealEvent]) -> tuple[Match | None, str]:
    """Where every event of one lead's deal belongs, and with which status: the message its first
    close (won or lost) is attributed to, so a follow-up sent after the deal closed never gets it,
    and the CRM's latest word about the deal lands where its first one did. A deal whose first close
    has no message (before any was sent, or outside the window) waits, all of it, as orphans; one
    never closed (only reopenings) is ignored until it closes.

    A close that named its message (`fixed`: the CRM's outcome id; its `home` is the message it
    named): when it is the first close, its message is the deal's home; and a deal whose first close
    has no message goes to the first close that named one rather than wait beside it. The answer is
    for every event of the deal, a fixed one too once the deal has a message: a later close that
    names another message of the lead (a follow-up sent after the deal closed) goes to the deal's,
    or the deal would sit on two messages and be counted twice. A fixed event stays on the message
    it named only while the deal has none (no close yet, or a first close with no message)."""
    closes = sorted((e for e in events if e.event_type in _CLOSE_TYPES), key=lambda e: (e.occurred_at, e.key))
    if not closes:
        return None, "ignored"
    home = closes[0].home or next((e.home for e in closes if e.fixed and e.home), None)
    return (home, "applied") if home else (None, "orphan")


def content_key(payload: Any) -> str:
    """A stable key for events that carry no id of their own: the hash of their canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Quarantined:
    """A malformed event of a verified batch: kept verbatim with the reason, never applied."""

    provider: str
    reason: str
    raw: Any
    field: str | None = None
    org_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        # ASCII JSON: NUL, lone surrogates and NaN survive as escapes in a text column
        text = json.dumps(self.raw, ensure_ascii=True, default=str)
        return {
            "provider": self.provider,
            "org_id": self.org_id,
            "reason": _printable(self.reason)[:500],
            "field": _printable(self.field or "")[:200] or None,
            "raw": text,
            "digest": hashlib.sha256(text.encode()).hexdigest(),
        }


def _printable(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)[1:-1] if not text.isprintable() or not text.isascii() else text


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    applied: int = 0
    orphans: int = 0
    ignored: int = 0
    quarantined: int = 0
    outbox: int = 0  # messages for other services written by this batch, to send after commit
    outcome_ids: list[str] = field(default_factory=list)
    # (provider, event_key) of the events this batch newly applied whose type has effects (replies,
    # classifications, opt-outs, corrections: effects.WITH_EFFECTS); other events are only counted
    new_effect_keys: set[tuple[str, str]] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "applied": self.applied,
            "orphans": self.orphans,
            "ignored": self.ignored,
            "quarantined": self.quarantined,
        }

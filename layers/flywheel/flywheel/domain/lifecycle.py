"""Outcome lifecycle: the state of one message, computed from the set of its events.

The state is a pure function of the *set* of events: events are de-duplicated by key and
folded in a canonical order, so arrival order and provider retries never change the result.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from flywheel.domain.labels import TrainingLabel, label_outcome, quality_score


class EventType(StrEnum):
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    DROPPED = "dropped"
    BOUNCE = "bounce"
    OPEN = "open"
    CLICK = "click"
    SPAM_REPORT = "spamreport"
    UNSUBSCRIBE = "unsubscribe"
    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GROUP_RESUBSCRIBE = "group_resubscribe"
    REPLY = "reply"
    REPLY_CLASSIFIED = "reply_classified"
    MEETING_BOOKED = "meeting_booked"
    MEETING_COMPLETED = "meeting_completed"  # an explicit report (in-house CRM); else time decides
    MEETING_CANCELED = "meeting_canceled"
    MEETING_NO_SHOW = "meeting_no_show"
    MEETING_NO_SHOW_CLEARED = "meeting_no_show_cleared"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    # the CRM says the deal is open again (reopened, or deleted): no status until it closes again
    DEAL_REOPENED = "deal_reopened"
    CORRECTION = "correction"  # a person's corrected reply category and/or training label


# What a CRM says about a deal; the latest one per deal is the deal's status (`_derive_deal`).
DEAL_EVENTS: frozenset[EventType] = frozenset({EventType.DEAL_WON, EventType.DEAL_LOST, EventType.DEAL_REOPENED})
DEAL_CLOSES: frozenset[EventType] = frozenset({EventType.DEAL_WON, EventType.DEAL_LOST})

# Events that only a delivered message can produce: they imply delivery even when the
# `delivered` event itself is late or lost.
_ENGAGEMENT = {EventType.OPEN, EventType.CLICK, EventType.REPLY, EventType.MEETING_BOOKED}


@dataclass(frozen=True)
class OutcomeEvent:
    """One normalised provider event. `key` is unique per provider event (retries share it)."""

    key: str
    type: EventType
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    # a run of same-kind events (opens, clicks, deferrals...) read as one: this event is the run's
    # first, `count` its size and `last_at` its latest time (the store folds them; see COUNTED)
    count: int = 1
    last_at: datetime | None = None


@dataclass
class OutcomeState:
    """Everything derived from an outcome's events; field names are outcome_labels columns."""

    processed_at: datetime | None = None
    delivered_at: datetime | None = None
    deferred_count: int = 0
    dropped_at: datetime | None = None
    drop_reason: str | None = None
    bounced_at: datetime | None = None
    bounce_type: str | None = None
    bounce_reason: str | None = None
    bounce_status: str | None = None
    first_opened_at: datetime | None = None
    open_count: int = 0
    first_machine_open_at: datetime | None = None
    machine_open_count: int = 0
    first_clicked_at: datetime | None = None
    click_count: int = 0
    spam_reported_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    replied_at: datetime | None = None
    reply_text: str | None = None
    reply_original_text: str | None = None
    reply_category: str | None = None
    reply_sentiment_score: float | None = None
    reply_interest_level: str | None = None
    reply_objection_type: str | None = None
    reply_classification_source: str | None = None
    reply_classified_at: datetime | None = None
    # automatic replies (out-of-office, acknowledgements): proof of delivery, never engagement
    auto_replied_at: datetime | None = None
    auto_reply_category: str | None = None
    lead_returns_on: date | None = None
    corrected_at: datetime | None = None
    corrected_by: str | None = None
    meeting_booked_at: datetime | None = None
    meeting_scheduled_start: datetime | None = None
    meeting_scheduled_end: datetime | None = None
    meeting_completed_at: datetime | None = None
    meeting_canceled_at: datetime | None = None
    meeting_no_show: bool = False
    deal_status: str | None = None
    deal_value: Decimal | None = None
    deal_currency: str | None = None
    deal_closed_at: datetime | None = None
    # a deal this message led to that is counted on another message (several contacts of one deal
    # were e-mailed: `deal_credits` names the one message the reports count it on); the training
    # label and the stage read it, no count does
    shared_deal_status: str | None = None
    shared_deal_value: Decimal | None = None
    # what every count reads (deals won, revenue): the won deals this message is credited with, each
    # deal once (its own deals and those of several messages it is credited with, however many; the
    # deal_* columns above show one of them)
    # (None when it won none: what a message never re-derived holds, and what its deal_status counts)
    deals_won: int | None = None
    won_revenue: Decimal | None = None
    # when each of those won deals closed, and for how much ([[close time ISO, value], ...] by time),
    # and the first: the experiments' close metric and revenue count the deals closed inside a lead's
    # window, not only the one deal_closed_at shows (None as deals_won)
    first_won_at: datetime | None = None
    won_closes: list[list[str]] | None = None
    stage: str = "sent"
    last_event_at: datetime | None = None
    event_count: int = 0
    training_label: str = TrainingLabel.NEUTRAL.value
    training_weight: float = 1.0
    quality_score: float = 0.0

    @property
    def has_live_meeting(self) -> bool:
        """A meeting stands: one of its bookings is not canceled (a no-show still counts as booked).
        `meeting_booked_at` is set exactly then, so the reports' `meeting_booked_at IS NOT NULL`
        counts the same meetings as the label and the stage."""
        return self.meeting_booked_at is not None

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DERIVED_COLUMNS}


DERIVED_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OutcomeState))

# Event types whose derived columns need only how many there are, the first one and the latest
# time (per machine/human flag for opens): the store may hand them over folded (OutcomeEvent.count).
COUNTED: frozenset[EventType] = frozenset(
    {EventType.PROCESSED, EventType.DELIVERED, EventType.DEFERRED, EventType.OPEN, EventType.CLICK}
)


def canonical(events: Iterable[OutcomeEvent]) -> list[OutcomeEvent]:
    """De-duplicate by key and sort into the one order every fold uses."""
    unique: dict[str, OutcomeEvent] = {}
    for event in events:
        unique.setdefault(event.key, event)
    return sorted(unique.values(), key=lambda e: (e.occurred_at, e.key))


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    # providers send dates without a zone (a close date): read them as UTC
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def derive_outcome(
    events: Iterable[OutcomeEvent],
    *,
    now: datetime,
    icp_score: float | None = None,
    counted_elsewhere: Collection[tuple[str, str]] = (),
) -> OutcomeState:
    """Compute an outcome's derived columns from its events, as of `now`.

    `now` matters only for meetings: one counts as completed once its scheduled end has
    passed without a cancellation or a no-show. `counted_elsewhere`: the (account, deal id) of this
    message's deals that it does not count (`dal.events._DEAL_CREDITS`: another message counts it,
    or none does, the deal being open again by its latest word): they give the label, not the deal
    columns nor the counts (`deals_won`, `won_revenue`).
    """
    ordered = canonical(events)
    state = OutcomeState(event_count=sum(e.count for e in ordered))
    if ordered:
        state.last_event_at = max(e.last_at or e.occurred_at for e in ordered)

    by_type: dict[EventType, list[OutcomeEvent]] = {}
    for event in ordered:
        by_type.setdefault(event.type, []).append(event)

    def first(kind: EventType) -> OutcomeEvent | None:
        found = by_type.get(kind)
        return found[0] if found else None

    if e := first(EventType.PROCESSED):
        state.processed_at = e.occurred_at
    state.deferred_count = sum(e.count for e in by_type.get(EventType.DEFERRED, []))
    if e := first(EventType.DROPPED):
        state.dropped_at, state.drop_reason = e.occurred_at, e.data.get("reason")
    bounces = by_type.get(EventType.BOUNCE, [])
    if bounces:
        state.bounced_at = bounces[0].occurred_at
        # one hard bounce outweighs any number of blocks, and a block any number of soft bounces
        rank = {"bounce": 0, "blocked": 1, "soft": 2}
        decisive = min(bounces, key=lambda b: rank.get(b.data.get("bounce_type", "bounce"), 0))
        state.bounce_type = decisive.data.get("bounce_type", "bounce")
        state.bounce_reason, state.bounce_status = decisive.data.get("reason"), decisive.data.get("status")

    opens = by_type.get(EventType.OPEN, [])
    human = [o for o in opens if not o.data.get("machine_open")]
    machine = [o for o in opens if o.data.get("machine_open")]
    state.open_count, state.machine_open_count = sum(o.count for o in human), sum(o.count for o in machine)
    state.first_opened_at = human[0].occurred_at if human else None
    state.first_machine_open_at = machine[0].occurred_at if machine else None
    clicks = by_type.get(EventType.CLICK, [])
    state.click_count = sum(c.count for c in clicks)
    state.first_clicked_at = clicks[0].occurred_at if clicks else None

    if e := first(EventType.DELIVERED):
        state.delivered_at = e.occurred_at
    else:
        engaged = [e for e in ordered if e.type in _ENGAGEMENT]
        if engaged:
            state.delivered_at = engaged[0].occurred_at

    if e := first(EventType.SPAM_REPORT):
        state.spam_reported_at = e.occurred_at
    _derive_unsubscribe(state, by_type)
    _derive_reply(state, by_type)
    _derive_meeting(state, by_type, now)
    _derive_deal(state, by_type, frozenset(counted_elsewhere))

    state.stage = derive_stage(state)
    label, weight = label_outcome(state)
    state.training_label, state.training_weight = label.value, weight
    _apply_corrections(state, by_type)
    state.quality_score = quality_score(state, icp_score)
    return state


def _derive_unsubscribe(state: OutcomeState, by_type: dict[EventType, list[OutcomeEvent]]) -> None:
    if unsubscribes := by_type.get(EventType.UNSUBSCRIBE):
        state.unsubscribed_at = unsubscribes[0].occurred_at
        return
    # group (ASM) subscriptions can flip back and forth: the latest decision stands
    group = sorted(
        by_type.get(EventType.GROUP_UNSUBSCRIBE, []) + by_type.get(EventType.GROUP_RESUBSCRIBE, []),
        key=lambda e: (e.occurred_at, e.key),
    )
    if group and group[-1].type == EventType.GROUP_UNSUBSCRIBE:
        state.unsubscribed_at = group[-1].occurred_at


AUTOMATED_REPLY_CATEGORIES = frozenset({"out_of_office", "auto_reply"})
_CORRECTABLE = ("reply_category", "training_label", "training_weight")


def corrections(by_type: dict[EventType, list[OutcomeEvent]]) -> dict[str, tuple[Any, OutcomeEvent]]:
    """The correction in force for each field: the latest correction naming it (a later one that sets
    the field to null reverts it to the derived value)."""
    found: dict[str, tuple[Any, OutcomeEvent]] = {}
    for event in by_type.get(EventType.CORRECTION, []):  # canonical order: latest last
        for name in _CORRECTABLE:
            if name in event.data.get("fields", []):
                found[name] = (event.data.get(name), event)
    return {name: value for name, value in found.items() if value[0] is not None}


def _derive_reply(state: OutcomeState, by_type: dict[EventType, list[OutcomeEvent]]) -> None:
    replies = by_type.get(EventType.REPLY, [])
    if not replies:
        return
    classifications = by_type.get(EventType.REPLY_CLASSIFIED, [])

    def classification(reply: OutcomeEvent) -> OutcomeEvent | None:
        own = [c for c in classifications if c.data.get("reply_key") == reply.key]
        return own[-1] if own else None

    def category(reply: OutcomeEvent) -> str | None:
        found = classification(reply)
        return found.data.get("category") if found else reply.data.get("category")

    corrected = corrections(by_type).get("reply_category")
    # a person's category is for "the reply": the lead's first reply, else the first automatic one
    target = (
        next(
            (r for r in replies if not (r.data.get("automated") or category(r) in AUTOMATED_REPLY_CATEGORIES)),
            replies[0],
        )
        if corrected
        else None
    )

    def effective(reply: OutcomeEvent) -> str | None:
        return str(corrected[0]) if corrected and reply is target else category(reply)

    def automated(reply: OutcomeEvent) -> bool:
        if corrected and reply is target:
            return effective(reply) in AUTOMATED_REPLY_CATEGORIES
        return bool(reply.data.get("automated")) or effective(reply) in AUTOMATED_REPLY_CATEGORIES

    human = [r for r in replies if not automated(r)]
    machine = [r for r in replies if automated(r)]
    if machine:
        first = machine[0]
        state.auto_replied_at = first.occurred_at
        state.auto_reply_category = effective(first) or "auto_reply"
        found = classification(first)
        back = (found.data.get("return_date") if found else None) or first.data.get("return_date")
        state.lead_returns_on = date.fromisoformat(str(back)) if back else None
    if not human:
        return
    # the first reply is the answer to this message; later ones are the conversation
    reply = human[0]
    state.replied_at = reply.occurred_at
    state.reply_text = reply.data.get("text")
    state.reply_original_text = reply.data.get("full_text") or reply.data.get("text")
    # a classification stored under another key (older jobs) still counts when no reply owns it
    keys = {r.key for r in replies}
    unowned = [c for c in classifications if c.data.get("reply_key") not in keys]
    chosen = classification(reply) or (unowned[-1] if unowned else None)
    if chosen is None and not str(reply.data.get("text") or "").strip():
        # a reply with no text of its own (an attachment, a bare "Sent from my iPhone" above the
        # quote) is never queued for the classifier: what the lead wrote next answers for it,
        # else it is "other" - not a reply left unclassified for ever
        chosen = next((found for later in human[1:] if (found := classification(later))), None)
        if chosen is None:
            state.reply_category = "other"
            state.reply_classification_source = "empty"
            state.reply_classified_at = reply.occurred_at
    if chosen is not None:
        data = chosen.data
        state.reply_category = data.get("category")
        score = data.get("sentiment_score")
        state.reply_sentiment_score = None if score is None else float(score)
        state.reply_interest_level = data.get("interest_level")
        state.reply_objection_type = data.get("objection_type")
        state.reply_classification_source = data.get("source")
        state.reply_classified_at = chosen.occurred_at
    if corrected and reply is target:
        state.reply_category = str(corrected[0])
        state.reply_classification_source = "human"
        state.reply_classified_at = corrected[1].occurred_at


def _apply_corrections(state: OutcomeState, by_type: dict[EventType, list[OutcomeEvent]]) -> None:
    """A person's training label (and weight) override the derived ones; every correction in
    force is recorded with who made the latest one."""
    found = corrections(by_type)
    if "training_label" in found:
        state.training_label = str(found["training_label"][0])
    if "training_weight" in found:
        state.training_weight = float(found["training_weight"][0])
    if found:
        latest = max((event for _, event in found.values()), key=lambda e: (e.occurred_at, e.key))
        state.corrected_at, state.corrected_by = latest.occurred_at, latest.data.get("actor")


def _derive_meeting(state: OutcomeState, by_type: dict[EventType, list[OutcomeEvent]], now: datetime) -> None:
    """A meeting is a booking that is not canceled. A reschedule cancels the old booking and books a
    new one, linked to the same message (domain.ingest): the meeting stands, counted once. Once
    every booking is canceled there is no meeting: `meeting_booked_at` stays empty (every report
    counts `meeting_booked_at IS NOT NULL`) and `meeting_canceled_at` says when."""
    bookings = by_type.get(EventType.MEETING_BOOKED, [])
    if not bookings:
        return
    canceled = {e.data.get("meeting_id"): e for e in by_type.get(EventType.MEETING_CANCELED, [])}
    active = [b for b in bookings if b.data.get("meeting_id") not in canceled]
    if not active:
        state.meeting_canceled_at = max(e.occurred_at for e in canceled.values())
        return
    state.meeting_booked_at = bookings[0].occurred_at  # first booked (a reschedule keeps the date)
    meeting = active[-1]  # the most recent live booking (a reschedule replaces the old one)
    meeting_id = meeting.data.get("meeting_id")
    state.meeting_scheduled_start = _parse_time(meeting.data.get("start_time"))
    state.meeting_scheduled_end = _parse_time(meeting.data.get("end_time"))
    marks = sorted(
        [
            e
            for kind in (EventType.MEETING_NO_SHOW, EventType.MEETING_NO_SHOW_CLEARED)
            for e in by_type.get(kind, [])
            if e.data.get("meeting_id") == meeting_id
        ],
        key=lambda e: (e.occurred_at, e.key),
    )
    state.meeting_no_show = bool(marks) and marks[-1].type == EventType.MEETING_NO_SHOW
    if state.meeting_no_show:
        return
    reported = [e for e in by_type.get(EventType.MEETING_COMPLETED, []) if e.data.get("meeting_id") == meeting_id]
    end = state.meeting_scheduled_end
    if reported:
        state.meeting_completed_at = reported[0].occurred_at
    elif end is not None and end <= now:
        state.meeting_completed_at = end


def _deal_of(event: OutcomeEvent) -> tuple[str, Any]:
    """A deal as the lifecycle tells deals apart: its CRM account (`deal_account`, empty when none)
    and its id (None for a deal event without one: a message's id-less closes are one deal)."""
    deal_id = event.data.get("deal_id")
    return str(event.data.get("deal_account") or ""), (str(deal_id) if deal_id else None)


def latest_deal_words(events: Iterable[OutcomeEvent]) -> dict[tuple[str, Any], OutcomeEvent]:
    """The CRM's latest word per deal (account, id) among these events (canonical order)."""
    latest: dict[tuple[str, Any], OutcomeEvent] = {}
    for event in sorted((e for e in events if e.type in DEAL_EVENTS), key=lambda e: (e.occurred_at, e.key)):
        latest[_deal_of(event)] = event
    return latest


def _closed(latest: Iterable[OutcomeEvent]) -> OutcomeEvent | None:
    """The deal that decides a status among these latest words: the latest won, else the latest
    lost; a deal reopened (or deleted) since it closed is neither won nor lost."""
    deals = sorted((e for e in latest if e.type != EventType.DEAL_REOPENED), key=lambda e: (e.occurred_at, e.key))
    won = [d for d in deals if d.type == EventType.DEAL_WON]
    return won[-1] if won else (deals[-1] if deals else None)


def _derive_deal(
    state: OutcomeState,
    by_type: dict[EventType, list[OutcomeEvent]],
    counted_elsewhere: frozenset[tuple[str, str]],
) -> None:
    latest = latest_deal_words(e for kind in DEAL_EVENTS for e in by_type.get(kind, []))
    shared = [e for deal, e in latest.items() if deal[1] is not None and deal in counted_elsewhere]
    if deal := _closed(shared):
        state.shared_deal_status = "won" if deal.type == EventType.DEAL_WON else "lost"
        state.shared_deal_value = _decimal(deal.data.get("value"))
    own = [e for deal, e in latest.items() if deal[1] is None or deal not in counted_elsewhere]
    # every deal credited here is counted, not only the one the deal_* columns show: a message that
    # won two deals (its lead's two deals, or its own and one several messages led to) counts two
    won = [e for e in own if e.type == EventType.DEAL_WON]
    if won:
        state.deals_won = len(won)
        state.won_revenue = sum((_decimal(e.data.get("value")) or Decimal(0) for e in won), Decimal("0.00"))
        closes = sorted((_closed_at(e), _decimal(e.data.get("value")) or Decimal(0)) for e in won)
        state.first_won_at = closes[0][0]
        state.won_closes = [[at.isoformat(), str(value)] for at, value in closes]
    if (deal := _closed(own)) is None:
        return
    state.deal_status = "won" if deal.type == EventType.DEAL_WON else "lost"
    state.deal_value = _decimal(deal.data.get("value"))
    state.deal_currency = deal.data.get("currency")
    state.deal_closed_at = _closed_at(deal)


def _closed_at(deal: OutcomeEvent) -> datetime:
    """When a deal closed: the CRM's close date, else when it said so."""
    return _parse_time(deal.data.get("close_date")) or deal.occurred_at


def derive_stage(state: OutcomeState) -> str:
    """The furthest point the message reached, for people reading the funnel."""
    checks: list[tuple[str, object]] = [
        ("deal_won", "won" in (state.deal_status, state.shared_deal_status)),
        ("deal_lost", "lost" in (state.deal_status, state.shared_deal_status)),
        ("meeting_completed", state.meeting_completed_at),
        ("meeting_booked", state.has_live_meeting),
        ("replied", state.replied_at),
        ("spam_reported", state.spam_reported_at),
        ("unsubscribed", state.unsubscribed_at),
        ("clicked", state.first_clicked_at),
        ("opened", state.first_opened_at),
        ("auto_replied", state.auto_replied_at),
        ("delivered", state.delivered_at),
        ("bounced", state.bounced_at),
        ("dropped", state.dropped_at),
    ]
    return next((name for name, hit in checks if hit), "sent")

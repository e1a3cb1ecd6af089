"""Storing provider events and applying them to their outcomes, set-wise, in one transaction.

Everything an event causes happens in the transaction that stores it: the outcome's derived
columns, a suppression, a reply queued for the classifier (through the outbox). Writers follow the
lock order of `flywheel.dal.locks`, so concurrent deliveries end as one ordered delivery would.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

from flywheel.dal import events as events_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal import quarantine as quarantine_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.dal.events import Inserted
from flywheel.dal.locks import lock_links, lock_outcomes, try_lock_links
from flywheel.domain.ingest import (
    DealEvent,
    DealGroup,
    IncomingEvent,
    IngestResult,
    Lookups,
    Match,
    Quarantined,
    Sent,
    choose_match,
    deal_link,
    email_link,
)
from flywheel.domain.lifecycle import EventType
from flywheel.services.deals import DealPlan, plan_deals
from flywheel.services.outcomes import apply_effects, recompute


def _lookups(conn: Connection, events: list[IncomingEvent], found: Lookups | None = None) -> Lookups:
    found = found or Lookups()
    claimed = sorted({e.claimed_outcome_id for e in events if e.claimed_outcome_id is not None})
    pmids = sorted({e.provider_message_id for e in events if e.provider_message_id})
    refs = sorted({r for e in events for r in e.references})
    meetings = sorted({m for e in events for m in e.meeting_links})
    found.outcomes.update(outcomes_dal.existing_outcomes(conn, claimed))
    for column, values, into in (
        ("provider_message_id", pmids, found.provider_message_ids),
        ("email_message_id", refs, found.email_message_ids),
    ):
        into.update({k: [Sent(*s) for s in sent] for k, sent in outcomes_dal.by_column(conn, column, values).items()})
    found.meetings.update({k: Match(*v) for k, v in events_dal.outcomes_for_meetings(conn, meetings).items()})
    return found


def _email_lookups(conn: Connection, events: list[IncomingEvent], positions: list[int], found: Lookups) -> None:
    """Email attribution for the events that name no message and resolve no other way."""
    wanted = [
        i
        for i in positions
        if not events[i].names_message
        and events[i].email_key
        and events[i].window_days
        and choose_match(i, events[i], found) is None
    ]
    queries = [
        (
            str(events[i].org_id),
            str(events[i].email),
            events[i].occurred_at.isoformat(),
            int(events[i].window_days or 0),
        )
        for i in wanted
    ]
    for pos, match in outcomes_dal.latest_for_emails(conn, queries).items():
        found.emails[wanted[pos]] = Match(*match)


class _RetryWithMoreLocks(Exception):
    def __init__(self, keys: list[str]) -> None:
        super().__init__("more link keys needed")
        self.keys = keys


def _deal_leads(conn: Connection, events: list[IncomingEvent], matches: list[Match | None]) -> dict[int, str]:
    """The lead of the message each deal event that names its message resolved to, by position:
    that lead's deal is the one it is about (its e-mail-only events follow it, see services.deals)."""
    found = {i: m for i, e in enumerate(events) if e.known and e.named_deal and (m := matches[i])}
    if not found:
        return {}
    contacts = outcomes_dal.lead_contacts(conn, sorted({m.outcome_id for m in found.values()}, key=str))
    leads = {}
    for i, match in found.items():
        contact = contacts.get(match.outcome_id)
        if contact and contact["lead_email"]:
            leads[i] = str(contact["lead_email"])
    return leads


def _lead_keys(matches: list[Match | None], leads: dict[int, str]) -> list[str]:
    return [email_link(m.org_id, email) for i, email in leads.items() if (m := matches[i])]


def _deals(
    conn: Connection, events: list[IncomingEvent], matches: list[Match | None], leads: dict[int, str]
) -> DealPlan:
    """A deal event linked by email goes where its deal is (see services.deals): `matches` holds
    each one's own email attribution, and is updated in place. A deal event that named its message
    (`leads`: that message's lead) is part of that lead's deal: it goes where the deal is, and stays
    on the message it named while the deal has none."""
    new: dict[DealGroup, list[tuple[int, DealEvent]]] = {}
    for i, event in enumerate(events):
        if not event.known:
            continue
        key = f"{event.provider}:{event.event_key}"
        if group := event.deal_group:
            new.setdefault(group, []).append((i, DealEvent(key, event.event_type, event.occurred_at, matches[i])))
        elif (deal_id := event.named_deal) and (match := matches[i]) and i in leads:
            fixed = DealEvent(key, event.event_type, event.occurred_at, match, fixed=True)
            new.setdefault((event.provider, match.org_id, deal_id, leads[i]), []).append((i, fixed))
    plan = plan_deals(conn, new) if new else DealPlan()
    for i, (home, _) in plan.placed.items():
        matches[i] = home
    return plan


def _linked_deal_keys(events: list[IncomingEvent], matches: list[Match | None]) -> list[str]:
    """The deal link keys of the deal events of unknown organisation linked to a message (by its
    outcome id or provider message id): the deal is that message's organisation's, and takes its
    lock like every other event of the deal (`IncomingEvent.link_keys` has no organisation for it)."""
    return [
        deal_link(*deal)
        for e, m in zip(events, matches, strict=True)
        if e.known and e.org_id is None and m is not None and (deal := e.deal_key(m.org_id))
    ]


def _row(event: IncomingEvent, match: Match | None, status: str | None = None) -> dict[str, Any]:
    # a deal reopened that names no message and is no lead's deal has nothing to wait for
    stray = event.event_type == EventType.DEAL_REOPENED.value and not event.names_message and not event.deal_group
    status = status or ("ignored" if not event.known or (stray and not match) else ("applied" if match else "orphan"))
    email_only = not event.names_message and event.email_key is not None
    return {
        "provider": event.provider,
        "event_key": event.event_key,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "org_id": match.org_id if match else event.org_id,
        "outcome_id": str(match.outcome_id) if match and status == "applied" else None,
        "status": status,
        "match_outcome_id": str(event.claimed_outcome_id) if event.claimed_outcome_id else None,
        "match_provider_message_id": event.provider_message_id,
        "match_email": event.email,
        "match_references": event.references or None,
        "match_window_days": event.window_days if email_only else None,
        "data": event.data,
        "payload": event.payload,
        "legacy_key": event.legacy_key,
        "legacy_org": event.org_id,
        "key_scoped": event.key_scoped or None,
    }


def ingest_events(
    events: list[IncomingEvent],
    *,
    window_days: int,
    now: datetime | None = None,
    quarantined: list[Quarantined] | None = None,
) -> IngestResult:
    """Store every new event once (known keys are skipped), quarantine the malformed ones of the
    batch, and re-derive the outcomes the events touch."""
    result = IngestResult(received=len(events) + len(quarantined or []))
    # one provider batch can repeat an event: the first copy stands
    unique = list({(e.provider, e.event_key): e for e in reversed(events)}.values())[::-1]
    for event in unique:
        event.window_days = event.window_days or window_days
    if not unique and not quarantined:
        return result
    extra: list[str] = []
    for _attempt in range(3):
        try:
            inserted, touched, result.outbox, quarantined_count = _store(unique, quarantined, now, extra)
            break
        except _RetryWithMoreLocks as retry:
            extra += retry.keys
    else:  # pragma: no cover - three registrations racing one named deal event
        inserted, touched, result.outbox, quarantined_count = _store(unique, quarantined, now, extra, wait=True)
    result.quarantined = quarantined_count
    statuses: Counter[str] = Counter()
    for _, status, n in inserted.counts:
        statuses[status] += n
    result.stored = statuses.total()
    result.duplicates = len(events) - result.stored
    result.applied, result.orphans, result.ignored = statuses["applied"], statuses["orphan"], statuses["ignored"]
    result.outcome_ids = sorted(str(o) for o in touched)
    result.new_effect_keys = {(e["provider"], e["event_key"]) for e in inserted.with_effects}
    return result


def _store(
    unique: list[IncomingEvent],
    quarantined: list[Quarantined] | None,
    now: datetime | None,
    extra: list[str],
    wait: bool = False,
) -> tuple[Inserted, set[UUID], int, int]:
    """One attempt, in one transaction: (what was inserted, the outcomes touched, outbox messages,
    events quarantined). `extra`: link keys a previous attempt found it needed."""
    quarantined_count = 0
    with transaction() as conn:
        # organisations first, like a registration, before any link lock: a registration creating
        # an organisation and an event naming it must not each wait for the other
        outcomes_dal.ensure_organizations(
            conn, [o for o in (*(e.org_id for e in unique), *(q.org_id for q in quarantined or [])) if o]
        )
        if quarantined:
            quarantined_count = quarantine_dal.add(conn, [q.as_row() for q in quarantined])
        found = _lookups(conn, unique)
        _email_lookups(conn, unique, list(range(len(unique))), found)
        # events that could still become orphans, or be attributed by email, or that concern a
        # meeting: take their link keys, then look them up again (a registration or another
        # event that raced them has committed by then)
        matches = [choose_match(i, e, found) for i, e in enumerate(unique)]
        # a deal event that names its message is part of that message's lead's deal: it takes the
        # link lock of the lead's email too, like every other event of the deal
        leads = _deal_leads(conn, unique, matches)
        racing = [
            i
            for i, e in enumerate(unique)
            if e.known
            and (e.meeting_id or e.deal_id or e.deal_group or e.named_deal or matches[i] is None or i in found.emails)
        ]
        keys = [k for i in racing for k in unique[i].link_keys()] + _lead_keys(matches, leads) + extra
        keys += _linked_deal_keys(unique, matches)
        if held := set(lock_links(conn, keys)):
            found.emails = {i: m for i, m in found.emails.items() if i not in racing}
            found = _lookups(conn, [unique[i] for i in racing], found)
            _email_lookups(conn, unique, racing, found)
            for i in racing:
                matches[i] = choose_match(i, unique[i], found)
            leads = _deal_leads(conn, unique, matches)
            # a message registered meanwhile: its lead's lock, without waiting out of order
            late = _lead_keys(matches, leads) + _linked_deal_keys(unique, matches)
            if not wait and not try_lock_links(conn, late, held):
                raise _RetryWithMoreLocks(late)
        # a deal's events all go where its first close went (the link lock of the lead's email,
        # held since lock_links, keeps the deal's stored events still while this decides)
        deals = _deals(conn, unique, matches, leads)
        rows = [_row(e, matches[i], deals.placed.get(i, (None, None))[1]) for i, e in enumerate(unique)]
        # a deal counted on one of its messages (dal.events.deals_counted_elsewhere): the messages
        # holding it now (its link lock, held, keeps that set still) are re-derived with the new ones
        # (of the organisation each lands in: another organisation's deal of that number is not it)
        known_deals = [
            (e.provider, d) for i, e in enumerate(unique) if e.known and (d := e.deal_key(rows[i]["org_id"]))
        ]
        # the deal's rows stored before sql/0028 without their account are this deal's (its lock is held)
        events_dal.adopt_deal_account(conn, known_deals)
        holders = events_dal.deal_holders(conn, [d for _, d in known_deals])
        icp = lock_outcomes(
            conn,
            {m.outcome_id for i, m in enumerate(matches) if m and rows[i]["outcome_id"]} | deals.outcomes | holders,
        )
        inserted = events_dal.insert_events(conn, rows)
        touched = {outcome_id for outcome_id, status, _ in inserted.counts if outcome_id and status == "applied"}
        touched |= deals.apply(conn) | holders
        meeting_claims = events_dal.claim_meeting_orphans(conn, touched)
        touched |= {r["outcome_id"] for r in meeting_claims}
        outbox = apply_effects(conn, [*inserted.with_effects, *meeting_claims])
        recompute(conn, touched, now, icp=icp)
    return inserted, touched, outbox, quarantined_count


def linked_outcome(
    provider: str, event_key: str, legacy_key: str | None = None, org_id: str | None = None
) -> str | None:
    """The outcome a stored event applies to (None while it is an orphan): stored under its key,
    else under its `legacy_key` by the release before (for organisation `org_id`, when known)."""
    with transaction() as conn:
        found = events_dal.outcome_of(conn, provider, event_key)
        if found is None and legacy_key is not None and legacy_key != event_key:
            found = events_dal.legacy_outcome_of(conn, provider, legacy_key, org_id)
    return str(found) if found else None


def known_keys(provider: str, event_keys: list[str]) -> set[str]:
    """Which of these event keys are stored already."""
    if not event_keys:
        return set()
    with transaction() as conn:
        return events_dal.known_keys(conn, provider, event_keys)

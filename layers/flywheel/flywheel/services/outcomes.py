"""Registering messages and keeping each outcome's derived columns in step with its events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flywheel.dal import events as events_dal
from flywheel.dal import experiments as experiments_dal
from flywheel.dal import outbox as outbox_dal
from flywheel.dal import outcomes as outcomes_dal
from flywheel.dal import suppressions as suppressions_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.dal.locks import lock_links, lock_outcomes, try_lock_links
from flywheel.domain.effects import effects_of, may_have_effects
from flywheel.domain.ingest import deal_link, email_link
from flywheel.domain.lifecycle import DEAL_EVENTS, derive_outcome
from flywheel.domain.registration import (
    legacy_dedupe_key,
    message_row,
    route_problems,
    route_reference,
    same_recipient,
)
from flywheel.errors import InvalidInput, NotFound
from flywheel.services.deals import settle_claimed

if TYPE_CHECKING:  # the webhook, reply and classifier paths apply events here but register nothing
    from flywheel.models.messages import MessageIn, RegistrationResult


class _RetryWithMoreLocks(Exception):
    def __init__(self, keys: list[str]) -> None:
        super().__init__("more link keys needed")
        self.keys = keys


def apply_effects(conn: Connection, applied: Iterable[dict[str, Any]]) -> int:
    """Suppressions and outbox messages of newly applied events (on arrival or claimed later);
    returns how many outbox messages wait to be sent."""
    rows = [r for r in applied if r["status"] == "applied" and may_have_effects(r)]
    if not rows:
        return 0
    effects = effects_of(rows, outcomes_dal.lead_contacts(conn, sorted({r["outcome_id"] for r in rows})))
    suppressions_dal.suppress_many(conn, [(s.org_id, s.email, s.reason, s.outcome_id) for s in effects.suppressions])
    return outbox_dal.add(conn, [(m.topic, m.dedupe_key, m.payload) for m in effects.outbox])


def recompute(
    conn: Connection,
    outcome_ids: set[UUID] | list[UUID],
    now: datetime | None = None,
    icp: dict[UUID, float | None] | None = None,
) -> None:
    """Re-derive the lifecycle columns of these outcomes from all their events, in bulk.

    The caller holds the outcomes' row locks (dal.locks; `icp` is what taking them read), so every
    committed event is seen. A deal several of the messages led to is counted on one of them
    (dal.events.deals_counted_elsewhere); a writer that changes which messages hold a deal holds its
    link lock and re-derives every holder."""
    ids = sorted(set(outcome_ids), key=attrgetter("int"))  # UUID's own __lt__ is slow on 10,000s
    if not ids:
        return
    now = now or datetime.now(UTC)
    events = events_dal.events_for(conn, ids)
    with_deals = [
        oid for oid in ids if any(e.type in DEAL_EVENTS and e.data.get("deal_id") for e in events.get(oid, []))
    ]
    elsewhere = events_dal.deals_counted_elsewhere(conn, with_deals) if with_deals else {}
    icp = icp if icp is not None else outcomes_dal.icp_scores(conn, ids)
    outcomes_dal.update_derived(
        conn,
        {
            oid: derive_outcome(
                events.get(oid, []), now=now, icp_score=icp.get(oid), counted_elsewhere=elsewhere.get(oid, ())
            ).as_row()
            for oid in ids
        },
    )


def _link_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys = []
    for r in rows:
        keys += [f"pmid:{r['provider_message_id']}"] if r["provider_message_id"] else []
        keys += [f"msgid:{r['email_message_id']}"] if r["email_message_id"] else []
        keys += [email_link(r["org_id"], r["lead_email"])] if r["lead_email"] else []
    return keys


def register_messages(
    messages: list[MessageIn], outcome_ids: list[UUID] | None = None, *, batch: bool = True
) -> RegistrationResult:
    """Register messages idempotently and apply, with their effects, the events that arrived before them.
    `outcome_ids` fixes the ids of new messages (the local sample data); the database assigns them otherwise.
    A route naming what does not exist for its lead refuses the whole request (InvalidInput, fields
    named `messages.<i>.route...`, or `route...` for a single message when not `batch`)."""
    from flywheel.models.messages import RegisteredMessage, RegistrationResult

    rows = [message_row(m) for m in messages]
    checks = _RouteCheck(rows, "messages.{}." if batch else "")
    if outcome_ids is not None:
        for row, outcome_id in zip(rows, outcome_ids, strict=True):
            row["outcome_id"] = str(outcome_id)
    # the same message twice in one request is one message, and its first copy stands (as across
    # requests, and as on every webhook): a later copy with other content changes nothing
    firsts: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        firsts.setdefault((row["org_id"], row["dedupe_key"]), row)
    unique = list(firsts.values())
    extra: list[str] = []
    for _attempt in range(3):
        try:
            ids, pending = _register(unique, extra, checks)
            break
        except _RetryWithMoreLocks as retry:
            extra += retry.keys
    else:  # pragma: no cover - three meeting orphans racing the same registration
        ids, pending = _register(unique, extra, checks, wait=True)
    if pending:
        from flywheel.services.outbox import flush_after_commit

        flush_after_commit(["replies"])
    seen: set[tuple[str, str]] = set()
    results = []
    for r in rows:
        key = (r["org_id"], r["dedupe_key"])
        outcome_id, created = ids[key]
        results.append(RegisteredMessage(outcome_id=outcome_id, created=created and key not in seen))
        seen.add(key)
    created_count = sum(1 for r in results if r.created)
    return RegistrationResult(outcomes=results, created=created_count, existing=len(results) - created_count)


class _RouteCheck:
    """The routes of a request, checked in the registration's transaction before anything is written."""

    def __init__(self, rows: list[dict[str, Any]], prefix: str) -> None:
        self.rows, self.prefix = rows, prefix
        self.references = [ref for ref in map(route_reference, rows) if ref is not None]

    def __call__(self, conn: Connection) -> None:
        # one statement for the batch, and none when no message names a registry model or experiment
        found = experiments_dal.route_references(conn, self.references) if self.references else {}
        problems = route_problems(self.rows, found)
        if problems:
            fields = [{"field": self.prefix.format(i) + field, "message": reason} for i, field, reason in problems]
            raise InvalidInput(f"{fields[0]['field']}: {fields[0]['message']}", fields=fields)


def _legacy_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[UUID, bool]]:
    """Messages stored before their key named the recipient, under `pmid:<id>` alone: a retry of
    one is a duplicate when that stored message went to the same recipient and nothing is stored
    under the new key yet (another recipient of the same send is a message of its own)."""
    legacy = {(r["org_id"], r["dedupe_key"]): (r, key) for r in rows if (key := legacy_dedupe_key(r))}
    if not legacy:
        return {}
    stored = outcomes_dal.stored_keys(conn, [*legacy, *((org, key) for (org, _), (_, key) in legacy.items())])
    found = {}
    for (org, new_key), (row, key) in legacy.items():
        old = stored.get((org, key))
        if (org, new_key) not in stored and old is not None and same_recipient(row, old):
            found[(org, new_key)] = (old["outcome_id"], False)
    return found


def _register(
    unique: list[dict[str, Any]], extra: list[str], check: _RouteCheck, wait: bool = False
) -> tuple[dict[tuple[str, str], tuple[UUID, bool]], int]:
    with transaction() as conn:
        check(conn)
        outcomes_dal.ensure_organizations(conn, [r["org_id"] for r in unique])
        # the orphans these messages may claim, and the meetings those orphans are about, are
        # locked before anything is written (see dal.locks); a concurrent event waits for us
        probe = [{**r, "outcome_id": None} for r in unique]
        # (and the deals: which of a deal's messages counts it depends on every one of them)
        orphan_links = events_dal.orphan_links_for(conn, probe)
        held = set(lock_links(conn, _link_keys(unique) + orphan_links + extra))
        # (the provider message id's link key, held now, keeps its legacy keys still)
        legacy = _legacy_duplicates(conn, unique)
        ids = outcomes_dal.insert_outcomes(conn, [r for r in unique if (r["org_id"], r["dedupe_key"]) not in legacy])
        ids.update(legacy)
        new = [
            {**r, "outcome_id": ids[(r["org_id"], r["dedupe_key"])][0]}
            for r in unique
            if ids[(r["org_id"], r["dedupe_key"])][1]
        ]
        claimed = events_dal.claim_orphans(conn, new)
        late = [f"meeting:{r['meeting_id']}" for r in claimed if r["meeting_id"]]
        late += [deal_link(r["org_id"], r["deal_account"], r["deal_id"]) for r in claimed if r["deal_id"]]
        if late and not wait and not try_lock_links(conn, late, held):
            raise _RetryWithMoreLocks(late)
        touched = {r["outcome_id"] for r in claimed}
        claimed += events_dal.claim_meeting_orphans(conn, touched)
        touched |= {r["outcome_id"] for r in claimed}
        # each claimed orphan went to its own latest message: a deal's events go where its first
        # close went, or wait together (the leads' email keys are held)
        touched |= settle_claimed(conn, claimed, {r["outcome_id"]: r["lead_email"] for r in new}).apply(conn)
        # every message of a claimed deal: which of them counts it may have changed
        claimed_deals = [
            (r["provider"], (r["org_id"], r["deal_account"], r["deal_id"])) for r in claimed if r["deal_id"]
        ]
        # the deal's rows stored before sql/0028 without their account are this deal's (its lock is held)
        events_dal.adopt_deal_account(conn, claimed_deals)
        touched |= events_dal.deal_holders(conn, [d for _, d in claimed_deals])
        icp = lock_outcomes(conn, touched)
        pending = apply_effects(conn, claimed)
        recompute(conn, touched, icp=icp)
    return ids, pending


def outcome_view(outcome_id: UUID, org_id: str) -> dict[str, Any]:
    """An outcome of this organisation, with its derived stage and its event history (another
    organisation's outcome is not found, exactly like one that does not exist)."""
    with transaction() as conn:
        row = outcomes_dal.get_outcome(conn, outcome_id)
        if row is None or row["org_id"] != org_id:
            raise NotFound(f"no outcome {outcome_id}", outcome_id=str(outcome_id))
        row["events"] = events_dal.history(conn, outcome_id)
    row.pop("dedupe_key", None)
    return row


def refresh_due_meetings(now: datetime | None = None) -> int:
    """Re-derive outcomes whose meeting has ended since their last update; returns how many."""
    now = now or datetime.now(UTC)
    with transaction() as conn:
        due = outcomes_dal.outcomes_with_meetings_due(conn, now.isoformat())
        recompute(conn, due, now, icp=lock_outcomes(conn, due))
    return len(due)


def set_training_opt_in(org_id: str, opt_in: bool) -> dict[str, Any]:
    """Only organisations that opted in contribute outcomes to training datasets."""
    with transaction() as conn:
        return outcomes_dal.set_training_opt_in(conn, org_id, opt_in)


def opted_in_organizations() -> list[str]:
    with transaction() as conn:
        return outcomes_dal.opted_in_organizations(conn)

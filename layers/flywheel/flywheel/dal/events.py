"""SQL for outcome_events: the append-only, de-duplicated log of provider events."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.rows import tuple_row

from flywheel.dal.connection import Connection, jsonb
from flywheel.domain.effects import WITH_EFFECTS
from flywheel.domain.ingest import DealKey, deal_link
from flywheel.domain.lifecycle import COUNTED, DEAL_EVENTS, EventType, OutcomeEvent

_EVENT_RECORD = """provider text, event_key text, event_type text, occurred_at timestamptz,
                   org_id text, outcome_id uuid, status text, match_outcome_id uuid,
                   match_provider_message_id text, match_email text, match_references text[],
                   match_window_days integer, data jsonb, payload jsonb, key_scoped boolean"""
_EVENT_COLUMNS = """provider, event_key, event_type, occurred_at, org_id, outcome_id, status,
                    match_outcome_id, match_provider_message_id, match_email, match_references,
                    match_window_days, data, payload, key_scoped"""


def _applied(p: str = "") -> str:
    """Columns of an applied event its effects are computed from (data only where effects read it)."""
    return (
        f"{p}event_id, {p}provider, {p}event_key, {p}event_type, {p}occurred_at, {p}outcome_id, {p}org_id, "
        f"{p}status, {p}data->>'meeting_id' AS meeting_id, {p}data->>'deal_id' AS deal_id, "
        f"coalesce({p}data->>'deal_account', '') AS deal_account, "
        f"CASE WHEN {p}event_type IN ('reply', 'reply_classified', 'correction') THEN {p}data END AS data"
    )


@dataclass
class Inserted:
    """What inserting a batch of events did: how many were stored (or attached) per outcome and
    status, and the full rows of those whose effects must be computed (`domain.effects`)."""

    counts: list[tuple[UUID | None, str, int]]
    with_effects: list[dict[str, Any]]


# A row the release before stored under a provider's own key, as opposed to one stored under a key
# naming its organisation ("<org>|<key>", domain.ingest.scoped_key). Only such a row can be a new
# event's earlier copy under its `legacy_key`. A provider key may itself contain '|': acme's `acme|a`
# is both another event's legacy form and acme's stored key of event `a`, so the key cannot tell the
# two apart. Every row stored in the new form is marked `key_scoped` (sql/0028, which also marks the
# rows the release before it stored in the new form): a row without the mark was stored in the
# provider's own form, whatever its key looks like (a
# pre-upgrade key that itself began with its organisation's id and '|' is then still known, and its
# redelivery across the upgrade a duplicate).
_LEGACY_ROW = "{row}.key_scoped IS NULL"


def insert_events(conn: Connection, events: list[dict[str, Any]]) -> Inserted:
    """Insert events whose (provider, event_key) is new; a known key is skipped, except that an
    orphan now matched to a message of the orphan's own organisation is attached to it (never one
    of another organisation or of none: its payload is not known to be this event's - one of
    unknown organisation is claimed when its message is registered, as before).

    An event with a `legacy_key` (the provider's own key, before its key named the organisation)
    is also skipped when a row is stored under that key for its organisation (`legacy_org`; any
    organisation when that is unknown) in the legacy format (`_LEGACY_ROW`): the release before
    stored it.

    Rows go in key order, so two transactions inserting overlapping keys wait in one direction.
    Most events (opens, clicks, deliveries) cause nothing but their outcome's re-derivation: they
    come back as counts per outcome, only the others whole."""
    if not events:
        return Inserted([], [])
    # a key missing from a record is NULL (most match_* columns are): a smaller payload to send and parse
    sparse = [{k: v for k, v in e.items() if v is not None} for e in events]
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            f"""WITH new AS (
                    INSERT INTO outcome_events ({_EVENT_COLUMNS})
                    SELECT {_EVENT_COLUMNS}
                      FROM jsonb_to_recordset(%(rows)s) AS x({_EVENT_RECORD}, legacy_key text, legacy_org text)
                     WHERE x.legacy_key IS NULL OR NOT EXISTS (
                               SELECT 1 FROM outcome_events old
                                WHERE old.provider = x.provider AND old.event_key = x.legacy_key
                                  AND (x.legacy_org IS NULL OR old.org_id = x.legacy_org)
                                  AND {_LEGACY_ROW.format(row="old")})
                     ORDER BY provider COLLATE "C", event_key COLLATE "C"
                    ON CONFLICT (provider, event_key) DO UPDATE
                       SET outcome_id = EXCLUDED.outcome_id, status = 'applied'
                     WHERE outcome_events.status = 'orphan' AND EXCLUDED.status = 'applied'
                       AND outcome_events.org_id = EXCLUDED.org_id
                    RETURNING outcome_id, status,
                              CASE WHEN status = 'applied' AND event_type = ANY(%(effects)s)
                                   THEN jsonb_build_object({_applied_object()}) END AS effect)
                SELECT outcome_id, status, count(*), jsonb_agg(effect) FILTER (WHERE effect IS NOT NULL)
                  FROM new GROUP BY outcome_id, status""",
            {"rows": jsonb(sparse), "effects": sorted(WITH_EFFECTS)},
        ).fetchall()
    return Inserted(
        [(outcome_id, status, int(n)) for outcome_id, status, n, _ in rows],
        [_from_object(effect) for *_, effects in rows for effect in effects or []],
    )


def _applied_object() -> str:
    """`_applied()`'s columns as jsonb_build_object arguments."""
    return (
        "'event_id', event_id, 'provider', provider, 'event_key', event_key, 'event_type', event_type, "
        "'occurred_at', occurred_at, 'outcome_id', outcome_id, 'org_id', org_id, 'status', status, "
        "'meeting_id', data->>'meeting_id', 'data', data"
    )


def _from_object(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "occurred_at": datetime.fromisoformat(row["occurred_at"]), "outcome_id": UUID(row["outcome_id"])}


# Orphans a newly registered message claims, best candidate first: it names the outcome, its
# provider message id, its Message-ID (an orphan whose organisation is known only in it); or
# (naming nothing) it is the lead's email in the same organisation, sent at or after the message
# and within the orphan's attribution window.
#
# A provider message id or Message-ID may name several messages (every recipient of one SendGrid
# send, or another organisation's reuse of it): the orphan is claimed only by the message
# `domain.ingest.named_by` would give it live, against every message with that id (this batch's
# included). The lead's email equal to the orphan's, unless the id names that email in another
# organisation too and the orphan has none; otherwise, only within the orphan's own organisation,
# the id's single recipient there (for a provider message id: when the orphan or the message has
# no email to compare; messages registered without an email are one recipient per lead id, so two
# such leads leave the orphan waiting). The candidates are materialised first: checked inside their joins, the
# planner gave up the index on an orphan's Message-IDs.
_SHARED_ID = """\
c.rank = {rank} AND CASE
    WHEN lower(c.match_email) = lower(c.email)
    THEN c.event_org IS NOT NULL OR NOT EXISTS (
             SELECT 1 FROM outcome_labels x
              WHERE x.{column} = c.{value} AND lower(x.lead_email) = lower(c.email) AND x.org_id <> c.org_id)
    ELSE c.event_org = c.org_id {same_lead} AND NOT EXISTS (
             SELECT 1 FROM outcome_labels x
              WHERE x.{column} = c.{value} AND x.org_id = c.org_id
                AND (lower(x.lead_email) IS DISTINCT FROM lower(c.email)
                     OR (x.lead_email IS NULL AND c.email IS NULL AND x.lead_id <> c.lead)))
END"""
_PMID_CHECK = _SHARED_ID.format(
    rank=1, column="provider_message_id", value="pmid", same_lead="AND (c.match_email IS NULL OR c.email IS NULL)"
)
_MSGID_CHECK = _SHARED_ID.format(rank=2, column="email_message_id", value="msgid", same_lead="")
_CANDIDATES = f"""
WITH o(outcome_id, org_id, pmid, msgid, email, sent_at, lead) AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(orgs)s::text[], %(pmids)s::text[], %(msgids)s::text[],
                         %(emails)s::text[], %(sent)s::timestamptz[], %(leads)s::text[])),
candidates AS MATERIALIZED (
    SELECT e.event_id, o.outcome_id, o.org_id, 0 AS rank, o.sent_at, e.org_id AS event_org, e.match_email, o.email,
           o.pmid, o.msgid, o.lead
      FROM o JOIN outcome_events e ON e.status = 'orphan' AND e.match_outcome_id = o.outcome_id
       AND (e.org_id IS NULL OR e.org_id = o.org_id)
    UNION ALL
    SELECT e.event_id, o.outcome_id, o.org_id, 1, o.sent_at, e.org_id, e.match_email, o.email, o.pmid, o.msgid, o.lead
      FROM o JOIN outcome_events e ON e.status = 'orphan' AND e.match_provider_message_id = o.pmid
       AND (e.org_id IS NULL OR e.org_id = o.org_id)
    UNION ALL
    SELECT e.event_id, o.outcome_id, o.org_id, 2, o.sent_at, e.org_id, e.match_email, o.email, o.pmid, o.msgid, o.lead
      FROM o JOIN outcome_events e ON e.status = 'orphan' AND e.match_references @> ARRAY[o.msgid]
       AND (e.org_id IS NULL OR e.org_id = o.org_id)
    UNION ALL
    SELECT e.event_id, o.outcome_id, o.org_id, 3, o.sent_at, e.org_id, e.match_email, o.email, o.pmid, o.msgid, o.lead
      FROM o JOIN outcome_events e
        ON e.status = 'orphan' AND e.match_email = o.email AND e.org_id = o.org_id
       AND e.match_outcome_id IS NULL AND e.match_provider_message_id IS NULL
       AND e.match_references IS NULL AND e.match_window_days IS NOT NULL
       AND e.occurred_at >= o.sent_at
       AND e.occurred_at < o.sent_at + make_interval(days => e.match_window_days)),
best AS (
    SELECT DISTINCT ON (event_id) event_id, outcome_id, org_id FROM candidates c
     WHERE c.rank IN (0, 3) OR ({_PMID_CHECK}) OR ({_MSGID_CHECK})
     ORDER BY event_id, rank, sent_at DESC, outcome_id)
"""


def _message_params(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ids": [m["outcome_id"] for m in messages],
        "orgs": [m["org_id"] for m in messages],
        "pmids": [m.get("provider_message_id") for m in messages],
        "msgids": [m.get("email_message_id") for m in messages],
        "emails": [m.get("lead_email") for m in messages],
        "sent": [m["sent_at"] for m in messages],
        "leads": [m.get("lead_id") for m in messages],
    }


def orphan_links_for(conn: Connection, messages: list[dict[str, Any]]) -> list[str]:
    """Link keys of the meetings and deals of the orphans these messages would claim (locked first)."""
    if not messages:
        return []
    rows = conn.execute(
        _CANDIDATES
        + f"""SELECT DISTINCT e.data->>'meeting_id' AS meeting_id, e.data->>'deal_id' AS deal_id,
                                  best.org_id, {_ACCOUNT.format(p="e.")} AS account
                           FROM best JOIN outcome_events e USING (event_id)
                          WHERE e.data ? 'meeting_id' OR e.data ? 'deal_id'""",
        _message_params(messages),
    ).fetchall()
    # a deal's key is the organisation of the message that would claim it (its own, when known)
    return sorted(
        {f"meeting:{r['meeting_id']}" for r in rows if r["meeting_id"]}
        | {deal_link(r["org_id"], r["account"], r["deal_id"]) for r in rows if r["deal_id"]}
    )


def claim_orphans(conn: Connection, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attach orphan events to newly registered messages (`outcome_id`, `org_id`,
    `provider_message_id`, `email_message_id`, `lead_email`, `sent_at`, `lead_id` each). Returns the claimed rows."""
    if not messages:
        return []
    return conn.execute(
        _CANDIDATES
        + f"""UPDATE outcome_events e
                              SET outcome_id = best.outcome_id, org_id = best.org_id, status = 'applied'
                             FROM best
                            WHERE e.event_id = best.event_id AND e.status = 'orphan'
                        RETURNING {_applied("e.")}""",
        _message_params(messages),
    ).fetchall()


_COUNTED = sorted(t.value for t in COUNTED)


def events_for(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, list[OutcomeEvent]]:
    """Each outcome's applied events, with runs of counted events (opens, clicks, deferrals ...)
    folded in SQL into their first event, their count and their latest time: re-deriving an outcome
    with thousands of opens reads a handful of rows. Order is the lifecycle's canonical one
    (occurred_at, then "provider:event_key" in code-point order)."""
    if not outcome_ids:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:  # thousands of rows: tuples, not dicts
        rows = cur.execute(
            """WITH applied AS (
                   SELECT outcome_id, provider, event_key, event_type, occurred_at,
                          provider || ':' || event_key COLLATE "C" AS key,
                          CASE WHEN event_type = ANY(%(counted)s) THEN NULL ELSE data END AS data,
                          coalesce(data->>'machine_open', '') AS flavour
                     FROM outcome_events WHERE outcome_id = ANY(%(ids)s) AND status = 'applied'),
               folded AS (
                   SELECT DISTINCT ON (outcome_id, event_type, flavour) outcome_id, key, event_type, occurred_at,
                          flavour, count(*) OVER w AS n, max(occurred_at) OVER w AS last_at
                     FROM applied WHERE event_type = ANY(%(counted)s)
                   WINDOW w AS (PARTITION BY outcome_id, event_type, flavour)
                    ORDER BY outcome_id, event_type, flavour, occurred_at, key)
               SELECT outcome_id, key, event_type, occurred_at, data, 1 AS n, NULL::timestamptz AS last_at,
                      NULL AS flavour
                 FROM applied WHERE NOT event_type = ANY(%(counted)s)
               UNION ALL
               SELECT outcome_id, key, event_type, occurred_at, NULL, n, last_at, flavour FROM folded""",
            {"ids": outcome_ids, "counted": _COUNTED},
        ).fetchall()
    grouped: dict[UUID, list[OutcomeEvent]] = defaultdict(list)
    types = {t.value: t for t in EventType}
    for outcome_id, key, event_type, occurred_at, data, n, last_at, flavour in rows:
        if data is None:
            data = {"machine_open": flavour == "true"} if event_type == EventType.OPEN.value else {}
        grouped[outcome_id].append(
            OutcomeEvent(
                key=key, type=types[event_type], occurred_at=occurred_at, data=data, count=int(n), last_at=last_at
            )
        )
    return grouped


def history(conn: Connection, outcome_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT event_id, provider, event_key, event_type, occurred_at, received_at, data
             FROM outcome_events WHERE outcome_id = %s ORDER BY occurred_at, event_id""",
        (outcome_id,),
    ).fetchall()


def outcomes_for_meetings(conn: Connection, meeting_ids: list[str]) -> dict[tuple[str, str], tuple[UUID, str]]:
    """The outcome each meeting was booked for, per organisation: (meeting id, org) -> (outcome,
    org). A cancellation or no-show may carry no email; meeting ids are the provider's or a CRM's
    own, so two organisations may use the same one."""
    if not meeting_ids:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (data->>'meeting_id', org_id) data->>'meeting_id' AS meeting_id, outcome_id, org_id
             FROM outcome_events
            WHERE status = 'applied' AND data ? 'meeting_id' AND data->>'meeting_id' = ANY(%s)
            ORDER BY data->>'meeting_id', org_id, occurred_at""",
        (meeting_ids,),
    ).fetchall()
    return {(r["meeting_id"], r["org_id"]): (r["outcome_id"], r["org_id"]) for r in rows}


_DEALS = sorted(t.value for t in DEAL_EVENTS)


def deal_events(conn: Connection, groups: list[tuple[str, str, str, str]]) -> dict[int, list[dict[str, Any]]]:
    """The stored events of each (provider, org, deal id, lead email), by position in `groups`:
    those linked by email alone that are applied to a message to that lead or wait (orphans,
    ignored reopenings) for that email, and those that named a message to that lead and are applied
    (`fixed`; `named`: the message they named, which may not be where the deal took them). An
    applied event's own email may be gone (retention): its message's lead says whose it is."""
    if not groups:
        return {}
    rows = conn.execute(
        """SELECT g.i, e.event_id, e.provider, e.event_key, e.event_type, e.occurred_at, e.status, e.outcome_id,
                  e.org_id, e.match_window_days IS NULL AS fixed,
                  CASE WHEN e.match_window_days IS NULL THEN coalesce(e.match_outcome_id, e.outcome_id) END AS named
             FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS g(provider, org_id,
                                                                                             deal_id, email, i)
             JOIN outcome_events e
               ON e.data ? 'deal_id' AND e.data->>'deal_id' = g.deal_id AND e.provider = g.provider
              AND e.org_id = g.org_id AND e.event_type = ANY(%s)
              AND (e.match_window_days IS NOT NULL OR e.status = 'applied')
             LEFT JOIN outcome_labels o ON o.outcome_id = e.outcome_id
            WHERE CASE WHEN e.status = 'applied' THEN o.lead_email = g.email
                       ELSE e.status IN ('orphan', 'ignored') AND e.match_email = g.email END""",
        (*(list(col) for col in zip(*groups, strict=True)), _DEALS),
    ).fetchall()
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        found[int(row["i"]) - 1].append(row)
    return found


# A deal several messages led to (a HubSpot deal's contacts, each e-mailed; one in-house deal id
# sent for two leads) is counted on one of them. A deal is its organisation, CRM account
# (`data.deal_account`: a Pipedrive company, a HubSpot portal; one organisation may map several, each
# numbering its own deals; empty for the in-house CRM; a row the release before stored gets it from
# its raw payload or its deal's other rows, sql/0028, or from the deal's next event, `adopt_deal_account`)
# and deal id. Its state is its latest word among all its stored rows (occurred_at, then
# "provider:event_key" in code-point order, the lifecycle's order), applied or not: the CRM's word may
# reach only some of its contacts or leads (a HubSpot deal's contacts are read when it changes, so a
# contact removed from the deal keeps a stale word), and maybe only one with no message (an orphan)
# or one who never saw it closed (a reopening, `ignored` for that lead: domain.ingest.deal_home). It
# is credited to the first-sent message (then the lowest outcome id) whose own latest word is that
# word (the same time, kind and value: each contact's copy of it); to none when that word is a
# reopening, or when no message holds it (a win or loss known only through a contact nobody e-mailed
# counts for nobody until a message to that contact registers and claims it). Every other message
# holding it keeps its own word for its label (shared_deal_*) and counts nothing of it. A message
# counts every deal credited to it (`deals_won`, `won_revenue`), however many: the credit never
# depends on its other deals.
_ACCOUNT = "coalesce({p}data->>'deal_account', '')"
_DEAL_CREDITS = f"""
WITH mine AS (
    SELECT DISTINCT outcome_id, org_id, {_ACCOUNT.format(p="")} AS account, data->>'deal_id' AS deal_id
      FROM outcome_events
     WHERE outcome_id = ANY(%(ids)s) AND status = 'applied' AND event_type = ANY(%(deals)s) AND data ? 'deal_id'),
deals AS (SELECT DISTINCT org_id, account, deal_id FROM mine),
latest AS (
    SELECT DISTINCT ON (e.outcome_id, d.org_id, d.account, d.deal_id) e.outcome_id, d.org_id, d.account, d.deal_id,
           e.event_type, e.occurred_at, e.data->>'value' AS value
      FROM deals d
      JOIN outcome_events e ON e.data ? 'deal_id' AND e.data->>'deal_id' = d.deal_id AND e.org_id = d.org_id
       AND {_ACCOUNT.format(p="e.")} = d.account
     WHERE e.status = 'applied' AND e.event_type = ANY(%(deals)s)
     ORDER BY e.outcome_id, d.org_id, d.account, d.deal_id, e.occurred_at DESC,
              e.provider || ':' || e.event_key COLLATE "C" DESC),
word AS (
    SELECT DISTINCT ON (d.org_id, d.account, d.deal_id) d.org_id, d.account, d.deal_id, e.event_type, e.occurred_at,
           e.data->>'value' AS value
      FROM deals d
      JOIN outcome_events e ON e.data ? 'deal_id' AND e.data->>'deal_id' = d.deal_id AND e.org_id = d.org_id
       AND {_ACCOUNT.format(p="e.")} = d.account
     WHERE e.event_type = ANY(%(deals)s)
     ORDER BY d.org_id, d.account, d.deal_id, e.occurred_at DESC, e.provider || ':' || e.event_key COLLATE "C" DESC),
credited AS (
    SELECT DISTINCT ON (l.org_id, l.account, l.deal_id) l.org_id, l.account, l.deal_id, l.outcome_id
      FROM latest l
      JOIN word w ON w.org_id = l.org_id AND w.account = l.account AND w.deal_id = l.deal_id
       AND w.event_type = l.event_type AND w.occurred_at = l.occurred_at AND w.value IS NOT DISTINCT FROM l.value
      JOIN outcome_labels o ON o.outcome_id = l.outcome_id
     WHERE w.event_type <> 'deal_reopened'
     ORDER BY l.org_id, l.account, l.deal_id, o.sent_at, l.outcome_id)
SELECT m.outcome_id, m.account, m.deal_id
  FROM mine m LEFT JOIN credited c ON c.org_id = m.org_id AND c.account = m.account AND c.deal_id = m.deal_id
 WHERE c.outcome_id IS DISTINCT FROM m.outcome_id"""


def deals_counted_elsewhere(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, set[tuple[str, str]]]:
    """Per outcome, the (account, deal id) of its applied deal events that it does not count
    (`_DEAL_CREDITS`: another message counts it, or none does: the deal is open again, or its latest
    word reached no message); outcomes
    whose deals are all their own are absent. The caller holds the
    deals' link locks (`domain.ingest.deal_link`) or the outcomes' row locks, so the answer is the
    committed one."""
    if not outcome_ids:
        return {}
    rows = conn.execute(_DEAL_CREDITS, {"ids": outcome_ids, "deals": _DEALS}).fetchall()
    found: dict[UUID, set[tuple[str, str]]] = defaultdict(set)
    for row in rows:
        found[row["outcome_id"]].add((row["account"], row["deal_id"]))
    return dict(found)


def adopt_deal_account(conn: Connection, deals: list[tuple[str, DealKey]]) -> None:
    """Give a deal's account-less rows of this provider (provider, (org, account, deal id)) the
    account its new event names, unless the organisation's rows name another account for that deal
    number (then which account they were is unknown; they stay apart). Such rows are what the
    release before sql/0028 stored, whose raw payload retention had removed before 0028 could read
    the account from it: without this the deal's word before the upgrade and after it were two
    deals. The caller holds the deal's link lock; the rows' messages are its holders from here."""
    named: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for provider, (org, account, deal_id) in deals:
        if account:
            named[(provider, org, deal_id)].add(account)
    # a batch naming two accounts for one deal number cannot tell which the rows were
    unique = sorted((p, (o, next(iter(a)), d)) for (p, o, d), a in named.items() if len(a) == 1)
    if not unique:
        return
    conn.execute(
        f"""UPDATE outcome_events e
               SET data = e.data || jsonb_build_object('deal_account', d.account)
              FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS d(provider, org_id, account, deal_id)
             WHERE e.data ? 'deal_id' AND e.data->>'deal_id' = d.deal_id AND e.provider = d.provider
               AND e.org_id = d.org_id AND {_ACCOUNT.format(p="e.")} = '' AND e.event_type = ANY(%s)
               AND NOT EXISTS (
                   SELECT 1 FROM outcome_events o
                    WHERE o.data ? 'deal_id' AND o.data->>'deal_id' = d.deal_id AND o.provider = d.provider
                      AND o.org_id = d.org_id AND {_ACCOUNT.format(p="o.")} NOT IN ('', d.account))""",
        (
            [p for p, _ in unique],
            [d[0] for _, d in unique],
            [d[1] for _, d in unique],
            [d[2] for _, d in unique],
            _DEALS,
        ),
    )


def deal_holders(conn: Connection, deals: list[DealKey]) -> set[UUID]:
    """The messages holding an applied event of any of these deals (organisation, account, deal id):
    when one of them gains or loses the deal, which of them counts it may change, so all are
    re-derived. Another organisation's deal of the same number is not theirs (read through
    outcome_events_deal, sql/0022: the deal id, then the organisation and account of its few rows)."""
    if not deals:
        return set()
    unique = sorted(set(deals))
    rows = conn.execute(
        f"""SELECT DISTINCT e.outcome_id
              FROM unnest(%s::text[], %s::text[], %s::text[]) AS d(org_id, account, deal_id)
              JOIN outcome_events e ON e.data ? 'deal_id' AND e.data->>'deal_id' = d.deal_id
               AND e.org_id = d.org_id AND {_ACCOUNT.format(p="e.")} = d.account
             WHERE e.status = 'applied' AND e.event_type = ANY(%s)""",
        ([d[0] for d in unique], [d[1] for d in unique], [d[2] for d in unique], _DEALS),
    ).fetchall()
    return {r["outcome_id"] for r in rows}


def move_events(conn: Connection, moves: list[tuple[int, UUID | None, str, str]]) -> None:
    """Re-link stored events: (event id, outcome or None, status, lead email). An event moved back
    to waiting gets its lead's email again, which retention may have removed."""
    if not moves:
        return
    ids, outcomes, statuses, emails = (list(col) for col in zip(*sorted(moves, key=lambda m: m[0]), strict=True))
    conn.execute(
        """UPDATE outcome_events e
              SET outcome_id = m.outcome_id, status = m.status,
                  match_email = CASE WHEN m.status = 'applied' THEN e.match_email ELSE coalesce(e.match_email, m.email)
                                END
             FROM unnest(%s::bigint[], %s::uuid[], %s::text[], %s::text[]) AS m(event_id, outcome_id, status, email)
            WHERE e.event_id = m.event_id""",
        (ids, outcomes, statuses, emails),
    )


def claim_meeting_orphans(conn: Connection, outcome_ids: set[UUID]) -> list[dict[str, Any]]:
    """Orphaned events about a meeting that is now linked (e.g. a no-show that beat its booking),
    of the booking's organisation."""
    if not outcome_ids:
        return []
    return conn.execute(
        f"""UPDATE outcome_events e
              SET outcome_id = b.outcome_id, org_id = b.org_id, status = 'applied'
             FROM outcome_events b
            WHERE e.status = 'orphan' AND b.status = 'applied' AND b.outcome_id = ANY(%s)
              AND b.data ? 'meeting_id' AND e.data ? 'meeting_id'
              AND e.provider = b.provider AND e.data->>'meeting_id' = b.data->>'meeting_id'
              AND (e.org_id IS NULL OR e.org_id = b.org_id)
        RETURNING {_applied("e.")}""",
        (list(outcome_ids),),
    ).fetchall()


def outcome_of(conn: Connection, provider: str, event_key: str) -> UUID | None:
    """The outcome of the event stored under this key."""
    row = conn.execute(
        "SELECT outcome_id FROM outcome_events WHERE provider = %s AND event_key = %s", (provider, event_key)
    ).fetchone()
    return row["outcome_id"] if row else None


def legacy_outcome_of(conn: Connection, provider: str, legacy_key: str, org_id: str | None) -> UUID | None:
    """The outcome of the event the release before stored under the provider's own key (of
    organisation `org_id`, when given): a row in the legacy format only (`_LEGACY_ROW`)."""
    row = conn.execute(
        f"""SELECT outcome_id FROM outcome_events e
            WHERE provider = %s AND event_key = %s AND (%s::text IS NULL OR org_id = %s::text)
              AND {_LEGACY_ROW.format(row="e")}""",
        (provider, legacy_key, org_id, org_id),
    ).fetchone()
    return row["outcome_id"] if row else None


def known_keys(conn: Connection, provider: str, event_keys: list[str]) -> set[str]:
    """Which of these keys are stored (the unique index on (provider, event_key))."""
    rows = conn.execute(
        "SELECT event_key FROM outcome_events WHERE provider = %s AND event_key = ANY(%s)", (provider, event_keys)
    ).fetchall()
    return {row["event_key"] for row in rows}


def event_data(conn: Connection, provider: str, event_key: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT data FROM outcome_events WHERE provider = %s AND event_key = %s", (provider, event_key)
    ).fetchone()
    return row["data"] if row else None


def has_reply(conn: Connection, outcome_id: UUID) -> bool:
    row = conn.execute(
        "SELECT 1 FROM outcome_events WHERE outcome_id = %s AND event_type = 'reply' AND status = 'applied' LIMIT 1",
        (outcome_id,),
    ).fetchone()
    return row is not None


def corrected_replies(conn: Connection, since: datetime | None, org_id: str | None = None) -> list[dict[str, Any]]:
    """Per outcome of an organisation that opted in to training, the latest correction that names
    reply_category (skipping reverts to null), with the text of the reply it applies to: the lead's
    reply, else the first automatic one."""
    return conn.execute(
        """WITH latest AS (
               SELECT DISTINCT ON (outcome_id) outcome_id, occurred_at, data
                 FROM outcome_events
                WHERE event_type = 'correction' AND status = 'applied' AND data->'fields' ? 'reply_category'
                ORDER BY outcome_id, occurred_at DESC, event_key DESC)
           SELECT coalesce(o.reply_text, first_reply.text) AS text, l.data->>'reply_category' AS category,
                  o.outcome_id, o.org_id, l.occurred_at AS corrected_at, l.data->>'actor' AS corrected_by,
                  l.data->>'reason' AS reason
             FROM latest l
             JOIN outcome_labels o USING (outcome_id)
             JOIN organizations org ON org.org_id = o.org_id AND org.training_opt_in
             JOIN LATERAL (SELECT data->>'text' AS text FROM outcome_events r
                            WHERE r.outcome_id = l.outcome_id AND r.event_type = 'reply' AND r.status = 'applied'
                            ORDER BY r.occurred_at, r.event_key LIMIT 1) first_reply ON true
            WHERE l.data->>'reply_category' IS NOT NULL
              AND (%(since)s::timestamptz IS NULL OR l.occurred_at >= %(since)s::timestamptz)
              AND (%(org_id)s::text IS NULL OR o.org_id = %(org_id)s::text)
            ORDER BY l.occurred_at, o.outcome_id""",
        {"since": since, "org_id": org_id},
    ).fetchall()


# where a retention run has got to: (received_at, event_id) of the last row a batch purged
RawPosition = tuple[datetime, int]
_START: RawPosition = (datetime.min.replace(tzinfo=UTC), 0)


def remove_raw_payloads(
    conn: Connection, received_before: datetime, limit: int, after: RawPosition | None = None
) -> tuple[int, RawPosition | None]:
    """Retention, one batch: drop the raw payload of up to `limit` events received before the cutoff,
    oldest first and after `after` (the previous batch's last row), skipping rows another transaction
    holds (an ingest is never made to wait on us). Returns how many went and the last one's position.

    The position matters: the index entries of the rows earlier batches purged stay until VACUUM can
    remove them (never while an older snapshot is open), and a batch that started from the oldest
    entry again read them all (sql/0026). A row skipped because it was held is left for the next run.
    The normalised event stays; an orphan keeps the email it may still be matched by."""
    row = conn.execute(
        """WITH due AS (
               SELECT event_id, received_at FROM outcome_events
                WHERE payload IS NOT NULL AND received_at < %(before)s
                  AND (received_at, event_id) > (%(after_at)s, %(after_id)s)
                ORDER BY received_at, event_id
                LIMIT %(limit)s
                  FOR UPDATE SKIP LOCKED),
           purged AS (
               UPDATE outcome_events e
                  SET payload = NULL, match_email = CASE WHEN e.status = 'orphan' THEN e.match_email END
                 FROM due
                WHERE e.event_id = due.event_id
            RETURNING due.received_at, due.event_id)
           SELECT count(*) AS n,
                  (array_agg(received_at ORDER BY received_at DESC, event_id DESC))[1] AS last_at,
                  (array_agg(event_id ORDER BY received_at DESC, event_id DESC))[1] AS last_id
             FROM purged""",
        {
            "before": received_before,
            "after_at": (after or _START)[0],
            "after_id": (after or _START)[1],
            "limit": limit,
        },
    ).fetchone()
    if not row or not row["n"]:
        return 0, after
    return int(row["n"]), (row["last_at"], int(row["last_id"]))

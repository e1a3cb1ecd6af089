"""SQL for outcome_labels: registration, lookups and bulk updates of derived columns."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import tuple_row

from flywheel.dal.connection import Connection, jsonb
from flywheel.domain.lifecycle import DERIVED_COLUMNS

# Columns written at registration, with their SQL types for jsonb_to_recordset.
REGISTRATION_COLUMNS: dict[str, str] = {
    "org_id": "text",
    "dedupe_key": "text",
    "campaign_id": "text",
    "lead_id": "text",
    "lead_email": "text",
    "channel": "text",
    "subject": "text",
    "body": "text",
    "framework": "text",
    "tone": "text",
    "brief": "text",
    "agent_decisions": "jsonb",
    "provider_message_id": "text",
    "email_message_id": "text",
    "sent_at": "timestamptz",
    "model_id": "text",
    "model_registry_id": "text",
    "experiment_id": "text",
    "experiment_arm": "text",
    "lead_first_name": "text",
    "lead_last_name": "text",
    "lead_company": "text",
    "lead_industry": "text",
    "lead_role": "text",
    "lead_company_size": "text",
    "lead_icp_score": "double precision",
    "lead_context": "jsonb",
    "lead_country": "text",
    "sender": "jsonb",
}

_DERIVED_TYPES: dict[str, str] = {
    "deferred_count": "integer",
    "open_count": "integer",
    "machine_open_count": "integer",
    "click_count": "integer",
    "event_count": "integer",
    "meeting_no_show": "boolean",
    "reply_sentiment_score": "double precision",
    "training_weight": "double precision",
    "quality_score": "double precision",
    "deal_value": "numeric",
    "shared_deal_value": "numeric",
    "deals_won": "integer",
    "won_revenue": "numeric",
    "won_closes": "jsonb",
    "lead_returns_on": "date",
}


def won_deals_sql(prefix: str = "") -> str:
    """How many won deals a message counts, as every count reads it: `deals_won` (sql/0028), or for
    a row no re-derivation has written since (NULL) its one deal_status."""
    return f"coalesce({prefix}deals_won, coalesce({prefix}deal_status = 'won', false)::int)"


def won_revenue_sql(prefix: str = "") -> str:
    """The revenue a message counts (the value of every won deal credited to it), as `won_deals_sql`."""
    return (
        f"coalesce({prefix}won_revenue, CASE WHEN {prefix}deal_status = 'won' THEN coalesce({prefix}deal_value, 0) "
        "ELSE 0 END)"
    )


def _derived_type(column: str) -> str:
    if column in _DERIVED_TYPES:
        return _DERIVED_TYPES[column]
    return "timestamptz" if column.endswith("_at") or column.startswith("meeting_scheduled") else "text"


def ensure_organizations(conn: Connection, org_ids: list[str]) -> None:
    conn.execute(
        "INSERT INTO organizations (org_id) SELECT unnest(%s::text[]) ON CONFLICT (org_id) DO NOTHING",
        (sorted(set(org_ids)),),
    )


def insert_outcomes(conn: Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[UUID, bool]]:
    """Insert new messages in one statement; returns (org, dedupe key) -> (id, created).
    The database assigns ids, unless every row carries its own `outcome_id` (local sample data).

    Rows go in (org, dedupe key) order: two registrations of overlapping batches wait on each
    other's new keys in one direction, never in a cycle (messages without an email or provider id
    take no link lock to serialise them)."""
    types = dict(REGISTRATION_COLUMNS)
    if rows and all("outcome_id" in r for r in rows):
        types["outcome_id"] = "uuid"
    columns = ", ".join(types)
    record = ", ".join(f"{name} {sql_type}" for name, sql_type in types.items())
    ordered = sorted(rows, key=lambda r: (r["org_id"], r["dedupe_key"]))
    created = conn.execute(
        f"""INSERT INTO outcome_labels ({columns})
            SELECT {columns} FROM jsonb_to_recordset(%s) AS x({record})
            ON CONFLICT (org_id, dedupe_key) DO NOTHING
            RETURNING outcome_id, org_id, dedupe_key""",
        (jsonb(ordered),),
    ).fetchall()
    result = {(r["org_id"], r["dedupe_key"]): (r["outcome_id"], True) for r in created}
    missing = [(r["org_id"], r["dedupe_key"]) for r in rows if (r["org_id"], r["dedupe_key"]) not in result]
    result.update({key: (r["outcome_id"], False) for key, r in stored_keys(conn, missing).items()})
    return result


def stored_keys(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The messages stored under these (org, dedupe key) pairs, with their lead: (org, key) -> row."""
    if not keys:
        return {}
    rows = conn.execute(
        """SELECT o.outcome_id, o.org_id, o.dedupe_key, o.lead_id, o.lead_email
             FROM outcome_labels o
             JOIN unnest(%s::text[], %s::text[]) AS k(org_id, dedupe_key)
               ON o.org_id = k.org_id AND o.dedupe_key = k.dedupe_key""",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {(r["org_id"], r["dedupe_key"]): r for r in rows}


def get_outcome(conn: Connection, outcome_id: UUID) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM outcome_labels WHERE outcome_id = %s", (outcome_id,)).fetchone()


def icp_scores(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, float | None]:
    rows = conn.execute(
        "SELECT outcome_id, lead_icp_score FROM outcome_labels WHERE outcome_id = ANY(%s)",
        (outcome_ids,),
    ).fetchall()
    return {r["outcome_id"]: r["lead_icp_score"] for r in rows}


def update_derived(conn: Connection, rows: dict[UUID, dict[str, Any]]) -> None:
    """Write derived columns for many outcomes in one UPDATE."""
    if not rows:
        return
    # a column missing from a record is NULL: most derived columns are, and the payload is a third
    payload = [{"outcome_id": str(oid), **{c: v for c, v in row.items() if v is not None}} for oid, row in rows.items()]
    record = ", ".join(["outcome_id uuid", *(f"{c} {_derived_type(c)}" for c in DERIVED_COLUMNS)])
    assignments = ", ".join(f"{c} = x.{c}" for c in DERIVED_COLUMNS)
    conn.execute(
        f"""UPDATE outcome_labels o SET {assignments}, updated_at = now()
              FROM jsonb_to_recordset(%s) AS x({record})
             WHERE o.outcome_id = x.outcome_id""",
        (jsonb(payload),),
    )


def existing_outcomes(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, str]:
    if not outcome_ids:
        return {}
    rows = conn.execute(
        "SELECT outcome_id, org_id FROM outcome_labels WHERE outcome_id = ANY(%s)", (outcome_ids,)
    ).fetchall()
    return {r["outcome_id"]: r["org_id"] for r in rows}


# a message registered without a lead email is its lead id's: two such leads are two recipients
_NO_EMAIL_LEAD = "CASE WHEN lead_email IS NULL THEN lead_id END"


def by_column(
    conn: Connection, column: str, values: list[str]
) -> dict[str, list[tuple[UUID, str, str | None, str | None]]]:
    """Every message with these values of provider_message_id or email_message_id, the latest per
    recipient (organisation, lead email; without an email, organisation and lead id): (outcome id,
    org, lead email, lead id - only when there is no email) each. One SendGrid send request gives all
    its recipients one X-Message-Id, and organisations may reuse each other's ids."""
    assert column in ("provider_message_id", "email_message_id")
    if not values:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:  # a large batch asks for thousands
        rows = cur.execute(
            f"""SELECT DISTINCT ON ({column}, org_id, lower(lead_email), {_NO_EMAIL_LEAD})
                       {column}, outcome_id, org_id, lead_email, {_NO_EMAIL_LEAD}
                  FROM outcome_labels WHERE {column} = ANY(%s)
                 ORDER BY {column}, org_id, lower(lead_email), {_NO_EMAIL_LEAD}, sent_at DESC, outcome_id""",
            (values,),
        ).fetchall()
    found: dict[str, list[tuple[UUID, str, str | None, str | None]]] = {}
    for value, outcome_id, org_id, lead_email, lead_id in rows:
        found.setdefault(value, []).append((outcome_id, org_id, lead_email, lead_id))
    return found


def latest_for_emails(conn: Connection, queries: list[tuple[str, str, str, int]]) -> dict[int, tuple[UUID, str]]:
    """For each (org, email, event time, window days): the latest message to that lead in that
    organisation sent at or before the event and within the window. Keys are positions in `queries`."""
    if not queries:
        return {}
    rows = conn.execute(
        """SELECT q.i, m.outcome_id, m.org_id
             FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int[]) WITH ORDINALITY AS q(org_id, email, at,
                                                                                                  days, i)
             CROSS JOIN LATERAL (
                 SELECT o.outcome_id, o.org_id FROM outcome_labels o
                  WHERE o.org_id = q.org_id AND o.lead_email = q.email
                    AND o.sent_at <= q.at AND o.sent_at > q.at - make_interval(days => q.days)
                  ORDER BY o.sent_at DESC, o.outcome_id
                  LIMIT 1) m""",
        tuple(list(col) for col in zip(*queries, strict=True)),
    ).fetchall()
    return {int(r["i"]) - 1: (r["outcome_id"], r["org_id"]) for r in rows}


def lead_contacts(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    if not outcome_ids:
        return {}
    rows = conn.execute(
        "SELECT outcome_id, org_id, lead_email FROM outcome_labels WHERE outcome_id = ANY(%s)", (outcome_ids,)
    ).fetchall()
    return {r["outcome_id"]: r for r in rows}


def outcomes_with_meetings_due(conn: Connection, now: str, limit: int = 5000) -> list[UUID]:
    rows = conn.execute(
        """SELECT outcome_id FROM outcome_labels
            WHERE meeting_completed_at IS NULL AND meeting_scheduled_end <= %s::timestamptz
              AND NOT meeting_no_show AND meeting_canceled_at IS NULL
            ORDER BY meeting_scheduled_end LIMIT %s""",
        (now, limit),
    ).fetchall()
    return [r["outcome_id"] for r in rows]


def reply_contexts(conn: Connection, outcome_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """What a classifier needs to read a reply: the message it answers and the lead."""
    if not outcome_ids:
        return {}
    rows = conn.execute(
        """SELECT outcome_id, org_id, lead_email, subject, body, framework, tone, lead_industry, lead_role,
                  lead_company_size
             FROM outcome_labels WHERE outcome_id = ANY(%s)""",
        (outcome_ids,),
    ).fetchall()
    return {
        r["outcome_id"]: {
            "org_id": r["org_id"],
            "lead_email": r["lead_email"],
            "message": {"subject": r["subject"], "body": r["body"], "framework": r["framework"], "tone": r["tone"]},
            "lead": {"industry": r["lead_industry"], "role": r["lead_role"], "company_size": r["lead_company_size"]},
        }
        for r in rows
    }


def set_training_opt_in(conn: Connection, org_id: str, opt_in: bool) -> dict[str, Any]:
    row = conn.execute(
        """INSERT INTO organizations (org_id, training_opt_in) VALUES (%s, %s)
           ON CONFLICT (org_id) DO UPDATE SET training_opt_in = EXCLUDED.training_opt_in, updated_at = now()
           RETURNING org_id, training_opt_in""",
        (org_id, opt_in),
    ).fetchone()
    assert row is not None
    return row


def opted_in_organizations(conn: Connection) -> list[str]:
    return [
        r["org_id"]
        for r in conn.execute("SELECT org_id FROM organizations WHERE training_opt_in ORDER BY org_id").fetchall()
    ]

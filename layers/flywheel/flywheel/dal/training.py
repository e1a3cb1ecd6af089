"""SQL for training: streaming outcomes for datasets, and the training_runs table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from flywheel.dal.connection import Connection, jsonb
from flywheel.domain.effects import EMAIL_ONLY_OPT_OUT

# what a build reads of each outcome (the filters read the rest in the server); the id as text,
# which is how the build uses it (a uuid.UUID per row costs more to make and to send to a worker)
DATASET_COLUMNS = """o.outcome_id::text AS outcome_id, o.org_id, o.campaign_id, o.lead_industry, o.lead_role,
    o.lead_company_size, o.framework, o.tone, o.brief, o.subject, o.body, o.lead_first_name, o.lead_last_name,
    o.lead_company, o.lead_country, o.lead_context, o.sender, o.training_label, o.replied_at, o.delivered_at,
    o.sent_at"""

# a run in one of these is in flight: it holds its scope's one slot (the partial unique index
# training_runs_one_active, sql/0019, has this list as its predicate) and only it may move on
ACTIVE = ("pending", "building", "uploading", "training", "registering", "serving", "smoke_testing")
ENDED = ("succeeded", "failed", "cancelled", "insufficient_data")
# the index's predicate, for ON CONFLICT to find the index by (constants, not input)
_ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE)


def _dataset_filter(for_preferences: bool) -> tuple[str, str]:
    """The WHERE and ORDER BY of a dataset's outcomes. Supervised sets need good messages
    (quality >= min, not negative); preference sets need every outcome, ordered so each
    organisation's campaign/segment/framework group arrives together."""
    where = [
        "org.training_opt_in",
        # a lead who opted out (unsubscribe, spam report, an opt-out or erasure request by reply) is
        # left out of every dataset; one who only refused e-mail for calls is not (reply_email_opt_out)
        "NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.org_id = o.org_id AND s.email = o.lead_email"
        f" AND s.reason <> '{EMAIL_ONLY_OPT_OUT}')",
        "(%(since)s::timestamptz IS NULL OR o.sent_at >= %(since)s::timestamptz)",
        "(%(until)s::timestamptz IS NULL OR o.sent_at < %(until)s::timestamptz)",
    ]
    if for_preferences:
        return " AND ".join(where), "o.org_id, o.campaign_id, o.lead_industry, o.lead_role, o.framework, o.outcome_id"
    where += ["o.quality_score >= %(min_quality)s", "o.training_label <> 'negative'"]
    return " AND ".join(where), "o.sent_at, o.outcome_id"


def stream_outcomes(
    conn: Connection,
    *,
    min_quality: float,
    since: datetime | None,
    until: datetime | None,
    for_preferences: bool,
    batch_size: int = 2000,
) -> Iterator[dict[str, Any]]:
    """Outcomes of organisations that opted in, through a server-side cursor (memory stays flat).
    2,000 rows a fetch: against 500 and 10,000 on 200,000 outcomes it read fastest (bench/export.py)."""
    where, order = _dataset_filter(for_preferences)
    query = (
        f"SELECT {DATASET_COLUMNS} FROM outcome_labels o JOIN organizations org USING (org_id) "
        f"WHERE {where} ORDER BY {order}"
    )
    params = {"since": since, "until": until, "min_quality": min_quality}
    with conn.transaction(), conn.cursor(name="dataset_export", row_factory=psycopg.rows.dict_row) as cursor:
        cursor.itersize = batch_size
        cursor.execute(query, params)
        yield from cursor


def count_outcomes(
    conn: Connection,
    *,
    min_quality: float,
    since: datetime | None,
    until: datetime | None,
    for_preferences: bool,
    cache: tuple[str, bytes] | None = None,
) -> tuple[int, int]:
    """How many outcomes `stream_outcomes` would stream, and how many of them have an entry in the
    line cache made with this (kind, recipe) (as the item or a pair's partner; whether the row is
    unchanged since is only known once it is read)."""
    where, _ = _dataset_filter(for_preferences)
    cached = (
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM dataset_line_cache c WHERE c.kind = %(kind)s "
        "AND c.recipe = %(recipe)s AND c.outcome_id = o.outcome_id) OR EXISTS (SELECT 1 FROM dataset_line_cache c "
        "WHERE c.kind = %(kind)s AND c.recipe = %(recipe)s AND c.partner_id = o.outcome_id))"
        if cache
        else "0"
    )
    kind, recipe = cache or (None, None)
    row = conn.execute(
        f"SELECT count(*) AS n, {cached} AS cached FROM outcome_labels o JOIN organizations org USING (org_id) "
        f"WHERE {where}",
        {"since": since, "until": until, "min_quality": min_quality, "kind": kind, "recipe": recipe},
    ).fetchone()
    return (int(row["n"]), int(row["cached"])) if row else (0, 0)


def readiness(
    conn: Connection, min_quality: float, since: datetime | None, org_id: str | None = None
) -> list[dict[str, Any]]:
    """What a supervised build would stream (the same filter: opted-in organisations, no lead who
    opted out), by label."""
    where, _ = _dataset_filter(for_preferences=False)
    return conn.execute(
        f"""SELECT o.training_label AS label, count(*) AS examples,
                  coalesce(sum(length(coalesce(o.subject, '')) + length(o.body)), 0) AS characters
             FROM outcome_labels o JOIN organizations org USING (org_id)
            WHERE {where} AND (%(org_id)s::text IS NULL OR o.org_id = %(org_id)s::text)
            GROUP BY o.training_label ORDER BY o.training_label""",
        {"min_quality": min_quality, "since": since, "until": None, "org_id": org_id},
    ).fetchall()


def create_run(
    conn: Connection, scope: str, trigger: str, params: dict[str, Any], execution_arn: str | None = None
) -> dict[str, Any] | None:
    """A new pending run; None when one is already in flight for the scope."""
    return conn.execute(
        f"""INSERT INTO training_runs (scope, status, trigger, params, provider, base_model, method, execution_arn,
                                       status_history)
            VALUES (%s, 'pending', %s, %s, %s, %s, %s, %s, jsonb_build_array(jsonb_build_object(
                    'status', 'pending', 'at', now())))
            ON CONFLICT (scope) WHERE status IN ({_ACTIVE_SQL}) DO NOTHING
            RETURNING *""",
        (
            scope,
            trigger,
            jsonb(params),
            params.get("provider"),
            params.get("base_model"),
            params.get("method"),
            execution_arn,
        ),
    ).fetchone()


def get_run(conn: Connection, run_id: UUID | str, *, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT * FROM training_runs WHERE run_id = %s{' FOR UPDATE' if lock else ''}", (str(run_id),)
    ).fetchone()


def run_for_execution(conn: Connection, execution_arn: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM training_runs WHERE execution_arn = %s", (execution_arn,)).fetchone()


def run_for_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT * FROM training_runs WHERE job_id = %s ORDER BY started_at DESC LIMIT 1", (job_id,)
    ).fetchone()


def update_run(conn: Connection, run_id: UUID | str, status: str | None = None, **fields: Any) -> dict[str, Any] | None:
    """Set fields (JSON ones as jsonb) and, when given, a new status appended to the history, on a
    run that is still in flight; None when it has ended (or there is none): a run that ended, e.g.
    cancelled by an operator while a step was running, never moves again."""
    json_fields = {"manifest", "provider_files", "params"}
    assignments, values = ["updated_at = now()"], []
    for name, value in fields.items():
        assignments.append(f"{name} = %s")
        values.append(jsonb(value) if name in json_fields else value)
    if status:
        assignments += [
            "status = %s",
            "status_history = status_history || jsonb_build_array(jsonb_build_object('status', %s::text, 'at', now()))",
        ]
        values += [status, status]
        if status in ENDED:
            assignments.append("finished_at = now()")
    return conn.execute(
        f"UPDATE training_runs SET {', '.join(assignments)} WHERE run_id = %s AND status = ANY(%s) RETURNING *",
        (*values, str(run_id), list(ACTIVE)),
    ).fetchone()


def record_execution(conn: Connection, run_id: UUID | str, execution_arn: str) -> dict[str, Any] | None:
    """The run's execution, whatever the run's status (the run may have ended before it is known)."""
    return conn.execute(
        "UPDATE training_runs SET execution_arn = %s, updated_at = now() WHERE run_id = %s RETURNING *",
        (execution_arn, str(run_id)),
    ).fetchone()


def active_run(conn: Connection, scope: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT * FROM training_runs WHERE scope = %s AND status = ANY(%s)", (scope, list(ACTIVE))
    ).fetchone()


def close_if_active(conn: Connection, run_id: UUID | str, status: str, error: str) -> dict[str, Any] | None:
    """End a run that is still in flight (a step that records the end first wins)."""
    return conn.execute(
        """UPDATE training_runs SET status = %s, error = %s, updated_at = now(), finished_at = now(),
                  status_history = status_history || jsonb_build_array(jsonb_build_object('status', %s::text,
                                                                                          'at', now()))
            WHERE run_id = %s AND status = ANY(%s) RETURNING *""",
        (status, error, status, str(run_id), list(ACTIVE)),
    ).fetchone()

"""SQL for the model registry and its history."""

from __future__ import annotations

from typing import Any

from flywheel.dal.connection import Connection, jsonb
from flywheel.dal.outcomes import won_deals_sql, won_revenue_sql
from flywheel.dal.report_counts import LIVE, POSITIVE, ROLLED, rolled_before
from flywheel.dal.training import ACTIVE as _RUNS_IN_FLIGHT


def next_version(conn: Connection) -> tuple[int, int, int]:
    """Minor bumped per run: v1.0.0, v1.1.0, v1.2.0 ..."""
    conn.execute("LOCK TABLE model_registry IN SHARE ROW EXCLUSIVE MODE")
    row = conn.execute("SELECT major, minor FROM model_registry ORDER BY major DESC, minor DESC LIMIT 1").fetchone()
    return (1, 0, 0) if row is None else (row["major"], row["minor"] + 1, 0)


def insert_model(conn: Connection, model: dict[str, Any]) -> dict[str, Any]:
    columns = ", ".join(model)
    placeholders = ", ".join(["%s"] * len(model))
    values = [jsonb(v) if k == "notes" else v for k, v in model.items()]
    row = conn.execute(f"INSERT INTO model_registry ({columns}) VALUES ({placeholders}) RETURNING *", values).fetchone()
    assert row is not None
    return row


def get_model(conn: Connection, model_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT * FROM model_registry WHERE model_id = %s{' FOR UPDATE' if lock else ''}", (model_id,)
    ).fetchone()


def by_role(conn: Connection, role: str, *, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT * FROM model_registry WHERE role = %s{' FOR UPDATE' if lock else ''}", (role,)
    ).fetchone()


def lock_roles(conn: Connection) -> dict[str, dict[str, Any]]:
    """The champion's and the challenger's rows, locked in one statement in a fixed order (challenger,
    then champion): every writer that changes roles takes them this way, before any other model row,
    so two writers never wait on each other in a cycle."""
    rows = conn.execute("SELECT * FROM model_registry WHERE role IS NOT NULL ORDER BY role FOR UPDATE").fetchall()
    return {row["role"]: row for row in rows}


def list_models(conn: Connection, status: str | None) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT * FROM model_registry WHERE (%s::text IS NULL OR status = %s)
            ORDER BY major DESC, minor DESC, patch DESC""",
        (status, status),
    ).fetchall()


def change(
    conn: Connection,
    model_id: str,
    action: str,
    *,
    actor: str,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Change a model's status / role / traffic and record the change in its history."""
    before = get_model(conn, model_id, lock=True)
    assert before is not None, f"no model {model_id}"
    assignments = ", ".join(f"{name} = %s" for name in fields)
    after = (
        conn.execute(
            f"UPDATE model_registry SET {assignments} WHERE model_id = %s RETURNING *", (*fields.values(), model_id)
        ).fetchone()
        if fields
        else before
    )
    assert after is not None
    conn.execute(
        """INSERT INTO model_history (model_id, action, from_status, to_status, from_role, to_role, traffic_from,
                                      traffic_to, reason, evidence, actor)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            model_id,
            action,
            before["status"],
            after["status"],
            before["role"],
            after["role"],
            before["traffic_percentage"],
            after["traffic_percentage"],
            reason,
            jsonb(evidence) if evidence else None,
            actor,
        ),
    )
    return after


def history(conn: Connection, model_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT * FROM model_history WHERE (%s::text IS NULL OR model_id = %s)
            ORDER BY at DESC, history_id DESC LIMIT %s""",
        (model_id, model_id, limit),
    ).fetchall()


def previous_champion(conn: Connection, current: str | None) -> dict[str, Any] | None:
    """The model that was champion most recently before the current one."""
    return conn.execute(
        """SELECT m.* FROM model_history h JOIN model_registry m USING (model_id)
            WHERE h.to_role = 'champion' AND (%s::text IS NULL OR h.model_id <> %s) AND m.status <> 'failed'
            ORDER BY h.at DESC, h.history_id DESC LIMIT 1""",
        (current, current),
    ).fetchone()


def leaderboard(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    """The model_leaderboard view's columns, counted on one organisation's outcomes only: the daily
    counts before the rollup's boundary, its messages sent since then one by one."""
    return conn.execute(
        f"""SELECT m.model_id, m.version, m.status, m.role, m.traffic_percentage,
                   coalesce(c.messages, 0) AS messages_sent, coalesce(c.replies, 0) AS replies,
                   coalesce(c.positive_replies, 0) AS positive_replies, coalesce(c.meetings, 0) AS meetings,
                   coalesce(c.deals_won, 0) AS deals_won, coalesce(c.revenue, 0) AS revenue
              FROM model_registry m
              LEFT JOIN (
                   SELECT value, sum(messages) AS messages, sum(replies) AS replies,
                          sum(positive_replies) AS positive_replies, sum(meetings) AS meetings,
                          sum(deals_won) AS deals_won, sum(revenue) AS revenue
                     FROM (SELECT value, messages, replies, positive_replies, meetings, deals_won, revenue
                             FROM report_daily_counts
                            WHERE dimension = 'model' AND org_id = %(org_id)s AND {ROLLED}
                           UNION ALL
                           SELECT model_registry_id, 1, (replied_at IS NOT NULL)::int,
                                  coalesce(reply_category IN {POSITIVE}, false)::int,
                                  (meeting_booked_at IS NOT NULL)::int, {won_deals_sql()}, {won_revenue_sql()}
                             FROM outcome_labels
                            WHERE org_id = %(org_id)s AND {LIVE} AND model_registry_id IS NOT NULL) cells
                    GROUP BY value) c ON c.value = m.model_id
             ORDER BY messages_sent DESC, m.version DESC""",
        {"org_id": org_id, "before": rolled_before(conn)},
    ).fetchall()


_ACTIVE_RUNS = ", ".join(f"'{status}'" for status in _RUNS_IN_FLIGHT)

# A ready model serves no traffic (routing reads only the champion and the challenger): once its run
# has ended and it has waited the grace period of its serving kind, its deployment is retired. A run
# still in flight (its smoke test, its Deploy step) keeps its model's deployment whatever the time.
_IDLE_READY = f"""(status = 'ready' AND role IS NULL
              AND NOT EXISTS (SELECT 1 FROM training_runs r
                               WHERE r.run_id = model_registry.run_id AND r.status IN ({_ACTIVE_RUNS}))
              AND coalesce((SELECT r.finished_at FROM training_runs r WHERE r.run_id = model_registry.run_id),
                           model_registry.created_at)
                  <= now() - CASE serving_kind WHEN 'provisioned' THEN %(idle_provisioned_s)s
                                               ELSE %(idle_on_demand_s)s END * interval '1 second')"""

_OUT_OF_STEP = f"""serving_status IS NOT NULL AND serving_kind <> 'provider'
              AND ((status IN ('archived', 'failed') AND serving_status <> 'deleted')
                   OR (status = 'deployed' AND serving_status IN ('deleted', 'creating'))
                   OR (serving_status <> 'deleted' AND {_IDLE_READY}))"""


def _grace(idle_s: dict[str, float]) -> dict[str, float]:
    """The grace periods by serving kind (`provisioned`, `on_demand`), as the queries take them."""
    return {"idle_provisioned_s": idle_s["provisioned"], "idle_on_demand_s": idle_s["on_demand"]}


def serving_out_of_step(conn: Connection, idle_s: dict[str, float]) -> list[str]:
    """Models whose serving does not match their status: archived or failed ones still holding a
    deployment, deployed ones whose deployment was deleted (restored by a rollback) or is still
    being created, ready ones that have served no traffic for `idle_s[kind]` seconds since their
    run ended and still hold a deployment. Read without locks: each is claimed on its own
    (`claim_serving`)."""
    rows = conn.execute(
        f"SELECT model_id FROM model_registry WHERE {_OUT_OF_STEP} ORDER BY model_id", _grace(idle_s)
    ).fetchall()
    return [row["model_id"] for row in rows]


def claim_serving(
    conn: Connection, model_id: str, owner: str, lease_s: float, idle_s: dict[str, float]
) -> tuple[dict[str, Any] | None, str | None]:
    """Claim one out-of-step model for `owner` for `lease_s` seconds: (its row, None); or (None, the
    sync that holds a live claim on it); or (None, None) when it is in step now. One row locked per
    transaction: the registry's writers lock several model rows (roles first), a sync only ever one,
    so the two never wait on each other in a cycle. The row carries `serving_idle`: whether it is a
    ready model past its grace period (`claimed`)."""
    row = conn.execute(
        f"""SELECT serving_claimed_by, serving_claimed_until >= now() AS held FROM model_registry
             WHERE model_id = %(model_id)s AND {_OUT_OF_STEP} FOR UPDATE""",
        {"model_id": model_id, **_grace(idle_s)},
    ).fetchone()
    if row is None:
        return None, None
    if row["held"] and row["serving_claimed_by"] != owner:
        return None, row["serving_claimed_by"]
    claimed_row = conn.execute(
        f"""UPDATE model_registry
              SET serving_claimed_by = %(owner)s,
                  serving_claimed_until = now() + %(lease_s)s * interval '1 second'
            WHERE model_id = %(model_id)s RETURNING *, {_IDLE_READY} AS serving_idle""",
        {"owner": owner, "lease_s": lease_s, "model_id": model_id, **_grace(idle_s)},
    ).fetchone()
    return claimed_row, None


def claimed(conn: Connection, model_id: str, owner: str, idle_s: dict[str, float]) -> dict[str, Any] | None:
    """The model's row, locked, while `owner` still holds its serving claim; else None. With
    `serving_idle`: a ready model past its grace period, whose deployment is to be retired."""
    return conn.execute(
        f"""SELECT *, {_IDLE_READY} AS serving_idle FROM model_registry
             WHERE model_id = %(model_id)s AND serving_claimed_by = %(owner)s FOR UPDATE OF model_registry""",
        {"model_id": model_id, "owner": owner, **_grace(idle_s)},
    ).fetchone()


def extend_claim(conn: Connection, model_id: str, owner: str, lease_s: float) -> None:
    conn.execute(
        """UPDATE model_registry SET serving_claimed_until = now() + %s * interval '1 second'
            WHERE model_id = %s AND serving_claimed_by = %s""",
        (lease_s, model_id, owner),
    )


def release_claim(conn: Connection, model_id: str, owner: str) -> None:
    conn.execute(
        """UPDATE model_registry SET serving_claimed_by = NULL, serving_claimed_until = NULL
            WHERE model_id = %s AND serving_claimed_by = %s""",
        (model_id, owner),
    )

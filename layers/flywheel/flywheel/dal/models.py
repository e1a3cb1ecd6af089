"""SQL for the model registry and its history."""

from __future__ import annotations

from typing import Any

from flywheel.dal.connection import Connection, jsonb


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
    return conn.execute(f"SELECT * FROM model_registry WHERE model_id = %s{' FOR UPDATE' if lock else ''}",
                        (model_id,)).fetchone()


def by_role(conn: Connection, role: str, *, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(f"SELECT * FROM model_registry WHERE role = %s{' FOR UPDATE' if lock else ''}",
                        (role,)).fetchone()


def lock_roles(conn: Connection) -> dict[str, dict[str, Any]]:
    """The champion's and the challenger's rows, locked in one statement in a fixed order (challenger,
    then champion): every writer that changes roles takes them this way, before any other model row,
    so two writers never wait on each other in a cycle."""
    rows = conn.execute("SELECT * FROM model_registry WHERE role IS NOT NULL ORDER BY role FOR UPDATE").fetchall()
    return {row["role"]: row for row in rows}


def list_models(conn: Connection, status: str | None) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT * FROM model_registry WHERE (%s::text IS NULL OR status = %s)
            ORDER BY major DESC, minor DESC, patch DESC""", (status, status)).fetchall()


def change(conn: Connection, model_id: str, action: str, *, actor: str, reason: str | None = None,
           evidence: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Change a model's status / role / traffic and record the change in its history."""
    before = get_model(conn, model_id, lock=True)
    assert before is not None, f"no model {model_id}"
    assignments = ", ".join(f"{name} = %s" for name in fields)
    after = conn.execute(f"UPDATE model_registry SET {assignments} WHERE model_id = %s RETURNING *",
                         (*fields.values(), model_id)).fetchone() if fields else before
    assert after is not None
    conn.execute(
        """INSERT INTO model_history (model_id, action, from_status, to_status, from_role, to_role, traffic_from,
                                      traffic_to, reason, evidence, actor)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (model_id, action, before["status"], after["status"], before["role"], after["role"],
         before["traffic_percentage"], after["traffic_percentage"], reason, jsonb(evidence) if evidence else None,
         actor),
    )
    return after


def history(conn: Connection, model_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT * FROM model_history WHERE (%s::text IS NULL OR model_id = %s)
            ORDER BY at DESC, history_id DESC LIMIT %s""", (model_id, model_id, limit)).fetchall()


def previous_champion(conn: Connection, current: str | None) -> dict[str, Any] | None:
    """The model that was champion most recently before the current one."""
    return conn.execute(
        """SELECT m.* FROM model_history h JOIN model_registry m USING (model_id)
            WHERE h.to_role = 'champion' AND (%s::text IS NULL OR h.model_id <> %s) AND m.status <> 'failed'
            ORDER BY h.at DESC, h.history_id DESC LIMIT 1""", (current, current)).fetchone()


def leaderboard(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    """The model_leaderboard view's columns, counted on one organisation's outcomes only."""
    return conn.execute(
        """SELECT m.model_id, m.version, m.status, m.role, m.traffic_percentage,
                  count(o.outcome_id) AS messages_sent, count(o.replied_at) AS replies,
                  count(o.outcome_id) FILTER (WHERE o.reply_category IN ('interested', 'meeting_request'))
                      AS positive_replies,
                  count(o.meeting_booked_at) AS meetings,
                  count(o.outcome_id) FILTER (WHERE o.deal_status = 'won') AS deals_won,
                  coalesce(sum(o.deal_value) FILTER (WHERE o.deal_status = 'won'), 0) AS revenue
             FROM model_registry m
             LEFT JOIN outcome_labels o ON o.model_registry_id = m.model_id AND o.org_id = %s
            GROUP BY m.model_id, m.version, m.status, m.role, m.traffic_percentage
            ORDER BY messages_sent DESC, m.version DESC""",
        (org_id,),
    ).fetchall()


def serving_out_of_step(conn: Connection) -> list[dict[str, Any]]:
    """Models whose serving does not match their status: archived or failed ones still holding a
    deployment, deployed ones whose deployment was deleted (restored by a rollback) or is still
    being created."""
    return conn.execute(
        """SELECT * FROM model_registry
            WHERE serving_status IS NOT NULL AND serving_kind <> 'provider'
              AND ((status IN ('archived', 'failed') AND serving_status <> 'deleted')
                   OR (status = 'deployed' AND serving_status IN ('deleted', 'creating')))
            ORDER BY model_id""").fetchall()

"""The model registry's operations — deploy, traffic changes, promote, withdraw / roll back, archive —
in one place that the training pipeline, the training API and the experiment evaluator all call.

Each function takes the caller's connection (the caller owns the transaction, so a decision and its
registry change commit together) and locks the rows it changes in one order: the running
experiment's row (taken by the caller: the evaluator, a manual promotion or rollback), then the
champion's and challenger's rows together (`models_dal.lock_roles`), then any other model row.
Promotion and withdrawal are idempotent: applying the same decision twice changes nothing the
second time, and never touches a model that is no longer in the role the decision was about.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flywheel.dal import models as models_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.errors import Conflict, NotFound


def deploy_in(conn: Connection, model_id: str, *, canary_percentage: float, actor: str, reason: str) -> dict[str, Any]:
    """A ready (or archived) model becomes the challenger at the canary share, or the champion when
    there is none. Returns the model row, its role and the champion's id."""
    roles = models_dal.lock_roles(conn)
    model = models_dal.get_model(conn, model_id, lock=True)
    if model is None:
        raise NotFound(f"no model {model_id}")
    if model["status"] not in ("ready", "archived"):
        raise Conflict(f"model {model_id} is {model['status']}; only ready or archived models can be deployed")
    champion = roles.get("champion")
    now = datetime.now(UTC)
    if champion is None:
        row = models_dal.change(
            conn,
            model_id,
            "deployed_as_champion",
            actor=actor,
            reason=reason,
            status="deployed",
            role="champion",
            traffic_percentage=Decimal(100),
            deployed_at=now,
            archived_at=None,
        )
        return {"model": row, "role": "champion", "champion_id": model_id}
    if roles.get("challenger"):
        raise Conflict("a challenger is already deployed; promote or roll it back first")
    share = Decimal(str(canary_percentage))
    models_dal.change(
        conn,
        champion["model_id"],
        "traffic_to_challenger",
        actor=actor,
        reason=reason,
        traffic_percentage=Decimal(100) - share,
    )
    row = models_dal.change(
        conn,
        model_id,
        "deployed_as_challenger",
        actor=actor,
        reason=reason,
        status="deployed",
        role="challenger",
        traffic_percentage=share,
        deployed_at=now,
        archived_at=None,
    )
    return {"model": row, "role": "challenger", "champion_id": champion["model_id"]}


def set_split_in(
    conn: Connection,
    champion_id: str,
    challenger_id: str,
    challenger_share: float,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> None:
    """The experiment's split changed (canary → A/B): both models' traffic follows."""
    models_dal.lock_roles(conn)
    share = Decimal(str(round(challenger_share * 100, 2)))
    models_dal.change(
        conn, challenger_id, "traffic_to_ab", actor=actor, reason=reason, evidence=evidence, traffic_percentage=share
    )
    models_dal.change(
        conn, champion_id, "traffic_to_ab", actor=actor, reason=reason, traffic_percentage=Decimal(100) - share
    )


def archive_in(
    conn: Connection, model_id: str, *, action: str, actor: str, reason: str, evidence: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one way a model leaves service: archived, no role, no traffic. (Anything serving the model
    — e.g. a provider-side deployment — is released here, so every path that retires a model does it.)"""
    return models_dal.change(
        conn,
        model_id,
        action,
        actor=actor,
        reason=reason,
        evidence=evidence,
        status="archived",
        role=None,
        traffic_percentage=Decimal(0),
        archived_at=datetime.now(UTC),
    )


def promote_in(
    conn: Connection, model_id: str, *, actor: str, reason: str, evidence: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The challenger becomes champion at 100 %; the old champion is archived. Promoting the model
    that is already champion changes nothing."""
    roles = models_dal.lock_roles(conn)
    challenger, champion = roles.get("challenger"), roles.get("champion")
    if champion is not None and champion["model_id"] == model_id:
        return {"promoted": model_id, "archived": None, "changed": False}
    if challenger is None or challenger["model_id"] != model_id:
        raise Conflict(f"{model_id} is not the current challenger")
    if champion is not None:
        archive_in(conn, champion["model_id"], action="archived", actor=actor, reason=reason, evidence=evidence)
    models_dal.change(
        conn,
        model_id,
        "promoted",
        actor=actor,
        reason=reason,
        evidence=evidence,
        role="champion",
        traffic_percentage=Decimal(100),
    )
    return {"promoted": model_id, "archived": champion["model_id"] if champion else None, "changed": True}


def withdraw_in(
    conn: Connection, model_id: str, *, action: str, actor: str, reason: str, evidence: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The challenger `model_id` is archived and the champion gets all traffic back. When that model
    is no longer the challenger (already withdrawn or promoted) nothing changes: a repeated rollback
    never demotes a champion."""
    roles = models_dal.lock_roles(conn)
    challenger, champion = roles.get("challenger"), roles.get("champion")
    if challenger is None or challenger["model_id"] != model_id:
        return {"withdrawn": None, "champion": champion["model_id"] if champion else None, "changed": False}
    archive_in(conn, model_id, action=action, actor=actor, reason=reason, evidence=evidence)
    if champion is not None:
        models_dal.change(
            conn, champion["model_id"], "traffic_restored", actor=actor, reason=reason, traffic_percentage=Decimal(100)
        )
    return {"withdrawn": model_id, "champion": champion["model_id"] if champion else None, "changed": True}


def rollback_in(conn: Connection, *, actor: str, reason: str, expected_model_id: str | None = None) -> dict[str, Any]:
    """An operator's undo. Without `expected_model_id`: the running challenger is withdrawn; when no
    challenger runs, nothing changes (Conflict) — a retried rollback must never go on to demote the
    champion. With `expected_model_id`: that model is rolled back — the challenger withdrawn, or the
    champion replaced by the previous champion; when it is already out of service the call changes
    nothing (safe to retry)."""
    roles = models_dal.lock_roles(conn)
    challenger, champion = roles.get("challenger"), roles.get("champion")
    if expected_model_id is None:
        if challenger is None:
            raise Conflict(
                "no challenger is running; to restore the previous champion, name the current champion "
                "(model_id), so that a retried rollback changes nothing"
            )
        expected_model_id = challenger["model_id"]
    current = challenger or champion
    if current is None or current["model_id"] != expected_model_id:
        if models_dal.get_model(conn, expected_model_id) is None:  # a mistyped id is no retried rollback
            raise NotFound(f"no model {expected_model_id}")
        if challenger is not None and champion is not None and champion["model_id"] == expected_model_id:
            raise Conflict(
                f"{expected_model_id} is the champion while {challenger['model_id']} is the "
                "challenger: a rollback withdraws the challenger first"
            )
        return {"rolled_back": None, "champion": champion["model_id"] if champion else None, "changed": False}
    if challenger is not None:
        done = withdraw_in(conn, challenger["model_id"], action="rolled_back", actor=actor, reason=reason)
        return {"rolled_back": done["withdrawn"], "champion": done["champion"], "changed": True}
    previous = models_dal.previous_champion(conn, champion["model_id"] if champion else None)
    if previous is None:
        raise Conflict("nothing to roll back to")
    if champion is not None:
        archive_in(conn, champion["model_id"], action="rolled_back", actor=actor, reason=reason)
    models_dal.change(
        conn,
        previous["model_id"],
        "restored_as_champion",
        actor=actor,
        reason=reason,
        status="deployed",
        role="champion",
        traffic_percentage=Decimal(100),
        archived_at=None,
    )
    return {
        "rolled_back": champion["model_id"] if champion else None,
        "champion": previous["model_id"],
        "changed": True,
    }


def archive(model_id: str, *, actor: str, reason: str) -> dict[str, Any]:
    """Retire a model that serves no traffic (a ready or failed one); the champion and the
    challenger leave through promotion or rollback instead. Archiving an archived model changes
    nothing."""
    with transaction() as conn:
        model = models_dal.get_model(conn, model_id, lock=True)
        if model is None:
            raise NotFound(f"no model {model_id}")
        if model["role"] is not None:
            raise Conflict(f"{model_id} is the {model['role']}: promote or roll it back instead of archiving it")
        if model["status"] == "archived":
            return {**model, "changed": False}
        return {**archive_in(conn, model_id, action="archived", actor=actor, reason=reason), "changed": True}

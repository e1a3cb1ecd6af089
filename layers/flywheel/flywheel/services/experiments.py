"""Experiments: starting one for each challenger, routing leads, and the evaluator's daily pass."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flywheel.dal import experiments as experiments_dal
from flywheel.dal import models as models_dal
from flywheel.dal.connection import Connection, single_statement, transaction
from flywheel.domain import experiments as domain
from flywheel.domain import stats
from flywheel.errors import NotFound
from flywheel.observability import logger

DEFAULT_BASELINE, DEFAULT_MDE = 0.03, 0.10


def start(conn: Connection, champion_id: str, challenger_id: str, canary_share: float,
          config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new experiment with a new salt, in its canary stage (called when a challenger is deployed)."""
    settings = domain.Config.from_dict(config)
    plan = stats.plan(float((config or {}).get("baseline", DEFAULT_BASELINE)),
                      float((config or {}).get("mde", DEFAULT_MDE)), settings.ab_share)
    return experiments_dal.create(conn, {
        "experiment_id": f"exp-{secrets.token_hex(6)}", "champion_model_id": champion_id,
        "challenger_model_id": challenger_id, "salt": secrets.token_hex(8), "stage": "canary", "status": "running",
        "allocation": Decimal(str(canary_share / 100)), "planned_sample": plan.sequential_n,
        "config": {**(config or {}), "plan": plan.as_dict()},
    })


def snapshot(experiment: dict[str, Any], counts: dict[str, dict[str, float]], now: datetime) -> dict[str, Any]:
    """The evaluator's input, in the same shape `flywheel experiment evaluate` reads."""
    def arm(name: str) -> dict[str, Any]:
        c = counts.get(name, {})
        return {
            "assigned": c.get("assigned", 0),
            "metrics": {"positive_reply": {"units": c.get("reply_units", 0), "conversions": c.get("reply_hits", 0)},
                        "meeting": {"units": c.get("meeting_units", 0), "conversions": c.get("meeting_hits", 0)},
                        "close": {"units": c.get("close_units", 0), "conversions": c.get("close_hits", 0)},
                        "revenue": {"units": c.get("close_units", 0), "sum": c.get("revenue", 0.0)}},
            "guardrails": {"unsubscribe": {"units": c.get("reply_units", 0), "events": c.get("unsub_hits", 0)},
                           "spam_report": {"units": c.get("reply_units", 0), "events": c.get("spam_hits", 0)},
                           "bounce": {"units": c.get("bounce_units", 0), "events": c.get("bounce_hits", 0)},
                           "negative_reply": {"units": c.get("reply_units", 0),
                                              "events": c.get("negative_hits", 0)}},
        }

    return {
        "experiment_id": experiment["experiment_id"], "stage": experiment["stage"],
        "allocation": float(experiment["allocation"]), "planned_sample": experiment["planned_sample"],
        "days_running": (now - experiment["started_at"]).total_seconds() / 86400,
        "days_in_stage": (now - experiment["stage_started_at"]).total_seconds() / 86400,
        "config": experiment["config"], "arms": {"champion": arm("champion"), "challenger": arm("challenger")},
    }


def _apply(conn: Connection, experiment: dict[str, Any], decision: dict[str, Any], actor: str,
           now: datetime) -> None:
    from flywheel.services import training  # registry changes live with the training service

    action, exp_id = decision["action"], experiment["experiment_id"]
    evidence: dict[str, Any] = {k: decision[k] for k in ("primary", "guardrails", "srm_p_value", "days_running")
                                if k in decision}
    if action == "advance":
        share = domain.Config.from_dict(experiment["config"]).ab_share
        experiments_dal.update(conn, exp_id, stage="ab", allocation=Decimal(str(share)), stage_started_at=now)
        models_dal.change(conn, experiment["challenger_model_id"], "traffic_to_ab", actor=actor,
                          reason=decision["reason"], evidence=evidence, traffic_percentage=Decimal(str(share * 100)))
        models_dal.change(conn, experiment["champion_model_id"], "traffic_to_ab", actor=actor,
                          reason=decision["reason"], traffic_percentage=Decimal(str(100 - share * 100)))
    elif action == "promote":
        training.promote_in(conn, experiment["challenger_model_id"], actor=actor, reason=decision["reason"],
                            evidence=evidence)
    elif action == "rollback":
        training.rollback_in(conn, actor=actor, reason=decision["reason"], evidence=evidence)
    elif action == "inconclusive":
        training.rollback_in(conn, actor=actor, reason=decision["reason"], evidence=evidence,
                             action="ended_inconclusive")
    ended = {"promote": "promoted", "rollback": "rolled_back", "inconclusive": "inconclusive"}
    fields: dict[str, Any] = {"last_decision": decision}
    if action in ended:
        fields.update(status=ended[action], ended_at=now)
    experiments_dal.update(conn, exp_id, **fields)


def evaluate(actor: str = "evaluator", now: datetime | None = None, apply: bool = True) -> dict[str, Any]:
    """The evaluator's one code path (daily schedule and POST /training/promote-winner)."""
    now = now or datetime.now(UTC)
    with transaction() as conn:
        experiment = experiments_dal.running(conn)
        if experiment is None:
            raise NotFound("no experiment is running")
        counts = experiments_dal.arm_counts(conn, experiment["experiment_id"], experiment["stage"], now)
        decision = domain.decide(snapshot(experiment, counts, now))
        if apply:
            _apply(conn, experiment, decision, actor, now)
    logger.info("experiment evaluated", extra={"experiment_id": experiment["experiment_id"],
                                               "action": decision["action"], "reason": decision["reason"]})
    return decision


def shift_clock(days: float) -> None:
    """Simulations only (the demo): pretend the running experiment started `days` earlier."""
    with transaction() as conn:
        experiment = experiments_dal.running(conn)
        if experiment is not None:
            delta = timedelta(days=days)
            experiments_dal.update(conn, experiment["experiment_id"], started_at=experiment["started_at"] - delta,
                                   stage_started_at=experiment["stage_started_at"] - delta)


def end_running(conn: Connection, status: str, now: datetime) -> None:
    """A manual promotion or rollback ends the running experiment too."""
    experiment = experiments_dal.running(conn)
    if experiment is not None:
        experiments_dal.update(conn, experiment["experiment_id"], status=status, ended_at=now)


# --- routing -----------------------------------------------------------------------------------

_SNAPSHOT: dict[str, Any] = {"at": 0.0}
SNAPSHOT_TTL_S = 30.0
_ASSIGNED: dict[tuple[str, str, str], str] = {}  # (experiment, org, lead) -> arm, per container
_ASSIGNED_MAX = 100_000


def _registry(now: float) -> dict[str, Any]:
    """Champion, challenger and running experiment, cached per container for a short TTL."""
    if now - _SNAPSHOT["at"] > SNAPSHOT_TTL_S:
        with transaction() as conn:
            _SNAPSHOT.update(at=now, champion=models_dal.by_role(conn, "champion"),
                             challenger=models_dal.by_role(conn, "challenger"),
                             experiment=experiments_dal.running(conn))
    return _SNAPSHOT


def forget_cache() -> None:
    _SNAPSHOT["at"] = 0.0
    _ASSIGNED.clear()


def _model(row: dict[str, Any]) -> dict[str, Any]:
    return {"model_registry_id": row["model_id"], "provider": row["provider"],
            "provider_model_id": row["provider_model_id"], "version": row["version"]}


def route(org_id: str, lead_id: str) -> dict[str, Any]:
    """The model to write to this lead with, and the experiment arm, sticky for the experiment."""
    registry = _registry(time.monotonic())
    champion, challenger, experiment = registry["champion"], registry["challenger"], registry["experiment"]
    if champion is None:
        raise NotFound("no model is deployed yet: use your default model")
    if experiment is None or challenger is None or experiment["challenger_model_id"] != challenger["model_id"]:
        return {"model": _model(champion), "experiment_id": None, "arm": "champion"}
    key = (experiment["experiment_id"], org_id, lead_id)
    arm = _ASSIGNED.get(key)
    if arm is None:
        # read before write: an assigned lead costs one primary-key read, even in a cold container
        with single_statement() as conn:
            arm = experiments_dal.assigned_arm(conn, *key)
        if arm is None:
            value = domain.bucket(experiment["salt"], f"{org_id}:{lead_id}")
            wanted = domain.arm_for(value, float(experiment["allocation"]))
            with transaction() as conn:
                arm = experiments_dal.assign(conn, *key, wanted, value, experiment["stage"])
        if len(_ASSIGNED) >= _ASSIGNED_MAX:
            _ASSIGNED.clear()
        _ASSIGNED[key] = arm
    return {"model": _model(challenger if arm == "challenger" else champion),
            "experiment_id": experiment["experiment_id"], "arm": arm}


# --- reports -----------------------------------------------------------------------------------

def _rate(hits: int, n: int) -> dict[str, Any]:
    low, high = stats.wilson_interval(int(hits), int(n))
    return {"rate": hits / n if n else None, "interval": [low, high], "n": int(n)}


def leaderboard_with_intervals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        "model_id": r["model_id"], "version": r["version"], "status": r["status"], "role": r["role"],
        "traffic_percentage": float(r["traffic_percentage"]), "messages_sent": int(r["messages_sent"]),
        "reply_rate": _rate(r["replies"], r["messages_sent"]),
        "positive_reply_rate": _rate(r["positive_replies"], r["messages_sent"]),
        "meeting_rate": _rate(r["meetings"], r["messages_sent"]),
        "close_rate": _rate(r["deals_won"], r["messages_sent"]),
        "revenue_per_message": float(r["revenue"]) / int(r["messages_sent"]) if r["messages_sent"] else None,
    } for r in rows]


def strategies(segment: str, min_sample: int) -> dict[str, Any]:
    with transaction() as conn:
        rows = experiments_dal.strategies(conn, segment)
    cells = [{"segment": r["segment"], "framework": r["framework"], "tone": r["tone"],
              "reply_rate": _rate(r["replies"], r["messages"]), "meeting_rate": _rate(r["meetings"], r["messages"])}
             for r in rows if r["messages"] >= min_sample]
    return {"segment_by": segment, "min_sample": min_sample, "cells": cells,
            "hidden_cells": sum(1 for r in rows if r["messages"] < min_sample)}

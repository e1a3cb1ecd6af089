"""Experiments: starting one for each challenger (with an honest plan), routing leads, the
evaluator's daily pass, restarts after a sample-ratio mismatch, and the history of every evaluation."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flywheel.clients import events as event_bus
from flywheel.dal import experiments as experiments_dal
from flywheel.dal import models as models_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.domain import experiments as domain
from flywheel.domain import stats
from flywheel.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound
from flywheel.observability import logger, metrics
from flywheel.services import registry, serving
from flywheel.services.routing import forget_cache, route  # noqa: F401 - GET /route's library call
from flywheel.settings import get_settings

HISTORY_DAYS = 28  # the plan reads the last four weeks of traffic
MIN_HISTORY_LEADS = 1000  # fewer matured leads than this: the rates are too noisy to plan on
EVENT_SOURCE = "flywheel.experiments"


def _history_figures(
    conn: Connection, config: dict[str, Any], now: datetime
) -> tuple[dict[str, float], float | None, str, list[str]]:
    """Weekly volume and baseline rates from the last weeks of outcomes; the configured figures
    (or typical rates) only where history is too thin, and the plan says so."""
    history = experiments_dal.traffic_history(conn, now, HISTORY_DAYS)
    notes: list[str] = []
    baselines = dict(domain.TYPICAL_RATES)
    if config.get("baseline") is not None:
        baselines[domain.PRIMARY] = float(config["baseline"])
    measured = []
    if history["primary_units"] >= MIN_HISTORY_LEADS:
        baselines[domain.PRIMARY] = max(history["positive_reply"], 1) / history["primary_units"]
        measured.append(domain.PRIMARY)
    else:
        notes.append(
            f"only {history['primary_units']} leads with a closed 14-day window in the last "
            f"{HISTORY_DAYS + 14} days: {domain.PRIMARY} baseline {baselines[domain.PRIMARY]:.2%} is "
            "configured, not measured"
        )
    if history["early_units"] >= MIN_HISTORY_LEADS:
        for name in ("bounce_1d", "unsubscribe_1d", "spam_report_1d", "negative_reply_1d"):
            # a rate of 0 in history would plan an infinite canary: floor it at one event
            baselines[name] = max(history[name], 1) / history["early_units"]
        measured.append("guardrails")
    else:
        notes.append("too little history for the early guardrail rates: typical rates used")
    if history["primary_units"] >= MIN_HISTORY_LEADS:  # the full-window guardrails: leads whose 14 days are over
        for name in ("bounce", "unsubscribe", "spam_report", "negative_reply"):
            baselines[name] = max(history[name], 1) / history["primary_units"]
    weeks = HISTORY_DAYS / 7
    volume: float | None = history["leads"] / weeks if history["leads"] >= MIN_HISTORY_LEADS else None
    if volume is None:
        configured = config.get("weekly_volume")
        volume = float(configured) if configured else None
        notes.append(
            f"only {history['leads']} leads messaged in the last {HISTORY_DAYS} days: weekly volume "
            + (f"{volume:,.0f} is configured, not measured" if volume else "unknown")
        )
    source = "history" if len(measured) == 2 and not notes else ("configured" if not measured else "mixed")
    return baselines, volume, source, notes


def start(
    conn: Connection,
    champion_id: str,
    challenger_id: str,
    canary_percentage: float,
    config: dict[str, Any] | None = None,
    *,
    actor: str = "system",
    now: datetime | None = None,
) -> dict[str, Any]:
    """A new experiment with a new salt, in its canary stage (called when a challenger is deployed),
    planned from the real traffic; a planned lift that cannot be detected within the maximum runtime
    is a warning on the experiment (and in the deploy answer), not a surprise at the end."""
    now = now or datetime.now(UTC)
    raw = dict(config or {})
    settings = domain.Config.from_dict(raw)
    baselines, volume, source, notes = _history_figures(conn, raw, now)
    share = canary_percentage / 100
    try:
        plan = domain.plan(
            baselines=baselines,
            mde=float(raw.get("mde", 0.10)),
            canary_share=share,
            weekly_volume=volume,
            config=settings,
            source=source,
        )
    except ValueError as exc:  # a lift the baseline cannot take, or one no sample could detect
        raise InvalidInput(f"the experiment cannot be planned: {exc}", field="experiment_config") from exc
    plan["notes"] = notes
    experiment = experiments_dal.create(
        conn,
        {
            "experiment_id": f"exp-{secrets.token_hex(6)}",
            "champion_model_id": champion_id,
            "challenger_model_id": challenger_id,
            "salt": secrets.token_hex(8),
            "stage": "canary",
            "status": "running",
            "allocation": Decimal(str(share)),
            "planned_sample": plan["sequential_sample"],
            "canary_sample": plan["canary_sample"],
            "config": raw,
            "plan": plan,
            "warnings": plan["warnings"],
            "started_at": now,
            "stage_started_at": now,
        },
    )
    models_dal.change(
        conn,
        challenger_id,
        "experiment_started",
        actor=actor,
        reason="; ".join(plan["warnings"]) or "planned lift fits in the maximum runtime",
        evidence={"experiment_id": experiment["experiment_id"], "plan": plan},
    )
    if plan["warnings"]:
        logger.warning(
            "experiment cannot detect its planned lift in time",
            extra={"experiment_id": experiment["experiment_id"], "warnings": plan["warnings"]},
        )
    return experiment


def metric_windows() -> dict[str, tuple[str, int]]:
    """Every metric the evaluator counts: name → (event, window days from first exposure)."""
    return {name: (name.removesuffix("_1d"), days) for name, days in domain.WINDOWS.items()}


def snapshot(experiment: dict[str, Any], rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The evaluator's input, in the shape `flywheel experiment evaluate` reads: one entry per
    segment with each arm's counts."""
    config = domain.Config.from_dict(experiment["config"])
    discarded = set(experiment["discarded_segments"] or [])
    segments: dict[int, dict[str, Any]] = {}
    for row in rows:
        seg = segments.setdefault(
            row["segment"],
            {
                "segment": row["segment"],
                "stage": row["stage"],
                "discarded": row["segment"] in discarded,
                "allocation": float(experiment["allocation"]) if row["segment"] == experiment["segment"] else None,
                "assigned": {"champion": 0, "challenger": 0},
                "arms": {"champion": {}, "challenger": {}},
            },
        )
        seg["assigned"][row["arm"]] = int(row["assigned"])
        arm = seg["arms"][row["arm"]]
        for name in metric_windows():
            arm[name] = {"units": int(row[f"{name}__units"]), "conversions": int(row[f"{name}__conversions"])}
        arm["revenue"] = {"units": int(row["close__units"]), "sum": float(row["revenue"])}
    if experiment["segment"] not in segments:  # the current segment has no lead yet
        empty = {name: {"units": 0, "conversions": 0} for name in metric_windows()}
        segments[experiment["segment"]] = {
            "segment": experiment["segment"],
            "stage": experiment["stage"],
            "discarded": False,
            "allocation": float(experiment["allocation"]),
            "assigned": {"champion": 0, "challenger": 0},
            "arms": {"champion": dict(empty), "challenger": dict(empty)},
        }
    canary_share = ((experiment["plan"] or {}).get("canary") or {}).get("share")
    for seg in segments.values():
        if seg["allocation"] is None:  # an earlier segment: its split, when known
            seg["allocation"] = config.ab_share if seg["stage"] == "ab" else canary_share
        for arm in ("champion", "challenger"):  # an arm with no lead in a segment has zero counts
            if not seg["arms"][arm]:
                seg["arms"][arm] = {name: {"units": 0, "conversions": 0} for name in metric_windows()}
    return {
        "experiment_id": experiment["experiment_id"],
        "stage": experiment["stage"],
        "allocation": float(experiment["allocation"]),
        "planned_sample": experiment["planned_sample"],
        # experiments started by the previous release (during a deploy) have no canary sample yet
        "canary_sample": experiment["canary_sample"] or experiment["planned_sample"],
        "days_running": (now - experiment["started_at"]).total_seconds() / 86400,
        "days_in_stage": (now - experiment["stage_started_at"]).total_seconds() / 86400,
        "config": experiment["config"],
        "segments": [segments[k] for k in sorted(segments)],
    }


def _apply(
    conn: Connection, experiment: dict[str, Any], decision: dict[str, Any], actor: str, now: datetime
) -> dict[str, Any]:
    """The decision's registry change and the experiment's new state, in the caller's transaction."""
    action, exp_id = decision["action"], experiment["experiment_id"]
    champion, challenger = experiment["champion_model_id"], experiment["challenger_model_id"]
    evidence: dict[str, Any] = {
        "experiment_id": exp_id,
        **{k: decision[k] for k in ("primary", "guardrails", "srm", "days_running", "segment") if k in decision},
    }
    fields: dict[str, Any] = {"last_decision": decision}
    applied: dict[str, Any] = {"action": action}
    if action == "advance":
        share = domain.Config.from_dict(experiment["config"]).ab_share
        registry.set_split_in(
            conn, champion, challenger, share, actor=actor, reason=decision["reason"], evidence=evidence
        )
        fields.update(
            stage="ab", allocation=Decimal(str(share)), stage_started_at=now, segment=experiment["segment"] + 1
        )
        applied.update(stage="ab", allocation=share, segment=experiment["segment"] + 1)
    elif action == "promote":
        applied.update(registry.promote_in(conn, challenger, actor=actor, reason=decision["reason"], evidence=evidence))
    elif action in ("rollback", "inconclusive"):
        applied.update(
            registry.withdraw_in(
                conn,
                challenger,
                actor=actor,
                reason=decision["reason"],
                evidence=evidence,
                action="rolled_back" if action == "rollback" else "ended_inconclusive",
            )
        )
    ended = {"promote": "promoted", "rollback": "rolled_back", "inconclusive": "inconclusive"}
    if action in ended:
        fields.update(status=ended[action], ended_at=now)
        applied["status"] = ended[action]
    experiments_dal.update(conn, exp_id, **fields)
    return applied


def _record(
    conn: Connection,
    experiment: dict[str, Any],
    snap: dict[str, Any] | None,
    decision: dict[str, Any],
    actor: str,
    applied: bool,
    now: datetime,
) -> None:
    primary = decision.get("primary", {})
    interval = primary.get("sequential_interval") or [None, None]
    experiments_dal.record_evaluation(
        conn,
        {
            "experiment_id": experiment["experiment_id"],
            "evaluated_at": now,
            "actor": actor,
            "stage": decision.get("stage", experiment["stage"]),
            "segment": decision.get("segment", experiment["segment"]),
            "action": decision["action"],
            "applied": applied,
            "reason": decision["reason"],
            "days_running": decision.get("days_running"),
            "primary_units": sum(primary.get("units") or [0]),
            "primary_lift": primary.get("lift"),
            "primary_low": interval[0],
            "primary_high": interval[1],
            "srm_p_value": decision.get("srm_p_value"),
            "snapshot": snap,
            "decision": decision,
        },
    )


def evaluate(actor: str = "evaluator", now: datetime | None = None, *, only: str | None = None) -> dict[str, Any]:
    """The evaluator's one code path (daily schedule, POST /training/promote-winner, the demo). The
    running experiment's row is locked for the whole evaluation, so evaluators run one at a time.
    The decision is applied and recorded with its snapshot — unless `only` names another action,
    in which case nothing is written and Conflict carries the decision."""
    now = now or datetime.now(UTC)
    with transaction() as conn:
        experiment = experiments_dal.running(conn, lock=True)
        if experiment is None:
            raise NotFound("no experiment is running")
        settle = domain.Config.from_dict(experiment["config"]).settle_hours
        rows = experiments_dal.segment_counts(conn, experiment["experiment_id"], metric_windows(), now, settle)
        snap = snapshot(experiment, rows, now)
        decision = domain.decide(snap)
        if only is not None and decision["action"] != only:
            raise Conflict(
                f"the evaluator does not {only}: {decision['action']} ({decision['reason']}); nothing was changed",
                decision=decision,
            )
        decision["applied"] = _apply(conn, experiment, decision, actor, now)
        _record(conn, experiment, snap, decision, actor, True, now)
    if decision["action"] in ("promote", "rollback", "inconclusive"):
        serving.sync(actor=actor)  # the archived model's deployment is deleted
    logger.info(
        "experiment evaluated",
        extra={
            "experiment_id": experiment["experiment_id"],
            "action": decision["action"],
            "reason": decision["reason"],
            "srm_p_value": decision["srm_p_value"],
        },
    )
    return decision


def announce_evaluation(decision: dict[str, Any]) -> bool:
    """Tell the event bus that the evaluator ran (ReportFunction redraws the reports). The decision is
    already applied: a bus that still refuses after the client's retries is logged as an error and
    counted (metric ExperimentEvaluationNotAnnounced), and the next daily run announces again."""
    bus = get_settings().experiment_events_bus
    if not bus:
        return False
    detail = {k: decision.get(k) for k in ("experiment_id", "action", "reason", "stage")}
    try:
        event_bus.publish(bus, "ExperimentEvaluated", [detail], source=EVENT_SOURCE)
    except DependencyUnavailable as exc:
        logger.error(
            "evaluation not announced", extra={**detail, "error": exc.message, "cause": exc.details.get("reason")}
        )
        metrics.add_metric(name="ExperimentEvaluationNotAnnounced", unit="Count", value=1)
        return False
    return True


def restart_stage(experiment_id: str, *, actor: str, reason: str, now: datetime | None = None) -> dict[str, Any]:
    """The way out of a sample-ratio mismatch: the current stage starts again as a new segment with a
    new salt (new leads are bucketed afresh; leads already assigned keep their arm). The old segment
    stays in the guardrails but no longer counts for the primary metric. Recorded in the history."""
    now = now or datetime.now(UTC)
    with transaction() as conn:
        experiment = experiments_dal.get(conn, experiment_id, lock=True)
        if experiment is None:
            raise NotFound(f"no experiment {experiment_id}")
        if experiment["status"] != "running":
            raise Conflict(f"experiment {experiment_id} is {experiment['status']}, not running")
        old, new = experiment["segment"], experiment["segment"] + 1
        updated = experiments_dal.update(
            conn,
            experiment_id,
            salt=secrets.token_hex(8),
            segment=new,
            stage_started_at=now,
            discarded_segments=[*(experiment["discarded_segments"] or []), old],
        )
        decision = {
            "action": "restart",
            "reason": reason,
            "stage": experiment["stage"],
            "segment": new,
            "discarded_segment": old,
            "srm": (experiment["last_decision"] or {}).get("srm"),
        }
        _record(conn, experiment, None, decision, actor, True, now)
        models_dal.change(
            conn,
            experiment["challenger_model_id"],
            "experiment_stage_restarted",
            actor=actor,
            reason=reason,
            evidence={"experiment_id": experiment_id, "discarded_segment": old, "segment": new},
        )
    forget_cache()
    return {
        "experiment_id": experiment_id,
        "stage": updated["stage"],
        "segment": new,
        "discarded_segments": updated["discarded_segments"],
        "stage_started_at": updated["stage_started_at"],
    }


def get_experiment(experiment_id: str) -> dict[str, Any]:
    with transaction() as conn:
        experiment = experiments_dal.get(conn, experiment_id)
    if experiment is None:
        raise NotFound(f"no experiment {experiment_id}")
    return {k: v for k, v in experiment.items() if k != "salt"}


def list_experiments(limit: int = 50) -> list[dict[str, Any]]:
    with transaction() as conn:
        return [{k: v for k, v in e.items() if k != "salt"} for e in experiments_dal.list_experiments(conn, limit)]


def evaluation_history(experiment_id: str, *, include_snapshots: bool = False, limit: int = 1000) -> dict[str, Any]:
    """Every evaluation of one experiment, oldest first: when, the action and whether it was applied,
    the primary lift and its always-valid interval, SRM, guardrails, and the plan the experiment was
    started with — what a report draws over time."""
    if limit < 1:
        raise InvalidInput("limit must be positive", field="limit")
    with transaction() as conn:
        experiment = experiments_dal.get(conn, experiment_id)
        if experiment is None:
            raise NotFound(f"no experiment {experiment_id}")
        rows = experiments_dal.evaluations(conn, experiment_id, limit)
    return {
        "experiment_id": experiment_id,
        "status": experiment["status"],
        "plan": experiment["plan"],
        "warnings": experiment["warnings"],
        "evaluations": [
            {
                "evaluation_id": r["evaluation_id"],
                "evaluated_at": r["evaluated_at"],
                "actor": r["actor"],
                "stage": r["stage"],
                "segment": r["segment"],
                "action": r["action"],
                "applied": r["applied"],
                "reason": r["reason"],
                "days_running": r["days_running"],
                "primary_units": r["primary_units"],
                "primary_lift": r["primary_lift"],
                "primary_interval": [r["primary_low"], r["primary_high"]],
                "srm_p_value": r["srm_p_value"],
                "guardrails": r["decision"].get("guardrails"),
                "canary": r["decision"].get("canary"),
                "srm": r["decision"].get("srm"),
                **({"snapshot": r["snapshot"], "decision": r["decision"]} if include_snapshots else {}),
            }
            for r in rows
        ],
    }


def lock_running(conn: Connection) -> dict[str, Any] | None:
    """The running experiment, its row locked: taken first by everything that changes the registry
    while an experiment may run (the evaluator does the same), so no two writers deadlock."""
    return experiments_dal.running(conn, lock=True)


def end_running(
    conn: Connection,
    experiment: dict[str, Any] | None,
    status: str,
    *,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> None:
    """A manual promotion or rollback ends the running experiment (locked by the caller with
    `lock_running`) too, recorded in its history."""
    now = now or datetime.now(UTC)
    if experiment is not None:
        experiments_dal.update(conn, experiment["experiment_id"], status=status, ended_at=now)
        _record(conn, experiment, None, {"action": f"manual_{status}", "reason": reason}, actor, True, now)


def shift_clock(days: float) -> None:
    """Simulations only (the demo): pretend the running experiment started `days` earlier."""
    with transaction() as conn:
        experiment = experiments_dal.running(conn, lock=True)
        if experiment is not None:
            delta = timedelta(days=days)
            experiments_dal.update(
                conn,
                experiment["experiment_id"],
                started_at=experiment["started_at"] - delta,
                stage_started_at=experiment["stage_started_at"] - delta,
            )


# --- reports -----------------------------------------------------------------------------------

_rate = stats.proportion


def leaderboard_with_intervals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "model_id": r["model_id"],
            "version": r["version"],
            "status": r["status"],
            "role": r["role"],
            "traffic_percentage": float(r["traffic_percentage"]),
            "messages_sent": int(r["messages_sent"]),
            "reply_rate": _rate(r["replies"], r["messages_sent"]),
            "positive_reply_rate": _rate(r["positive_replies"], r["messages_sent"]),
            "meeting_rate": _rate(r["meetings"], r["messages_sent"]),
            "close_rate": _rate(r["deals_won"], r["messages_sent"]),
            "revenue_per_message": float(r["revenue"]) / int(r["messages_sent"]) if r["messages_sent"] else None,
        }
        for r in rows
    ]


def strategies(org_id: str, segment: str, min_sample: int) -> dict[str, Any]:
    with transaction() as conn:
        rows = experiments_dal.strategies(conn, org_id, segment)
    cells = [
        {
            "segment": r["segment"],
            "framework": r["framework"],
            "tone": r["tone"],
            "reply_rate": _rate(r["replies"], r["messages"]),
            "positive_reply_rate": _rate(r["positive_replies"], r["messages"]),
            "meeting_rate": _rate(r["meetings"], r["messages"]),
        }
        for r in rows
        if r["messages"] >= min_sample
    ]
    return {
        "org_id": org_id,
        "segment_by": segment,
        "min_sample": min_sample,
        "cells": cells,
        "hidden_cells": sum(1 for r in rows if r["messages"] < min_sample),
    }

"""The flywheel at a glance: one organisation's report (funnel, experiment, registry, training,
replies, strategies, campaigns, data health), read in one consistent snapshot, drawn as a
self-contained HTML page or as terminal lines, and published to S3 with a short-lived link.

Every number comes from the code path of the API that answers it: the funnel and campaigns from
`services.insights` (GET /campaigns/{campaign_id}/performance), strategies from
`services.experiments.strategies` (GET /insights/strategies), rates and intervals from
`domain.stats`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flywheel.clients import queue, storage
from flywheel.dal import insights as insights_dal
from flywheel.dal.connection import Connection, transaction
from flywheel.domain import experiments as experiment_rules
from flywheel.errors import DependencyUnavailable, NotFound, ReportFailed
from flywheel.observability import logger
from flywheel.services import insights
from flywheel.settings import get_settings

TRAINING_RUNS_SHOWN = 5


# --- collecting -------------------------------------------------------------------------------------


def collect(org_id: str, *, now: datetime | None = None, days: int | None = None) -> dict[str, Any]:
    """Everything the report shows for one organisation, as plain data (JSON-able)."""
    # here, not at import: ReportsApiFunction serves links (latest_url) and never builds a report
    from flywheel.services import experiments

    settings = get_settings()
    now = now or datetime.now(UTC)
    days = days or settings.report_window_days
    since = now - timedelta(days=days)
    with transaction() as conn:
        # one snapshot for the whole report: every section sees the same data
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if not insights_dal.organization_exists(conn, org_id):
            raise NotFound(f"no organisation {org_id!r}", org_id=org_id)
        data: dict[str, Any] = {
            "org_id": org_id,
            "generated_at": now,
            "window": {"days": days, "since": since, "until": now},
            "funnel": {
                "total": insights.funnel_groups(conn, org_id, (), since=since)[0],
                "by_model_arm": insights.funnel_groups(conn, org_id, ("model", "version", "arm"), since=since),
            },
            "experiment": _experiment(conn, now),
            "registry": _registry(conn, since),
            "training": _training(conn, org_id),
            "replies": _replies(conn, org_id, since, now),
            "strategies": {
                segment: experiments.strategies(org_id, segment, settings.report_min_sample)
                for segment in ("industry", "role")
            },
            "campaigns": _campaigns(conn, org_id, since, settings.report_campaigns, settings.report_min_sample),
            "health": _health(conn, org_id, since),
        }
    data["health"]["queues"] = _queue_depths()
    return data


def _campaigns(conn: Connection, org_id: str, since: datetime, limit: int, min_sample: int) -> dict[str, Any]:
    active = insights_dal.active_campaigns(conn, org_id, since, limit + 1)
    return {
        "shown": [insights.campaign_performance_in(conn, org_id, c["campaign_id"]) for c in active[:limit]],
        "more": len(active) > limit,
        "limit": limit,
        "min_sample": min_sample,
    }


def _experiment(conn: Connection, now: datetime) -> dict[str, Any] | None:
    """The running experiment (else the last one): where it stands, and how its evidence moved over
    its daily evaluations (the evaluation history `GET /experiments/{id}/evaluations` serves)."""
    row = insights_dal.latest_experiment(conn)
    if row is None:
        return None
    from flywheel.services import experiments

    config = experiment_rules.Config.from_dict(row["config"])
    history = experiments.evaluation_history(row["experiment_id"])["evaluations"]
    end = row["ended_at"] or now
    days_running = (end - row["started_at"]).total_seconds() / 86400
    decision = row["last_decision"] or {}
    primary = decision.get("primary") or {}
    canary = decision.get("canary") or {}
    srm = decision.get("srm") or {}
    plan = row["plan"] or {}
    return {
        "experiment_id": row["experiment_id"],
        "status": row["status"],
        "stage": row["stage"],
        "segment": row["segment"],
        "allocation": float(row["allocation"]),
        "champion": row["champion_version"],
        "challenger": row["challenger_version"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "days_running": days_running,
        "days_left": max(0.0, config.max_runtime_days - days_running) if row["status"] == "running" else 0.0,
        "max_runtime_days": config.max_runtime_days,
        "min_runtime_days": config.min_runtime_days,
        "planned_sample": row["planned_sample"],
        "units": sum(primary.get("units") or [0]),
        "canary": {"units": canary.get("units"), "planned": row["canary_sample"], "complete": canary.get("complete")},
        "decision": {"action": decision.get("action"), "reason": decision.get("reason")},
        "primary": {
            "metric": primary.get("metric"),
            "lift": primary.get("lift"),
            "interval": primary.get("sequential_interval"),
            "rates": primary.get("rates"),
            "units": primary.get("units"),
        },
        "history": [
            {
                "at": e["evaluated_at"],
                "day": e["days_running"],
                "stage": e["stage"],
                "segment": e["segment"],
                "action": e["action"],
                "reason": e["reason"],
                "actor": e["actor"],
                "units": e["primary_units"],
                # an evaluation before any reply window closed measured nothing
                "estimate": e["primary_lift"] if e["primary_units"] else None,
                "low": e["primary_interval"][0],
                "high": e["primary_interval"][1],
                "srm_p_value": e["srm_p_value"],
            }
            for e in history
        ],
        "guardrails": [
            {
                "name": name,
                "difference": g.get("difference"),
                "low": (g.get("interval") or [None])[0],
                "high": (g.get("interval") or [None, None])[1],
                "margin": g.get("margin"),
                "units": g.get("units") or 0,
                "harm": bool(g.get("harm")),
                "non_inferior": bool(g.get("non_inferior")),
            }
            for name, g in sorted((decision.get("guardrails") or {}).items())
        ],
        "srm": {
            "p_value": srm.get("p_value"),
            "threshold": srm.get("threshold", config.srm_threshold),
            "flagged": bool(srm.get("alarm")),
            "assigned": srm.get("assigned"),
            "expected_share": srm.get("expected_share"),
        },
        "plan": plan,
        "warnings": row["warnings"] or [],
    }


KEY_ACTIONS = {
    "registered": "training",
    "smoke_test_failed": "failure",
    "failed": "failure",
    "deployed_as_champion": "deployment",
    "deployed_as_challenger": "deployment",
    "traffic_to_ab": "deployment",
    "promoted": "promotion",
    "rolled_back": "rollback",
    "ended_inconclusive": "rollback",
    "restored_as_champion": "rollback",
    "experiment_stage_restarted": "restart",
}


def _registry(conn: Connection, since: datetime) -> dict[str, Any]:
    """Registry changes in the window, each with its evidence in a sentence, and the current roles."""
    events = []
    for h in insights_dal.registry_history(conn, since):
        events.append(
            {
                "at": h["at"],
                "model": h["model_id"],
                "version": h["version"],
                "action": h["action"],
                "kind": KEY_ACTIONS.get(h["action"], "change"),
                "actor": h["actor"],
                "reason": h["reason"],
                "traffic": [_float(h["traffic_from"]), _float(h["traffic_to"])],
                "evidence": evidence_summary(h["evidence"]),
            }
        )
    roles = {
        m["role"]: {
            "model": m["model_id"],
            "version": m["version"],
            "traffic": float(m["traffic_percentage"]),
            "deployed_at": m["deployed_at"],
        }
        for m in insights_dal.registry(conn)
    }
    return {"events": events, "roles": roles}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def evidence_summary(evidence: dict[str, Any] | None) -> str:
    """What a registry change was decided on, in one line."""
    if not evidence:
        return ""
    parts = []
    primary = evidence.get("primary") or {}
    if primary.get("lift") is not None:
        low, high = (primary.get("sequential_interval") or [None, None])[:2]
        interval = f" [{low * 100:+.1f}%, {high * 100:+.1f}%]" if low is not None and high is not None else ""
        parts.append(f"{primary.get('metric', 'primary')} lift {primary['lift'] * 100:+.1f}%{interval}")
    harmed = [name for name, g in (evidence.get("guardrails") or {}).items() if g.get("harm") or g.get("breached")]
    if harmed:
        parts.append("clear harm: " + ", ".join(harmed))
    srm = (evidence.get("srm") or {}).get("p_value", evidence.get("srm_p_value"))
    if srm is not None:
        parts.append(f"SRM p = {srm:.2g}")
    plan = evidence.get("plan") or {}
    if plan.get("mde") is not None:
        parts.append(
            f"planned lift {plan['mde']:+.0%} "
            + (
                "fits in time"
                if plan.get("fits")
                else ("does not fit in time" if plan.get("fits") is False else "(volume unknown)")
            )
        )
    if evidence.get("days_running") is not None:
        parts.append(f"day {evidence['days_running']:.0f}")
    if evidence.get("experiment_id"):
        parts.append(f"experiment {evidence['experiment_id']}")
    if evidence.get("discarded_segment") is not None:
        parts.append(f"segment {evidence['discarded_segment']} set aside, segment {evidence.get('segment')} starts")
    if evidence.get("forced"):
        parts.append("forced by hand")
    if evidence.get("answer"):
        parts.append("smoke test answered")
    return "; ".join(parts)


# every status a run spends time in before it ends ("serving": waiting for its model's deployment)
RUN_STEPS = ("pending", "building", "uploading", "training", "registering", "serving", "smoke_testing")


def _training(conn: Connection, org_id: str) -> list[dict[str, Any]]:
    """The last training runs, from each run's record and dataset manifest. Another organisation's
    name and counts never appear in this organisation's report: they are summed as "others"."""
    runs = []
    for r in insights_dal.training_runs(conn, TRAINING_RUNS_SHOWN):
        manifest = r["manifest"] or {}
        by_org = {str(k): int(v) for k, v in (manifest.get("by_org") or {}).items()}
        others = {k: v for k, v in by_org.items() if k != org_id}
        tokens = manifest.get("tokens") or {}
        cost = manifest.get("cost_estimate") or {}
        runs.append(
            {
                "run_id": str(r["run_id"]),
                "status": r["status"],
                "trigger": r["trigger"],
                "provider": r["provider"],
                "base_model": r["base_model"],
                "method": r["method"],
                "started_at": r["started_at"],
                "finished_at": r["finished_at"],
                "model_id": r["model_id"],
                "error": r["error"],
                "steps": step_durations(r["status_history"] or [], r["finished_at"] or r["updated_at"]),
                "examples": {
                    "train": (manifest.get("counts") or {}).get("train"),
                    "validation": (manifest.get("counts") or {}).get("validation"),
                },
                "by_label": manifest.get("by_label") or {},
                "by_org": {
                    "this organisation": by_org.get(org_id, 0),
                    "other organisations": sum(others.values()),
                    "other organisations count": len(others),
                },
                "redactions": manifest.get("redactions") or {},
                "residual_scan_passed": (manifest.get("residual_scan") or {}).get("passed"),
                "tokens": sum(
                    int((tokens.get(part) or {}).get("total_tokens") or 0) for part in ("train", "validation")
                ),
                "token_method": (tokens.get("train") or {}).get("token_method"),
                "cost_usd": cost.get("usd"),
                "billed_tokens": cost.get("billed_tokens"),
            }
        )
    return runs


def step_durations(history: list[dict[str, Any]], end: datetime) -> list[tuple[str, float]]:
    """How long a run spent in each status, from its status history (the last one up to `end`)."""
    stamps = [(h["status"], _parse_time(h["at"])) for h in history]
    steps = []
    for i, (status, at) in enumerate(stamps):
        if status not in RUN_STEPS:
            continue
        until = stamps[i + 1][1] if i + 1 < len(stamps) else end
        steps.append((status, max(0.0, (until - at).total_seconds())))
    return steps


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _replies(conn: Connection, org_id: str, since: datetime, now: datetime) -> dict[str, Any]:
    """Replies per week and category, and how many the offline fallback classified."""
    weeks: dict[date, dict[str, Any]] = {}
    monday = since.date() - timedelta(days=since.weekday())
    while monday <= now.date():
        weeks[monday] = {"week": monday, "categories": {}, "replies": 0, "fallback": 0}
        monday += timedelta(days=7)
    for r in insights_dal.replies_per_week(conn, org_id, since):
        week = weeks.setdefault(r["week"], {"week": r["week"], "categories": {}, "replies": 0, "fallback": 0})
        week["categories"][r["category"] or "unclassified"] = int(r["replies"])
        week["replies"] += int(r["replies"])
        week["fallback"] += int(r["fallback"])
    rows = [weeks[k] for k in sorted(weeks)]
    for w in rows:
        classified = w["replies"] - w["categories"].get("unclassified", 0)
        w["fallback_share"] = w["fallback"] / classified if classified else None
    total = sum(w["replies"] for w in rows)
    classified = total - sum(w["categories"].get("unclassified", 0) for w in rows)
    fallback = sum(w["fallback"] for w in rows)
    totals: dict[str, int] = {}
    for w in rows:
        for category, n in w["categories"].items():
            totals[category] = totals.get(category, 0) + n
    return {
        "weeks": rows,
        "total": total,
        "classified": classified,
        "fallback": fallback,
        "fallback_share": fallback / classified if classified else None,
        "by_category": dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _health(conn: Connection, org_id: str, since: datetime) -> dict[str, Any]:
    orphans = insights_dal.orphan_events(conn, org_id)
    unclassified = insights_dal.unclassified_replies(conn, org_id)
    quarantine = insights_dal.quarantined(conn, org_id, since)
    return {
        "orphan_events": int(orphans["events"]),
        "oldest_orphan": orphans["oldest"],
        "unmatched_replies": int(orphans["replies"]),
        "orphans_unknown_org": int(orphans["unknown_org"]),
        "unmatched_replies_unknown_org": int(orphans["unknown_org_replies"]),
        "unclassified_replies": int(unclassified["replies"]),
        "oldest_unclassified": unclassified["oldest"],
        "quarantined": int(quarantine["events"]),
        "latest_quarantined": quarantine["latest"],
        "quarantined_unknown_org": int(quarantine["unknown_org"]),
    }


def _queue_depths() -> dict[str, Any]:
    """Messages waiting on the replies queue and its dead-letter queue, where the stack says which."""
    settings = get_settings()
    depths: dict[str, Any] = {}
    for name, url in (("replies_queue", settings.replies_queue_url), ("dead_letter_queue", settings.replies_dlq_url)):
        if not url:
            depths[name] = {"known": False, "reason": "not configured here"}
            continue
        try:
            depths[name] = {"known": True, "messages": queue.depth(url)}
        except DependencyUnavailable as exc:
            logger.warning("queue depth unavailable", extra={"queue": name, "reason": exc.details.get("reason")})
            depths[name] = {"known": False, "reason": exc.message}
    return depths


# --- drawing and publishing ----------------------------------------------------------------------


def render_html(data: dict[str, Any]) -> str:
    from flywheel.views.report_html import render

    return render(data)


def write_report(org_id: str, out: Path, *, now: datetime | None = None, days: int | None = None) -> Path:
    """`flywheel report`: the organisation's report as one HTML file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(collect(org_id, now=now, days=days)), encoding="utf-8")
    return out


def report_key(org_id: str, name: str) -> str:
    """S3 key of a report: the organisation id is quoted, so it can never reach another's folder."""
    return f"reports/{quote(org_id, safe='')}/{name}.html"


def _bucket() -> str:
    bucket = get_settings().training_bucket
    if not bucket:
        raise DependencyUnavailable("TRAINING_BUCKET is not configured")
    return bucket


def publish(org_ids: list[str] | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """ReportFunction: each organisation's report (every organisation that sent in the window when
    none is named) to reports/<org>/<date>.html and reports/<org>/latest.html. One organisation's
    failure does not stop the others; the call fails at the end so the invocation is retried."""
    now = now or datetime.now(UTC)
    bucket = _bucket()
    if org_ids is None:
        with transaction() as conn:
            org_ids = insights_dal.active_organizations(conn, now - timedelta(days=get_settings().report_window_days))
    written, failed = [], {}
    for org_id in org_ids:
        try:
            page = render_html(collect(org_id, now=now)).encode("utf-8")
            for name in (f"{now:%Y-%m-%d}", "latest"):
                storage.put_bytes(f"s3://{bucket}/{report_key(org_id, name)}", page, "text/html; charset=utf-8")
            written.append(org_id)
        except Exception as exc:  # noqa: BLE001 - reported below, and the invocation fails
            logger.exception("report failed", extra={"org_id": org_id})
            failed[org_id] = f"{type(exc).__name__}: {exc}"
    result = {"written": written, "failed": failed, "date": f"{now:%Y-%m-%d}"}
    logger.info("reports published", extra={"written": len(written), "failed": len(failed)})
    if failed:
        raise ReportFailed(f"{len(failed)} of {len(org_ids)} reports failed", **result)
    return result


def latest_url(org_id: str) -> dict[str, Any]:
    """GET /reports/latest: a short-lived link to the organisation's latest report."""
    settings = get_settings()
    uri = f"s3://{_bucket()}/{report_key(org_id, 'latest')}"
    head = storage.head(uri)
    if head is None:
        raise NotFound(f"no report yet for organisation {org_id!r}", org_id=org_id)
    return {
        "org_id": org_id,
        "url": storage.presigned_get(uri, settings.report_url_ttl_s),
        "expires_in": settings.report_url_ttl_s,
        "generated_at": head["LastModified"],
    }

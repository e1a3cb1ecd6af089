"""Champion/challenger experiments: sticky assignment and the evaluator's decision.

The decision is a pure function of a snapshot (counts per arm, days running, allocation,
planned sample): the Lambda, `POST /training/promote-winner`, `flywheel experiment evaluate`
and the simulation benchmark all call `decide`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flywheel.domain import stats
from flywheel.domain.routing import BUCKETS, arm_for, bucket, fnv1a_32  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import numpy as np

PRIMARY = "positive_reply"
# outcome windows: a unit counts for a metric only once its window has closed
WINDOWS_DAYS = {"positive_reply": 14, "meeting": 30, "close": 90, "unsubscribe": 14, "spam_report": 14,
                "bounce": 3, "negative_reply": 14}
# non-inferiority margins (absolute rate difference the challenger may not exceed)
DEFAULT_MARGINS = {"unsubscribe": 0.002, "spam_report": 0.0005, "bounce": 0.005, "negative_reply": 0.005,
                   "generation_error": 0.005}


@dataclass
class Config:
    canary_days: float = 2.0
    min_runtime_days: float = 7.0
    max_runtime_days: float = 56.0
    ab_share: float = 0.5
    srm_threshold: float = 0.001
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Config:
        raw = raw or {}
        config = cls(**{k: raw[k] for k in ("canary_days", "min_runtime_days", "max_runtime_days", "ab_share",
                                            "srm_threshold") if k in raw})
        config.margins.update(raw.get("margins", {}))
        return config


def _finite(value: Any) -> float | None:
    """JSON has no infinity: an interval with no data yet is reported as null."""
    number = float(value)
    return number if math.isfinite(number) else None


def _counts(arm: dict[str, Any], group: str, name: str) -> tuple[int, int]:
    entry = arm.get(group, {}).get(name, {})
    return int(entry.get("units", 0)), int(entry.get("conversions", entry.get("events", 0)))


def _composite(arm: dict[str, Any]) -> float | None:
    """The seed's score, reported for continuity only: 0.5·close + 0.3·meeting + 0.2·reply rate."""
    rates = {}
    for name in ("close", "meeting", PRIMARY):
        units, hits = _counts(arm, "metrics", name)
        if not units:
            return None
        rates[name] = hits / units
    return 0.5 * rates["close"] + 0.3 * rates["meeting"] + 0.2 * rates[PRIMARY]


def decide(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What to do with one experiment now: continue, advance (canary → A/B), promote, roll back,
    end as inconclusive, or hold (sample-ratio mismatch blocks every decision)."""
    config = Config.from_dict(snapshot.get("config"))
    control, treatment = snapshot["arms"]["champion"], snapshot["arms"]["challenger"]
    share = float(snapshot["allocation"])
    planned = float(snapshot.get("planned_sample") or 1)
    days, stage = float(snapshot["days_running"]), snapshot.get("stage", "ab")
    days_in_stage = float(snapshot.get("days_in_stage", days))
    result: dict[str, Any] = {"experiment_id": snapshot.get("experiment_id"), "stage": stage,
                              "days_running": days, "allocation": share}

    srm = stats.srm_p_value([int(control.get("assigned", 0)), int(treatment.get("assigned", 0))], [1 - share, share])
    result["srm_p_value"] = srm

    guardrails = {}
    for name, margin in config.margins.items():
        n_c, x_c = _counts(control, "guardrails", name)
        n_t, x_t = _counts(treatment, "guardrails", name)
        diff, var = stats.difference(x_c, n_c, x_t, n_t)
        low, high = stats.sequential_interval(diff, var, n_c + n_t, planned)
        breached = bool(n_c and n_t and float(low) > margin)
        guardrails[name] = {"difference": _finite(diff), "interval": [_finite(low), _finite(high)], "margin": margin,
                            "units": [n_c, n_t], "breached": breached}
    result["guardrails"] = guardrails

    n_c, x_c = _counts(control, "metrics", PRIMARY)
    n_t, x_t = _counts(treatment, "metrics", PRIMARY)
    lift, var = stats.relative_lift(x_c, n_c, x_t, n_t)
    fixed = stats.fixed_interval(lift, var)
    seq = stats.sequential_interval(lift, var, n_c + n_t, planned)
    result["primary"] = {"metric": PRIMARY, "units": [n_c, n_t], "conversions": [x_c, x_t],
                         "rates": [x_c / n_c if n_c else None, x_t / n_t if n_t else None], "lift": _finite(lift),
                         "fixed_interval": [_finite(fixed[0]), _finite(fixed[1])],
                         "sequential_interval": [_finite(seq[0]), _finite(seq[1])], "planned_sample": planned}
    result["secondary"] = {}
    for name in ("meeting", "close"):
        m_c, y_c = _counts(control, "metrics", name)
        m_t, y_t = _counts(treatment, "metrics", name)
        s_lift, s_var = stats.relative_lift(y_c, m_c, y_t, m_t)
        s_low, s_high = stats.fixed_interval(s_lift, s_var)
        result["secondary"][name] = {"units": [m_c, m_t], "conversions": [y_c, y_t], "lift": _finite(s_lift),
                                     "fixed_interval": [_finite(s_low), _finite(s_high)]}

    result["secondary"]["revenue_per_message"] = [
        float(arm["metrics"]["revenue"]["sum"]) / max(1, int(arm["metrics"]["revenue"]["units"]))
        if "revenue" in arm.get("metrics", {}) else None for arm in (control, treatment)]
    result["secondary"]["seed_composite_score"] = [_composite(arm) for arm in (control, treatment)]

    def verdict(action: str, reason: str) -> dict[str, Any]:
        return {**result, "action": action, "reason": reason}

    if srm < config.srm_threshold:
        return verdict("hold", f"sample ratio mismatch (p = {srm:.2g}): fix assignment before deciding")
    breaches = [name for name, g in guardrails.items() if g["breached"]]
    if breaches:
        return verdict("rollback", f"guardrail breached: {', '.join(breaches)}")
    if stage == "canary":
        if days_in_stage >= config.canary_days:
            return verdict("advance", f"canary clean for {days_in_stage:.1f} days: move to A/B at "
                                      f"{round(config.ab_share * 100)} %")
        return verdict("continue", "canary: watching guardrails")
    low, high = float(seq[0]), float(seq[1])
    outcome = int(ab_outcome(low, high, days, n_c + n_t, planned, config.min_runtime_days, config.max_runtime_days))
    if outcome == PROMOTE:
        return verdict("promote", f"{PRIMARY} lift {lift:+.1%}, always-valid interval [{low:+.1%}, {high:+.1%}] "
                                  "is above zero")
    if outcome == ROLLBACK:
        return verdict("rollback", f"{PRIMARY} lift {lift:+.1%}: always-valid interval below zero")
    if outcome == INCONCLUSIVE:
        return verdict("inconclusive", "reached the planned sample or the maximum duration without a clear "
                                       "winner: the champion stays")
    return verdict("continue", f"{n_c + n_t} of {planned:.0f} planned units")


CONTINUE, PROMOTE, ROLLBACK, INCONCLUSIVE = 0, 1, -1, 2


def ab_outcome(low: Any, high: Any, days: Any, units: Any, planned: Any, min_runtime_days: float,
               max_runtime_days: float) -> Any:
    """The A/B-stage rule on the primary metric's always-valid interval, for one experiment or
    (as arrays) many: promote above zero after the minimum runtime, roll back below zero, end as
    inconclusive at the planned sample (after the minimum runtime) or the maximum duration."""
    import numpy as np

    low, high, days, units = np.asarray(low), np.asarray(high), np.asarray(days), np.asarray(units)
    ran_enough = days >= min_runtime_days
    done = (days >= max_runtime_days) | ((units >= planned) & ran_enough)
    return np.select([ran_enough & (low > 0), high < 0, done], [PROMOTE, ROLLBACK, INCONCLUSIVE], CONTINUE)


def decide_many(primary: dict[str, np.ndarray], days: float, planned: np.ndarray, min_runtime_days: float,
                max_runtime_days: float) -> np.ndarray:
    """`decide`'s A/B rule over many experiments at once (the simulation benchmark)."""
    import numpy as np

    lift, var = stats.relative_lift(primary["x_c"], primary["n_c"], primary["x_t"], primary["n_t"])
    units = primary["n_c"] + primary["n_t"]
    low, high = stats.sequential_interval(lift, var, units, planned)
    return np.asarray(ab_outcome(low, high, days, units, planned, min_runtime_days, max_runtime_days))

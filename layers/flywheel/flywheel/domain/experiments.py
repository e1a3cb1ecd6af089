"""Champion/challenger experiments: sticky assignment, the plan, and the evaluator's decision.

The decision is a pure function of a snapshot (counts per segment and arm, days running, planned
samples): the Lambda, `POST /training/promote-winner`, `flywheel experiment evaluate` and the
simulation benchmark all go through `assess` (vectorised) and `rule`.

A *segment* is one run of a stage with one split and one salt: the canary is segment 1, the A/B
stage segment 2, and a restart (after a sample-ratio mismatch) opens a new one. Segments are never
pooled naively: each comparison is stratified by segment (`stats.stratified_rate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flywheel.domain import stats
from flywheel.domain.routing import BUCKETS, arm_for, bucket  # noqa: F401 - re-exported
from flywheel.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")  # loaded by the first statistic computed, not by GET /route

PRIMARY = "positive_reply"
# Every window is counted from the lead's first exposure (first message in the experiment); a lead
# counts for a metric only once its window has closed, and only events inside the window count.
METRIC_WINDOWS = {"positive_reply": 14, "meeting": 30, "close": 90}
GUARDRAIL_WINDOWS = {
    # early signals: windows that close inside the canary
    "bounce_1d": 1,
    "spam_report_1d": 1,
    "unsubscribe_1d": 1,
    "negative_reply_1d": 1,
    # the full windows, for non-inferiority at promotion
    "bounce": 3,
    "spam_report": 14,
    "unsubscribe": 14,
    "negative_reply": 14,
}
WINDOWS = {**METRIC_WINDOWS, **GUARDRAIL_WINDOWS}
# non-inferiority margins: the absolute rate difference (challenger − champion) the challenger may
# not exceed; an early signal gets its metric's margin
DEFAULT_MARGINS = {
    "unsubscribe": 0.002,
    "spam_report": 0.0005,
    "bounce": 0.005,
    "negative_reply": 0.005,
    "generation_error": 0.005,
}
DEFAULT_MARGINS.update(
    {f"{name}_1d": DEFAULT_MARGINS[name] for name in ("unsubscribe", "spam_report", "bounce", "negative_reply")}
)

CONTINUE, PROMOTE, ROLLBACK, INCONCLUSIVE, ADVANCE, HOLD = 0, 1, -1, 2, 3, 4
ACTIONS = {
    CONTINUE: "continue",
    PROMOTE: "promote",
    ROLLBACK: "rollback",
    INCONCLUSIVE: "inconclusive",
    ADVANCE: "advance",
    HOLD: "hold",
}


class SnapshotError(ValueError):
    """A snapshot lacks a field the decision needs, or a field has the wrong type."""


@dataclass
class Config:
    canary_min_days: float = 2.0
    min_runtime_days: float = 7.0
    max_runtime_days: float = 56.0
    ab_share: float = 0.5
    srm_threshold: float = 0.001
    alpha: float = 0.05
    power: float = 0.8
    # what the canary must catch, with `canary_power`: the early bounce rate doubling (bounces are the
    # most frequent early harm and the one that hurts the sender's domain reputation first)
    canary_metric: str = "bounce_1d"
    canary_ratio: float = 2.0
    canary_power: float = 0.95
    # a lead counts for a metric once its window has closed AND this much longer has passed, so that
    # events that arrive late still land inside it (SendGrid retries a failed webhook post for 24 h;
    # a message may be registered after it was sent): a lead once counted does not flip
    settle_hours: float = 26.0
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))

    FIELDS = (
        "canary_min_days",
        "min_runtime_days",
        "max_runtime_days",
        "ab_share",
        "srm_threshold",
        "alpha",
        "power",
        "canary_metric",
        "canary_ratio",
        "canary_power",
        "settle_hours",
    )

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Config:
        raw = raw or {}
        config = cls(**{k: raw[k] for k in cls.FIELDS if k in raw})
        config.margins.update(raw.get("margins", {}))
        return config


# --- planning ------------------------------------------------------------------------------------

# Rates used when there is too little history to measure them (the plan says so in its warnings):
# each metric over its own window from first exposure.
TYPICAL_RATES = {
    "positive_reply": 0.012,
    "bounce_1d": 0.014,
    "unsubscribe_1d": 0.002,
    "spam_report_1d": 0.0002,
    "negative_reply_1d": 0.006,
    "bounce": 0.015,
    "unsubscribe": 0.003,
    "spam_report": 0.0003,
    "negative_reply": 0.01,
}
# the evaluator looks once a day: a stage's end is acted on up to a day after its data is in
EVALUATION_INTERVAL_DAYS = 1.0
MAX_SAMPLE = 2**31 - 1  # leads; a plan beyond this is not an experiment


def _planned_guardrails(baselines: dict[str, float], config: Config) -> dict[str, tuple[float, float]]:
    """The guardrails a promotion must show non-inferior: name → (baseline rate, margin)."""
    return {
        name: (baselines[name], margin)
        for name, margin in config.margins.items()
        if name in GUARDRAIL_WINDOWS and baselines.get(name)
    }


def promotion_power(
    n: float,
    p: float,
    lift: float | None,
    guardrails: dict[str, tuple[float, float]],
    canary_sample: float,
    config: Config,
) -> float:
    """Probability that after n A/B leads the challenger is promoted when its true lift is `lift` and
    no guardrail differs: the primary's always-valid interval (tuned to n, the planned sample) above
    0, times each guardrail's (tuned to the canary's sample, as the evaluator does) upper bound below
    its margin. `lift` None: the guardrails alone. (Treating the guardrails as independent
    under-states the joint probability: the plan errs on the long side.)"""
    power = (
        1.0
        if lift is None
        else stats.sequential_power(lift, stats.lift_unit_variance(p, lift, config.ab_share), n, n, config.alpha)
    )
    for rate, margin in guardrails.values():
        power *= stats.non_inferiority_power(rate, margin, n, config.ab_share, canary_sample, config.alpha)
    return power


def promotion_sample(
    p: float, lift: float | None, guardrails: dict[str, tuple[float, float]], canary_sample: float, config: Config
) -> int | None:
    """The smallest A/B sample (leads in both arms whose windows have closed) with `promotion_power`
    ≥ config.power; None beyond MAX_SAMPLE."""
    if lift is not None and not 0 < p * (1 + lift) < 1:
        raise ValueError(f"a {lift:+.0%} lift on a {p:.2%} {PRIMARY} rate is not a rate")

    def enough(n: float) -> bool:
        return promotion_power(n, p, lift, guardrails, canary_sample, config) >= config.power

    low, high = 1, 1024
    while not enough(high):
        if high >= MAX_SAMPLE:
            return None
        low, high = high, min(high * 2, MAX_SAMPLE)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def plan(
    *,
    baselines: dict[str, float],
    mde: float,
    canary_share: float,
    weekly_volume: float | None,
    config: Config,
    source: str,
) -> dict[str, Any]:
    """What the experiment needs and whether it fits in the maximum runtime, from the traffic's real
    weekly volume and baseline rates: the canary's sample (to catch `canary_ratio` × the early
    `canary_metric` rate with `canary_power`); the A/B sample at which the planned lift is promoted
    with `power` — its primary interval above 0 AND every guardrail shown non-inferior, which at
    large lifts needs more leads than the primary; the days each stage takes (windows, the settling
    time for late events, the daily evaluation); and the smallest lift promotable within the maximum
    runtime. Raises ValueError when the lift is no rate or needs more than MAX_SAMPLE leads."""
    p = baselines[PRIMARY]
    guard = baselines[config.canary_metric]
    harmful = min(0.999, guard * config.canary_ratio)
    canary_sample = stats.sequential_sample_size(
        stats.difference_unit_variance(guard, harmful, canary_share), harmful - guard, config.alpha, config.canary_power
    )
    guardrails = _planned_guardrails(baselines, config)
    planned = promotion_sample(p, mde, guardrails, canary_sample, config)
    if planned is None or canary_sample > MAX_SAMPLE:
        raise ValueError(f"a {mde:+.0%} lift on a {p:.2%} {PRIMARY} rate needs more than {MAX_SAMPLE:,} leads")
    guardrail_sample = promotion_sample(p, None, guardrails, canary_sample, config)
    result: dict[str, Any] = {
        "source": source,
        "weekly_volume": weekly_volume,
        "baselines": baselines,
        "mde": mde,
        "split": f"{round((1 - config.ab_share) * 100)}/{round(config.ab_share * 100)}",
        "fixed_horizon_sample": stats.sample_size(p, mde, config.ab_share, config.alpha, config.power),
        "primary_sample": stats.sequential_sample_size(
            stats.lift_unit_variance(p, mde, config.ab_share), mde, config.alpha, config.power
        ),
        "guardrail_sample": guardrail_sample,
        "margins": {name: margin for name, (_, margin) in guardrails.items()},
        "sequential_sample": planned,
        "canary_sample": canary_sample,
        "canary": {
            "metric": config.canary_metric,
            "baseline": guard,
            "detects": harmful,
            "power": config.canary_power,
            "share": canary_share,
        },
        "settle_hours": config.settle_hours,
        "canary_days": None,
        "ab_days": None,
        "total_days": None,
        "fits": None,
        "mde_in_time": None,
        "max_runtime_days": config.max_runtime_days,
        "warnings": [],
    }
    if not weekly_volume:
        result["warnings"].append(
            "weekly volume unknown: cannot tell whether the planned lift is detectable in "
            f"{config.max_runtime_days:.0f} days"
        )
        return result
    daily, settle = weekly_volume / 7, config.settle_hours / 24
    window = max([METRIC_WINDOWS[PRIMARY]] + [GUARDRAIL_WINDOWS[name] for name in guardrails])
    canary_days = (
        max(config.canary_min_days, canary_sample / daily + WINDOWS[config.canary_metric] + settle)
        + EVALUATION_INTERVAL_DAYS
    )
    # the A/B leads whose windows can close (and settle) in time for the last evaluation
    room = config.max_runtime_days - canary_days - window - settle - EVALUATION_INTERVAL_DAYS

    def fits(sample: float) -> bool:
        return sample <= daily * room and config.min_runtime_days <= config.max_runtime_days

    ab_days = planned / daily + window + settle + EVALUATION_INTERVAL_DAYS
    mde_in_time = _smallest_lift(p, guardrails, canary_sample, config, fits)
    result.update(
        canary_days=round(canary_days, 1),
        ab_days=round(ab_days, 1),
        total_days=round(max(config.min_runtime_days, canary_days + ab_days), 1),
        fits=fits(planned),
        mde_in_time=None if mde_in_time is None else math.ceil(mde_in_time * 10_000) / 10_000,
    )
    if not result["fits"]:
        if mde_in_time is not None:
            smallest = f"the smallest lift promotable in time is {mde_in_time:+.0%}"
        elif guardrail_sample is not None and not fits(guardrail_sample):
            smallest = (
                f"no lift can be promoted: showing the guardrails non-inferior takes {guardrail_sample:,} A/B leads"
            )
        else:
            smallest = "no lift can be promoted"
        result["warnings"].append(
            f"the planned {mde:+.0%} lift on a {p:.2%} {PRIMARY} rate needs {planned:,} leads in the A/B stage "
            f"({ab_days:.0f} days with the {window}-day window, after a {canary_days:.0f}-day canary) at "
            f"{weekly_volume:,.0f} leads a week: beyond the {config.max_runtime_days:.0f}-day maximum; "
            f"within it {smallest}"
        )
    return result


def _smallest_lift(
    p: float, guardrails: dict[str, tuple[float, float]], canary_sample: float, config: Config, fits: Any
) -> float | None:
    """The smallest relative lift whose promotion sample fits (bisection); None when none does."""
    high = min(10.0, (1 - 1e-9) / p - 1)

    def ok(lift: float) -> bool:
        sample = promotion_sample(p, lift, guardrails, canary_sample, config)
        return sample is not None and bool(fits(sample))

    if not ok(high):
        return None
    low = 1e-4
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


# --- the decision --------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """JSON has no infinity: an interval with no data yet is reported as null."""
    number = float(value)
    return number if math.isfinite(number) else None


def _require(container: Any, key: str, where: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
    if not isinstance(container, dict) or key not in container or container[key] is None:
        raise SnapshotError(f"snapshot is missing {where}{key}")
    value = container[key]
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is not a count
        raise SnapshotError(f"snapshot field {where}{key} has the wrong type ({type(value).__name__})")
    return value


def _count(container: Any, key: str, where: str) -> float:
    value = _require(container, key, where)
    if not 0 <= value < math.inf:
        raise SnapshotError(f"snapshot field {where}{key} must be a count (0 or more), not {value!r}")
    return float(value)


def _counts(segments: list[dict[str, Any]], name: str, value: str = "conversions") -> np.ndarray:
    """(arm, [value, units], segment) → counts of one metric; a metric absent from a segment has no
    units there. A count below 0, or more conversions than units, is an error."""
    out = np.zeros((2, 2, len(segments)))
    for s, segment in enumerate(segments):
        for a, arm in enumerate(("champion", "challenger")):
            entry = segment["arms"][arm].get(name)
            if entry is None:
                continue
            where = f"segments[{s}].arms.{arm}.{name}."
            out[a, 0, s] = _count(entry, value, where)
            out[a, 1, s] = _count(entry, "units", where)
            if value == "conversions" and out[a, 0, s] > out[a, 1, s]:
                raise SnapshotError(f"snapshot field {where}conversions exceeds {where}units")
    return out


def compare(x_c: Any, n_c: Any, x_t: Any, n_t: Any, mask: Any, relative: bool) -> tuple[Any, Any, Any, Any, Any]:
    """Challenger vs champion over strata (last axis), only strata in `mask`: (estimate, variance,
    units in both arms, rate champion, rate challenger). `relative`: the lift, else the difference."""
    mask = np.asarray(mask, dtype=bool)
    n_c, n_t = np.where(mask, n_c, 0), np.where(mask, n_t, 0)
    weights = stats.stratum_weights(n_c, n_t)
    p_c = stats.stratified_rate(x_c, n_c, weights)[0]
    p_t = stats.stratified_rate(x_t, n_t, weights)[0]
    if relative:
        # no conversion yet in an arm is no proof either: its rate's variance is never below the
        # pseudo-count one (a plain binomial variance of 0 made the interval the point −100 %)
        var_c = stats.lift_rate_variance(x_c, n_c, weights)
        var_t = stats.lift_rate_variance(x_t, n_t, weights)
        estimate, var = stats.lift_from_rates(p_c, var_c, p_t, var_t)
    else:
        # the variance of a difference of (often tiny) guardrail rates, Agresti–Caffo style (one event
        # and one non-event added per arm, shared among segments by weight, so a small segment is not
        # inflated), so that no events is no proof of no difference
        var_c = stats.adjusted_variance(x_c, n_c, weights)
        var_t = stats.adjusted_variance(x_t, n_t, weights)
        estimate, var = p_t - p_c, var_c + var_t
    units = (n_c + n_t).sum(axis=-1) * (weights.sum(axis=-1) > 0)
    return estimate, np.where(units > 0, var, np.inf), units, p_c, p_t


def rule(
    *,
    canary: Any,
    harm: Any,
    non_inferior: Any,
    srm: Any,
    canary_done: Any,
    days: Any,
    primary_low: Any,
    primary_high: Any,
    units: Any,
    planned: Any,
    config: Config,
) -> Any:
    """The decision, for one experiment or (as arrays) many, in order of precedence:
    1. clear harm on any guardrail (its always-valid lower bound above 0) rolls back, at any stage,
       whatever the sample-ratio check says;
    2. canary: ends inconclusive at the maximum runtime; holds on a sample-ratio mismatch; advances
       once it has its planned sample (and its minimum days);
    3. A/B: the primary's interval below 0 rolls back; above 0 after the minimum runtime promotes,
       but only when every guardrail with data is non-inferior (upper bound below its margin) and
       the split is sound; at the maximum runtime, or at the planned sample without a winner, it
       ends inconclusive (the champion stays); a sample-ratio mismatch holds."""
    canary, harm, srm = np.asarray(canary, bool), np.asarray(harm, bool), np.asarray(srm, bool)
    days = np.asarray(days, dtype=float)
    ran_enough = days >= config.min_runtime_days
    win = ran_enough & (np.asarray(primary_low) > 0)
    out_of_time = days >= config.max_runtime_days
    done = out_of_time | ((np.asarray(units) >= np.asarray(planned)) & ran_enough & ~win)
    return np.select(
        [
            harm,
            canary & out_of_time,
            canary & srm,
            canary & np.asarray(canary_done, bool),
            canary,
            np.asarray(primary_high) < 0,
            win & np.asarray(non_inferior, bool) & ~srm,
            done,
            srm,
        ],
        [ROLLBACK, INCONCLUSIVE, HOLD, ADVANCE, CONTINUE, ROLLBACK, PROMOTE, INCONCLUSIVE, HOLD],
        CONTINUE,
    )


def assess(
    *,
    counts: dict[str, np.ndarray],
    in_primary: Any,
    canary_segment: Any,
    canary: Any,
    days: Any,
    days_in_stage: Any,
    planned: Any,
    canary_sample: Any,
    srm_p: Any,
    config: Config,
) -> dict[str, Any]:
    """Every interval and the action, vectorised. `counts[name]` has shape (..., 4, S): champion
    conversions, champion units, challenger conversions, challenger units per segment; `in_primary`
    and `canary_segment` (..., S) say which segments the primary and the canary's sample use."""
    primary = counts[PRIMARY]
    lift, var, units, p_c, p_t = compare(
        primary[..., 0, :], primary[..., 1, :], primary[..., 2, :], primary[..., 3, :], in_primary, relative=True
    )
    low, high = stats.sequential_interval(lift, var, units, planned, config.alpha)
    everywhere = np.ones(primary.shape[:-2] + primary.shape[-1:], dtype=bool)
    guardrails: dict[str, dict[str, Any]] = {}
    harm = np.zeros(np.shape(lift), dtype=bool)
    non_inferior = np.ones(np.shape(lift), dtype=bool)
    for name, margin in config.margins.items():
        if name not in counts:
            continue
        c = counts[name]
        diff, d_var, d_units, g_c, g_t = compare(
            c[..., 0, :], c[..., 1, :], c[..., 2, :], c[..., 3, :], everywhere, relative=False
        )
        g_low, g_high = stats.sequential_interval(diff, d_var, d_units, canary_sample, config.alpha)
        has_data = d_units > 0
        g_harm = has_data & (g_low > 0)
        harm |= g_harm
        non_inferior &= ~has_data | (g_high < margin)
        guardrails[name] = {
            "difference": diff,
            "interval": (g_low, g_high),
            "units": d_units,
            "rates": (g_c, g_t),
            "harm": g_harm,
            "non_inferior": ~has_data | (g_high < margin),
            "margin": margin,
        }
    early = counts.get(config.canary_metric)
    if early is None:
        canary_units = np.zeros(np.shape(lift))
    else:
        canary_units = np.where(canary_segment, early[..., 1, :] + early[..., 3, :], 0).sum(axis=-1)
    canary_done = (canary_units >= np.asarray(canary_sample)) & (np.asarray(days_in_stage) >= config.canary_min_days)
    srm = np.asarray(srm_p) < config.srm_threshold
    action = rule(
        canary=canary,
        harm=harm,
        non_inferior=non_inferior,
        srm=srm,
        canary_done=canary_done,
        days=days,
        primary_low=low,
        primary_high=high,
        units=units,
        planned=planned,
        config=config,
    )
    return {
        "action": action,
        "lift": lift,
        "variance": var,
        "interval": (low, high),
        "units": units,
        "rates": (p_c, p_t),
        "guardrails": guardrails,
        "harm": harm,
        "non_inferior": non_inferior,
        "srm": srm,
        "canary_units": canary_units,
        "canary_done": canary_done,
    }


def _composite(rates: dict[str, float | None]) -> float | None:
    """The seed's score, reported for continuity only: 0.5·close + 0.3·meeting + 0.2·reply rate."""
    if any(rates.get(k) is None for k in ("close", "meeting", PRIMARY)):
        return None
    return 0.5 * rates["close"] + 0.3 * rates["meeting"] + 0.2 * rates[PRIMARY]  # type: ignore[operator]


def validate(snapshot: Any) -> list[dict[str, Any]]:
    """The snapshot's segments, checked: a missing or mistyped field is an error, never a default."""
    if not isinstance(snapshot, dict):
        raise SnapshotError("a snapshot is a JSON object")
    stage = _require(snapshot, "stage", "", str)
    if stage not in ("canary", "ab"):
        raise SnapshotError(f"snapshot stage must be canary or ab, not {stage!r}")
    for key in ("days_running", "days_in_stage", "planned_sample", "canary_sample"):
        _count(snapshot, key, "")
    for key in ("planned_sample", "canary_sample"):
        if snapshot[key] <= 0:
            raise SnapshotError(f"snapshot field {key} must be positive")
    if not 0 < _require(snapshot, "allocation", "") < 1:
        raise SnapshotError("snapshot field allocation (the challenger's share) must be between 0 and 1")
    segments = _require(snapshot, "segments", "", list)
    if not segments:
        raise SnapshotError("snapshot has no segments")
    for s, segment in enumerate(segments):
        where = f"segments[{s}]."
        _require(segment, "segment", where, int)
        if _require(segment, "stage", where, str) not in ("canary", "ab"):
            raise SnapshotError(f"{where}stage must be canary or ab")
        assigned = _require(segment, "assigned", where, dict)
        arms = _require(segment, "arms", where, dict)
        for arm in ("champion", "challenger"):
            _require(assigned, arm, f"{where}assigned.", int)
            _count(assigned, arm, f"{where}assigned.")
            _require(_require(arms, arm, f"{where}arms.", dict), PRIMARY, f"{where}arms.{arm}.", dict)
        if "discarded" in segment and not isinstance(segment["discarded"], bool):
            raise SnapshotError(f"{where}discarded must be true or false")
    return sorted(segments, key=lambda seg: seg["segment"])


def decide(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What to do with one experiment now: continue, advance (canary → A/B), promote, roll back,
    end as inconclusive, or hold (sample-ratio mismatch: only a promotion or an advance waits)."""
    segments = validate(snapshot)
    config = Config.from_dict(snapshot.get("config"))
    stage, share = snapshot["stage"], float(snapshot["allocation"])
    days, days_in_stage = float(snapshot["days_running"]), float(snapshot["days_in_stage"])
    planned, canary_sample = float(snapshot["planned_sample"]), float(snapshot["canary_sample"])
    current = segments[-1]
    assigned = [int(current["assigned"]["champion"]), int(current["assigned"]["challenger"])]
    srm_p = stats.srm_p_value(assigned, [1 - share, share])
    names = {name for seg in segments for arm in seg["arms"].values() for name in arm} - {"revenue"}
    counts = {name: _counts(segments, name).reshape(4, -1) for name in names}
    in_primary = np.array([seg["stage"] == "ab" and not seg.get("discarded", False) for seg in segments])
    canary_segment = np.array([seg["stage"] == "canary" for seg in segments])
    result = assess(
        counts=counts,
        in_primary=in_primary,
        canary_segment=canary_segment,
        canary=stage == "canary",
        days=days,
        days_in_stage=days_in_stage,
        planned=planned,
        canary_sample=canary_sample,
        srm_p=srm_p,
        config=config,
    )
    action = ACTIONS[int(result["action"])]
    p = counts[PRIMARY]
    primary_units = [int(np.where(in_primary, p[1], 0).sum()), int(np.where(in_primary, p[3], 0).sum())]
    primary_hits = [int(np.where(in_primary, p[0], 0).sum()), int(np.where(in_primary, p[2], 0).sum())]
    lift, var = result["lift"], result["variance"]
    fixed = stats.fixed_interval(lift, var, config.alpha)
    low, high = (float(v) for v in result["interval"])
    out: dict[str, Any] = {
        "experiment_id": snapshot.get("experiment_id"),
        "stage": stage,
        "segment": current["segment"],
        "days_running": days,
        "days_in_stage": days_in_stage,
        "allocation": share,
        "srm_p_value": srm_p,
        "srm": {
            "p_value": srm_p,
            "alarm": bool(result["srm"]),
            "threshold": config.srm_threshold,
            "segment": current["segment"],
            "assigned": assigned,
            "expected_share": share,
        },
        "primary": {
            "metric": PRIMARY,
            "window_days": METRIC_WINDOWS[PRIMARY],
            "units": primary_units,
            "conversions": primary_hits,
            "rates": [_finite(r) if u else None for r, u in zip(result["rates"], primary_units, strict=True)],
            "lift": _finite(lift),
            "fixed_interval": [_finite(fixed[0]), _finite(fixed[1])],
            "sequential_interval": [_finite(low), _finite(high)],
            "planned_sample": int(planned),
            "segments": [seg["segment"] for seg, used in zip(segments, in_primary, strict=True) if used],
        },
        "canary": {
            "units": int(result["canary_units"]),
            "planned_sample": int(canary_sample),
            "metric": config.canary_metric,
            "complete": bool(result["canary_done"]),
        },
    }
    out["guardrails"] = {
        name: {
            "window_days": WINDOWS.get(name),
            "difference": _finite(g["difference"]),
            "interval": [_finite(g["interval"][0]), _finite(g["interval"][1])],
            "margin": g["margin"],
            "units": int(g["units"]),
            "rates": [_finite(r) for r in g["rates"]],
            "harm": bool(g["harm"]),
            "non_inferior": bool(g["non_inferior"]),
        }
        for name, g in result["guardrails"].items()
    }
    secondary: dict[str, Any] = {}
    rates: dict[str, list[float | None]] = {PRIMARY: out["primary"]["rates"]}
    for name in ("meeting", "close"):
        if name not in counts:
            continue
        c = counts[name]
        s_lift, s_var, s_units, s_c, s_t = compare(c[0], c[1], c[2], c[3], np.ones(len(segments), bool), True)
        s_low, s_high = stats.fixed_interval(s_lift, s_var, config.alpha)
        rates[name] = [_finite(s_c) if s_units else None, _finite(s_t) if s_units else None]
        secondary[name] = {
            "window_days": METRIC_WINDOWS[name],
            "units": int(s_units),
            "rates": rates[name],
            "lift": _finite(s_lift),
            "fixed_interval": [_finite(s_low), _finite(s_high)],
        }
    revenue = _counts(segments, "revenue", "sum").sum(axis=-1)
    secondary["revenue_per_message"] = [float(revenue[a, 0] / revenue[a, 1]) if revenue[a, 1] else None for a in (0, 1)]
    secondary["seed_composite_score"] = [_composite({k: v[a] for k, v in rates.items()}) for a in (0, 1)]
    out["secondary"] = secondary
    out["action"], out["reason"] = action, _reason(action, out, config)
    return out


def _reason(action: str, out: dict[str, Any], config: Config) -> str:
    primary, guardrails = out["primary"], out["guardrails"]
    low, high = primary["sequential_interval"]
    interval = "no data yet" if low is None else f"[{low:+.1%}, {high:+.1%}]"
    harmed = [n for n, g in guardrails.items() if g["harm"]]
    not_ni = [n for n, g in guardrails.items() if not g["non_inferior"]]
    srm = out["srm"]
    if action == "rollback" and harmed:
        worst = guardrails[harmed[0]]
        return (
            f"clear harm on {', '.join(harmed)}: {harmed[0]} {worst['difference']:+.2%} (always-valid interval "
            f"[{worst['interval'][0]:+.2%}, {worst['interval'][1]:+.2%}] above 0)"
        )
    if action == "rollback":
        return f"{PRIMARY} lift {primary['lift']:+.1%}: always-valid interval {interval} is below zero"
    if action == "promote":
        return (
            f"{PRIMARY} lift {primary['lift']:+.1%}, always-valid interval {interval} is above zero, and every "
            "guardrail with data is non-inferior"
        )
    if action == "advance":
        return (
            f"canary clean with {out['canary']['units']:,} of {out['canary']['planned_sample']:,} planned units: "
            f"move to A/B at {round(config.ab_share * 100)} %"
        )
    if action == "hold":
        return (
            f"sample ratio mismatch in segment {srm['segment']} (p = {srm['p_value']:.2g}, assigned "
            f"{srm['assigned']}): no promotion or advance until the stage is restarted with a new salt"
        )
    if action == "inconclusive":
        return (
            "reached the planned sample or the maximum duration without a clear winner"
            + (f" (not shown non-inferior: {', '.join(not_ni)})" if not_ni else "")
            + ": the champion stays"
        )
    if out["stage"] == "canary":
        return f"canary: {out['canary']['units']:,} of {out['canary']['planned_sample']:,} units, watching guardrails"
    waiting = f"; not yet shown non-inferior: {', '.join(not_ni)}" if not_ni else ""
    return f"{sum(primary['units']):,} of {primary['planned_sample']:,} planned units, interval {interval}{waiting}"

"""Simulated experiments on the production path, side by side with the seed's rule.

Ours: the production `Config` (56-day cap, canary at 10 % then A/B at 50/50, minimum runtime,
evaluated every day), planned by the same planner the deploy uses from the traffic's volume and
rates, and decided by the same vectorised code the evaluator calls (`domain.experiments.assess`):
windows counted from each lead's first exposure (a daily cohort counts for a metric only once its
window has closed and the settling time for late events has passed), early-signal guardrails with
1-day windows, full-window guardrails, segments stratified, the sample-ratio check on the current
segment. Power is measured at the planned +20 % lift AND at the smallest lift the planner says is
promotable in time at each volume (planned for that lift): wherever the planner says "fits".
The seed's rule: a challenger at 10 % for a week, promoted if its composite score
(0.5 close + 0.3 meeting + 0.2 reply rate) is 5 % higher — and it even sees every outcome at once.

Rates per lead (over each metric's full window): reply 3 %, positive reply 1.2 % (the primary),
meeting 1 %, close 0.3 %, bounce 1.5 % (93 % of them within a day), unsubscribe 0.3 %, spam report
0.03 %, negative reply 1 % (60 % of those within a day).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from _harness import progress, timed

from flywheel.domain import experiments as ex
from flywheel.domain import stats

EXPERIMENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000  # per scenario and volume
VOLUMES = (10_000, 20_000, 50_000, 100_000)  # leads a week
PLANNED_LIFT = 0.20
CANARY_SHARE = 0.10
REPLY, MEETING, CLOSE = 0.03, 0.01, 0.003
PRIMARY_RATE = 0.012
GUARDRAILS = {"bounce": 0.015, "unsubscribe": 0.003, "spam_report": 0.0003, "negative_reply": 0.01}
EARLY_SHARE = {"bounce": 0.93, "unsubscribe": 0.6, "spam_report": 0.6, "negative_reply": 0.6}
# name: (primary factor, guardrail factors)
SCENARIOS = {
    "no effect": (1.0, {}),
    "5% worse": (0.95, {}),
    "planned lift": (1 + PLANNED_LIFT, {}),
    "harmful": (1.0, {"unsubscribe": 3.0, "bounce": 2.0}),
    # the issue's own example: +0.30 pp unsubscribes against a 0.2 pp margin
    "wins, breaches": (1 + PLANNED_LIFT, {"unsubscribe": 2.0}),
}
SMALLEST = "smallest in time"  # per volume: the planner's smallest promotable lift, planned for it
CONFIG = ex.Config()  # production settings


def planned(volume: int, lift: float = PLANNED_LIFT) -> dict:
    baselines = {
        **ex.TYPICAL_RATES,
        ex.PRIMARY: PRIMARY_RATE,
        **GUARDRAILS,
        **{f"{g}_1d": rate * EARLY_SHARE[g] for g, rate in GUARDRAILS.items()},
    }
    return ex.plan(
        baselines=baselines,
        mde=lift,
        canary_share=CANARY_SHARE,
        weekly_volume=volume,
        config=CONFIG,
        source="simulation",
    )


def seed_rule(rng: np.random.Generator, weekly: int, factor: float, n: int) -> np.ndarray:
    """After one week at 10 %, promote when 0.5 close + 0.3 meeting + 0.2 reply is > 5 % higher."""
    n_c, n_t = round(weekly * 0.9), round(weekly * 0.1)

    def score(units: int, f: float) -> np.ndarray:
        return (
            0.5 * rng.binomial(units, CLOSE * f, n)
            + 0.3 * rng.binomial(units, MEETING * f, n)
            + 0.2 * rng.binomial(units, min(1.0, REPLY * f), n)
        ) / units

    return score(n_t, factor) > 1.05 * score(n_c, 1.0)


def ours(
    rng: np.random.Generator, weekly: int, factor: float, harm: dict[str, float], plan: dict, n: int
) -> dict[str, np.ndarray]:
    """n experiments evaluated daily until each ends or the maximum runtime; returns the final action,
    the stage it ended in and the day it ended."""
    days = int(CONFIG.max_runtime_days)
    names = [ex.PRIMARY] + [g for g in GUARDRAILS] + [f"{g}_1d" for g in GUARDRAILS]
    windows = {name: ex.WINDOWS[name] for name in names}
    # per metric: per cohort day and arm, [conversions, units] — added to its segment when it matures
    cohorts = {name: np.zeros((n, days, 2, 2)) for name in names}
    totals = {name: np.zeros((n, 4, 2)) for name in names}  # (x_c, n_c, x_t, n_t) × segment
    segment_of_day = np.zeros((n, days), dtype=int)
    assigned = np.zeros((n, 2, 2))  # segment × arm
    settle = CONFIG.settle_hours / 24
    segment = np.zeros(n, dtype=int)  # 0 canary, 1 A/B
    stage_start = np.zeros(n)
    action = np.full(n, ex.CONTINUE)
    ended_stage = np.full(n, -1)
    ended_day = np.full(n, days)
    running = np.ones(n, dtype=bool)
    for day in range(days):
        share = np.where(segment == 0, CANARY_SHARE, CONFIG.ab_share)
        leads = rng.poisson(weekly / 7, n)
        n_t = rng.binomial(leads, share)
        n_c = leads - n_t
        segment_of_day[:, day] = segment
        assigned[np.arange(n), segment, 0] += n_c
        assigned[np.arange(n), segment, 1] += n_t
        for arm, units, f_primary in ((0, n_c, 1.0), (1, n_t, factor)):
            cohorts[ex.PRIMARY][:, day, arm] = np.stack([rng.binomial(units, PRIMARY_RATE * f_primary), units], -1)
            for g, rate in GUARDRAILS.items():
                full = rng.binomial(units, min(1.0, rate * (harm.get(g, 1.0) if arm else 1.0)))
                cohorts[g][:, day, arm] = np.stack([full, units], -1)
                cohorts[f"{g}_1d"][:, day, arm] = np.stack([rng.binomial(full, EARLY_SHARE[g]), units], -1)
        now = day + 1  # evaluated at the end of the day
        for name, window in windows.items():
            # the cohort whose last lead's window (and the settling time after it) has just passed
            matured = math.floor(now - 1 - window - settle)
            if matured < 0:
                continue
            seg = segment_of_day[:, matured]
            rows = np.arange(n)
            for arm in (0, 1):
                totals[name][rows, 2 * arm, seg] += cohorts[name][:, matured, arm, 0]
                totals[name][rows, 2 * arm + 1, seg] += cohorts[name][:, matured, arm, 1]
        current = assigned[np.arange(n), segment]
        srm_p = stats.srm_p_values(current[:, 0], current[:, 1], share)
        result = ex.assess(
            counts=totals,
            in_primary=np.array([False, True]),
            canary_segment=np.array([True, False]),
            canary=segment == 0,
            days=float(now),
            days_in_stage=now - stage_start,
            planned=float(plan["sequential_sample"]),
            canary_sample=float(plan["canary_sample"]),
            srm_p=srm_p,
            config=CONFIG,
        )
        decided = result["action"]
        advance = running & (decided == ex.ADVANCE)
        segment[advance] = 1
        stage_start[advance] = now
        final = running & np.isin(decided, (ex.PROMOTE, ex.ROLLBACK, ex.INCONCLUSIVE))
        action[final] = decided[final]
        ended_stage[final] = segment[final]
        ended_day[final] = now
        running &= ~final
        if not running.any():
            break
    return {"action": action, "stage": ended_stage, "day": ended_day}


def main() -> None:
    rng = np.random.default_rng(20261127)
    table: dict[tuple[int, str], dict] = {}
    plans = {v: planned(v) for v in VOLUMES}
    # the planner's smallest promotable lift at each volume, planned for that lift
    smallest = {v: planned(v, plans[v]["mde_in_time"]) for v in VOLUMES if plans[v]["mde_in_time"] is not None}

    def cell(volume: int, factor: float, harm: dict[str, float], plan: dict) -> dict:
        result = ours(rng, volume, factor, harm, plan, EXPERIMENTS)
        return {
            "fits": bool(plan["fits"]),
            "promoted": float(np.mean(result["action"] == ex.PROMOTE)),
            "rolled back in canary": float(np.mean((result["action"] == ex.ROLLBACK) & (result["stage"] == 0))),
            "rolled back in A/B": float(np.mean((result["action"] == ex.ROLLBACK) & (result["stage"] == 1))),
            "inconclusive": float(np.mean(result["action"] == ex.INCONCLUSIVE)),
            "median day": float(np.median(result["day"])),
            "seed promoted": float(np.mean(seed_rule(rng, volume, factor, EXPERIMENTS))),
        }

    def run_all() -> None:
        for volume in VOLUMES:
            progress(f"{volume:,} leads a week: {len(SCENARIOS)} scenarios x {EXPERIMENTS:,} experiments")
            for name, (factor, harm) in SCENARIOS.items():
                table[(volume, name)] = cell(volume, factor, harm, plans[volume])
            if volume in smallest:
                table[(volume, SMALLEST)] = cell(volume, 1 + smallest[volume]["mde"], {}, smallest[volume])

    seconds = timed(run_all)
    print(
        f"{EXPERIMENTS} simulated experiments per scenario and volume, production Config (canary at "
        f"{CANARY_SHARE:.0%} then {CONFIG.ab_share:.0%}, {CONFIG.max_runtime_days:.0f}-day cap, daily evaluation, "
        f"{CONFIG.settle_hours:g} h settling), positive reply {PRIMARY_RATE:.1%}, planned lift {PLANNED_LIFT:+.0%}; "
        f"{seconds:.0f} s"
    )
    for volume in VOLUMES:
        p = plans[volume]
        mde = "none" if p["mde_in_time"] is None else f"{p['mde_in_time']:+.1%}"
        print(
            f"\n{volume:>7,} leads/week: canary {p['canary_days']} days ({p['canary_sample']:,} leads), "
            f"A/B sample {p['sequential_sample']:,} ({p['ab_days']} days; primary alone {p['primary_sample']:,}, "
            f"guardrails alone {p['guardrail_sample']:,}); planned lift "
            f"{'fits' if p['fits'] else 'does NOT fit'} in {CONFIG.max_runtime_days:.0f} days; "
            f"smallest lift promotable in time {mde}"
        )
        print(
            f"  {'scenario':24s} {'promoted':>9s} {'rb canary':>10s} {'rb A/B':>8s} {'inconcl.':>9s} "
            f"{'median day':>11s} {'seed promoted':>14s}"
        )
        for name in [*SCENARIOS, SMALLEST]:
            if (volume, name) not in table:
                continue
            r = table[(volume, name)]
            label = f"{name} {smallest[volume]['mde']:+.1%}" if name == SMALLEST else name
            print(
                f"  {label:24s} {r['promoted']:9.3f} {r['rolled back in canary']:10.3f} "
                f"{r['rolled back in A/B']:8.3f} {r['inconclusive']:9.3f} {r['median day']:11.0f} "
                f"{r['seed promoted']:14.3f}"
            )

    def mean(name: str, key: str) -> float:
        return float(np.mean([table[(v, name)][key] for v in VOLUMES]))

    fit = [r for (v, name), r in table.items() if name in ("planned lift", SMALLEST) and r["fits"]]
    misfit = [r for (v, name), r in table.items() if name in ("planned lift", SMALLEST) and not r["fits"]]
    power = (float(np.mean([r["promoted"] for r in fit])), float(np.mean([r["seed promoted"] for r in fit])))
    lowest = min(r["promoted"] for r in fit)
    print(
        f"\npower where the planner says the lift fits ({len(fit)} volume × lift cells: the planned +20 % and "
        f"the smallest promotable lift): {power[0]:.3f}, lowest cell {lowest:.3f}; where it does not: "
        f"{np.mean([r['promoted'] for r in misfit]) if misfit else float('nan'):.3f}"
    )
    false_alarms = mean("no effect", "rolled back in canary") + mean("no effect", "rolled back in A/B")
    harmful_lowest = min(table[(v, "harmful")]["rolled back in canary"] for v in VOLUMES)
    print(
        f"harmless challengers rolled back (false alarms): {false_alarms:.3f}; "
        f"harmful rolled back in canary, lowest volume cell: {harmful_lowest:.3f}"
    )
    no, worse = (
        (mean("no effect", "promoted"), mean("no effect", "seed promoted")),
        (mean("5% worse", "promoted"), mean("5% worse", "seed promoted")),
    )
    print(
        f"no-effect promotions: ours={no[0]:.3f} seed={no[1]:.3f}; "
        f"worse-model promotions: ours={worse[0]:.3f} seed={worse[1]:.3f}; "
        f"harmful rolled back in canary: ours={mean('harmful', 'rolled back in canary'):.3f}; "
        f"guardrail-breaching winner promoted: ours={mean('wins, breaches', 'promoted'):.3f}; "
        f"power where planned to fit: ours={power[0]:.3f} seed={power[1]:.3f}"
    )


if __name__ == "__main__":
    main()

"""2,000+ simulated experiments per scenario, evaluated daily, with realistic rates and volumes:
the seed's rule (10 % for a week, promote if the composite score is 5 % higher) against ours
(canary, then 50/50 with an always-valid interval, windows, minimum runtime), side by side."""

from __future__ import annotations

import numpy as np
from _harness import progress, timed

from flywheel.domain import stats
from flywheel.domain.experiments import decide_many

EXPERIMENTS = 2000
REPLY, MEETING, CLOSE = 0.03, 0.01, 0.005  # the primary metric is the 14-day (positive) reply rate
PLANNED_LIFT = 0.10
WINDOW_DAYS, CANARY_DAYS, MIN_DAYS, MAX_DAYS = 14, 2, 7, 210


def seed_rule(rng: np.random.Generator, weekly: np.ndarray, lift: float) -> np.ndarray:
    """After one week at 10 %, promote when score = 0.5 close + 0.3 meeting + 0.2 reply is > 5 % higher.
    (It even sees every outcome at once; in reality deals have not closed after a week.)"""
    n_c, n_t = np.round(weekly * 0.9), np.round(weekly * 0.1)

    def score(n: np.ndarray, factor: float) -> np.ndarray:
        return (0.5 * rng.binomial(n.astype(int), CLOSE * factor) + 0.3 * rng.binomial(n.astype(int), MEETING * factor)
                + 0.2 * rng.binomial(n.astype(int), REPLY * factor)) / n

    return score(n_t, 1 + lift) > 1.05 * score(n_c, 1.0)


def our_rule(rng: np.random.Generator, weekly: np.ndarray, lift: float, planned: float) -> np.ndarray:
    """Daily evaluation of the A/B stage (after the canary); a lead counts once its window has closed."""
    daily_per_arm = weekly / 7 * stats.plan(REPLY, PLANNED_LIFT, 0.5).share_treatment
    n_c = np.zeros(len(weekly))
    n_t, x_c, x_t = n_c.copy(), n_c.copy(), n_c.copy()
    decision = np.zeros(len(weekly), dtype=int)
    planned_arr = np.full(len(weekly), planned)
    for day in range(CANARY_DAYS + 1, MAX_DAYS + 1):
        if day - CANARY_DAYS > WINDOW_DAYS:  # a new day of A/B leads has matured
            new = np.round(daily_per_arm).astype(int)
            n_c += new
            n_t += new
            x_c += rng.binomial(new, REPLY)
            x_t += rng.binomial(new, REPLY * (1 + lift))
        running = decision == 0
        if not running.any():
            break
        if day - CANARY_DAYS <= WINDOW_DAYS:
            continue
        now = decide_many({"n_c": n_c[running], "x_c": x_c[running], "n_t": n_t[running], "x_t": x_t[running]},
                          float(day), planned_arr[running], MIN_DAYS, MAX_DAYS)
        decision[running] = now
    return decision == 1


def main() -> None:
    rng = np.random.default_rng(20261127)
    planned = float(stats.plan(REPLY, PLANNED_LIFT, 0.5).sequential_n)
    results = {}

    def run_all() -> None:
        for name, lift in (("no effect", 0.0), ("5% worse", -0.05), ("planned lift", PLANNED_LIFT)):
            progress(f"simulating {EXPERIMENTS:,} experiments: {name}")
            weekly = rng.uniform(10_000, 100_000, EXPERIMENTS)
            results[name] = (seed_rule(rng, weekly, lift).mean(), our_rule(rng, weekly, lift, planned).mean())

    seconds = timed(run_all)
    print(f"{EXPERIMENTS} experiments per scenario, reply {REPLY:.0%} / meeting {MEETING:.0%} / close {CLOSE:.1%}, "
          f"10k-100k messages a week, planned lift {PLANNED_LIFT:.0%} (sequential sample {planned:,.0f}), "
          f"{seconds:.1f} s")
    for name, (seed, ours) in results.items():
        print(f"  {name:13s} promoted: seed {seed:6.1%}   ours {ours:6.1%}")
    no, worse, power = results["no effect"], results["5% worse"], results["planned lift"]
    print(f"no-effect promotions: ours={no[1]:.3f} seed={no[0]:.3f}; "
          f"worse-model promotions: ours={worse[1]:.3f} seed={worse[0]:.3f}; power: ours={power[1]:.3f}")


if __name__ == "__main__":
    main()

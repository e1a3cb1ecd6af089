"""Experiment statistics: relative lift with delta-method variance, fixed-horizon and always-valid
(sequential) intervals, sample-ratio-mismatch check, power and sample-size planning, Wilson intervals.
NumPy and the standard library only, to keep the Lambda layer small.

Everything works on plain counts and also on numpy arrays (the simulation benchmark evaluates
thousands of experiments at once with the same functions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

Z_95 = 1.959963984540054
_NORMAL = NormalDist()


def relative_lift(conv_c: Any, n_c: Any, conv_t: Any, n_t: Any) -> tuple[Any, Any]:
    """Relative lift pT/pC − 1 and its delta-method variance.

    Var(pT/pC) ≈ (pT/pC)² · (Var(pT)/pT² + Var(pC)/pC²), with Var(p) = p(1 − p)/n."""
    p_c = np.asarray(conv_c, dtype=float) / np.maximum(n_c, 1)
    p_t = np.asarray(conv_t, dtype=float) / np.maximum(n_t, 1)
    safe_c = np.where(p_c > 0, p_c, np.nan)
    ratio = p_t / safe_c
    var = ratio**2 * (p_t * (1 - p_t) / np.maximum(n_t, 1) / np.where(p_t > 0, p_t, np.nan) ** 2
                      + p_c * (1 - p_c) / np.maximum(n_c, 1) / safe_c**2)
    # no conversions in an arm: the ratio is undefined; report no information
    return np.nan_to_num(ratio - 1, nan=0.0), np.nan_to_num(var, nan=np.inf)


def difference(conv_c: Any, n_c: Any, conv_t: Any, n_t: Any) -> tuple[Any, Any]:
    """Absolute difference pT − pC and its variance (for guardrails, whose rates can be 0)."""
    p_c = np.asarray(conv_c, dtype=float) / np.maximum(n_c, 1)
    p_t = np.asarray(conv_t, dtype=float) / np.maximum(n_t, 1)
    var = p_t * (1 - p_t) / np.maximum(n_t, 1) + p_c * (1 - p_c) / np.maximum(n_c, 1)
    return p_t - p_c, var


def fixed_interval(estimate: Any, variance: Any, alpha: float = 0.05) -> tuple[Any, Any]:
    half = _NORMAL.inv_cdf(1 - alpha / 2) * np.sqrt(variance)
    return estimate - half, estimate + half


def sequential_interval(estimate: Any, variance: Any, n: Any, planned_n: Any,
                        alpha: float = 0.05) -> tuple[Any, Any]:
    """An always-valid confidence sequence (asymptotic, normal mixture), as GrowthBook uses:
    safe to look at every day. ρ is tuned so the interval is tightest at the planned sample size."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / np.maximum(planned_n, 1.0)
    sigma2 = np.asarray(variance, dtype=float) * n  # per-unit variance of the estimator
    half = np.sqrt(sigma2) * np.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    return estimate - half, estimate + half


def srm_p_value(counts: list[int], allocation: list[float]) -> float:
    """Pearson χ² test of the observed arm sizes against the intended allocation."""
    total = sum(counts)
    if total == 0:
        return 1.0
    expected = [total * a for a in allocation]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True) if e > 0)
    if len(counts) != 2:
        raise ValueError("the SRM check compares two arms")
    # the χ² survival function with one degree of freedom (no SciPy needed in the Lambda layer)
    return math.erfc(math.sqrt(chi2 / 2))


def sample_size(baseline: float, mde: float, share_treatment: float, alpha: float = 0.05,
                power: float = 0.8) -> int:
    """Total units for a two-proportion test of a relative lift `mde` on `baseline`.

    N ≈ (z₁₋α/₂ + z_power)² · ((1 − p)/p) · (1/κ_C + 1/κ_T) / δ²; the constant is 7.85 at α = 0.05
    and 80 % power."""
    k = (_NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)) ** 2
    share_control = 1 - share_treatment
    n = k * ((1 - baseline) / baseline) * (1 / share_control + 1 / share_treatment) / mde**2
    return math.ceil(n)


# An always-valid interval is wider than a fixed-horizon one at the same n: to keep 80 % power at
# the planned lift, plan this many times the fixed-horizon sample (bench/experiments.py measures
# 84 % power at 2.0 for a 10 % lift on a 3 % rate; 1.8 gave 75 %).
SEQUENTIAL_INFLATION = 2.0


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def proportion(successes: int, n: int) -> dict[str, Any]:
    """A rate with its 95 % Wilson interval and its sample size, as every report shows it."""
    low, high = wilson_interval(int(successes), int(n))
    return {"rate": successes / n if n else None, "interval": [low, high], "n": int(n)}


@dataclass(frozen=True)
class Plan:
    baseline: float
    mde: float
    share_treatment: float
    fixed_horizon_n: int
    sequential_n: int
    weekly_volume: int | None

    @property
    def weeks(self) -> float | None:
        return None if not self.weekly_volume else self.sequential_n / self.weekly_volume

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "mde": self.mde, "split": f"{round((1 - self.share_treatment) * 100)}/"
                f"{round(self.share_treatment * 100)}", "fixed_horizon_sample": self.fixed_horizon_n,
                "sequential_sample": self.sequential_n, "weekly_volume": self.weekly_volume,
                "weeks": None if self.weeks is None else round(self.weeks, 1)}


def plan(baseline: float, mde: float, share_treatment: float, weekly_volume: int | None = None) -> Plan:
    fixed = sample_size(baseline, mde, share_treatment)
    return Plan(baseline, mde, share_treatment, fixed, math.ceil(fixed * SEQUENTIAL_INFLATION), weekly_volume)

"""Experiment statistics: relative lift with delta-method variance, stratified rates, fixed-horizon
and always-valid (sequential) intervals, sample-ratio-mismatch check, sample-size planning for the
estimator actually tested, Wilson intervals. NumPy and the standard library only, to keep the Lambda
layer small.

Everything works on plain counts and also on numpy arrays (the simulation benchmark evaluates
thousands of experiments at once with the same functions).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from flywheel.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")  # loaded by the first statistic computed, not by GET /route

Z_95 = 1.959963984540054
_NORMAL = NormalDist()
ALPHA = 0.05


def z(p: float) -> float:
    return _NORMAL.inv_cdf(p)


def stratified_rate(conversions: Any, units: Any, weights: Any) -> tuple[Any, Any]:
    """One arm's rate over strata (stages with different splits), each stratum weighted by
    `weights` (normalised here), and its variance Σ w² p(1 − p)/n. The last axis is the stratum.
    A stratum where this arm has no units gets no weight (the caller zeroes it for both arms)."""
    x = np.asarray(conversions, dtype=float)
    n = np.asarray(units, dtype=float)
    w = np.asarray(weights, dtype=float)
    total = w.sum(axis=-1)
    w = np.where(total[..., None] > 0, w / np.where(total > 0, total, 1.0)[..., None], 0.0)
    p = x / np.maximum(n, 1.0)
    rate = (w * p).sum(axis=-1)
    var = (w**2 * p * (1 - p) / np.maximum(n, 1.0)).sum(axis=-1)
    return rate, var


def adjusted_variance(conversions: Any, units: Any, weights: Any) -> Any:
    """The variance of one arm's stratified rate with one event and one non-event added to the arm
    (Agresti–Caffo style), shared among strata by weight so that a small stratum is not inflated:
    with no events (or only events) it is not 0, so that no events is no proof of no difference."""
    w = np.asarray(weights, dtype=float)
    share = w / np.maximum(w.sum(axis=-1, keepdims=True), 1e-12)
    x, n = np.asarray(conversions, dtype=float), np.asarray(units, dtype=float)
    return stratified_rate(x + share, n + 2 * share, w)[1]


def lift_rate_variance(conversions: Any, units: Any, weights: Any) -> Any:
    """The variance of one arm's stratified rate as the relative lift uses it: the larger of the
    plain binomial variance and the pseudo-count one (`adjusted_variance`). The plain one is 0 for
    an arm with no conversion yet, which made the lift's interval the single point −100 % (one
    reply against none "proved" harm); taking the larger never narrows an interval."""
    plain = stratified_rate(conversions, units, weights)[1]
    return np.maximum(plain, adjusted_variance(conversions, units, weights))


def stratum_weights(n_c: Any, n_t: Any) -> Any:
    """Weights of strata for a comparison: each stratum's share of the units it holds in both arms;
    a stratum with no units in one arm cannot compare the arms and gets none."""
    n_c, n_t = np.asarray(n_c, dtype=float), np.asarray(n_t, dtype=float)
    return np.where((n_c > 0) & (n_t > 0), n_c + n_t, 0.0)


def lift_from_rates(p_c: Any, var_c: Any, p_t: Any, var_t: Any) -> tuple[Any, Any]:
    """Relative lift pT/pC − 1 and its delta-method variance (pT/pC)² · (Var pT/pT² + Var pC/pC²)
    = Var pT/pC² + pT² Var pC/pC⁴ (written this way it stays defined when pT = 0). With pT = 0 it
    is Var pT/pC²: pass a Var pT that is not 0 there (`lift_rate_variance`)."""
    p_c, p_t = np.asarray(p_c, dtype=float), np.asarray(p_t, dtype=float)
    safe_c = np.where(p_c > 0, p_c, np.nan)
    ratio = p_t / safe_c
    var = np.asarray(var_t, dtype=float) / safe_c**2 + p_t**2 * np.asarray(var_c, dtype=float) / safe_c**4
    # no conversions in the control arm: the ratio is undefined; report no information
    return np.nan_to_num(ratio - 1, nan=0.0), np.nan_to_num(var, nan=np.inf)


def relative_lift(conv_c: Any, n_c: Any, conv_t: Any, n_t: Any) -> tuple[Any, Any]:
    """Relative lift of one stratum's counts (see `lift_from_rates`; each arm's variance from
    `lift_rate_variance`, as the evaluator computes it)."""
    x_c, x_t = np.asarray(conv_c, dtype=float)[..., None], np.asarray(conv_t, dtype=float)[..., None]
    u_c, u_t = np.asarray(n_c, dtype=float)[..., None], np.asarray(n_t, dtype=float)[..., None]
    one = np.ones_like(u_c + u_t)
    p_c, p_t = stratified_rate(x_c, u_c, one)[0], stratified_rate(x_t, u_t, one)[0]
    lift, var = lift_from_rates(p_c, lift_rate_variance(x_c, u_c, one), p_t, lift_rate_variance(x_t, u_t, one))
    no_data = (np.asarray(n_c) == 0) | (np.asarray(n_t) == 0)
    return np.where(no_data, 0.0, lift), np.where(no_data, np.inf, var)


def difference(conv_c: Any, n_c: Any, conv_t: Any, n_t: Any) -> tuple[Any, Any]:
    """Absolute difference pT − pC and its variance (for guardrails, whose rates can be 0)."""
    p_c = np.asarray(conv_c, dtype=float) / np.maximum(n_c, 1)
    p_t = np.asarray(conv_t, dtype=float) / np.maximum(n_t, 1)
    var = p_t * (1 - p_t) / np.maximum(n_t, 1) + p_c * (1 - p_c) / np.maximum(n_c, 1)
    return p_t - p_c, var


def fixed_interval(estimate: Any, variance: Any, alpha: float = ALPHA) -> tuple[Any, Any]:
    half = z(1 - alpha / 2) * np.sqrt(variance)
    return estimate - half, estimate + half


def _rho_n(alpha: float) -> float:
    """n·ρ² at the planned sample: GrowthBook's tuning of the normal mixture to the planned n."""
    return -2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)


def sequential_multiplier(n: Any, planned_n: Any, alpha: float = ALPHA) -> Any:
    """Half-width of the always-valid interval in standard errors (σ/√n) after n units, for a
    normal mixture tuned to `planned_n` (3.03 at the planned sample for α = 0.05, against 1.96 for
    a fixed-horizon interval)."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    x = n * _rho_n(alpha) / np.maximum(np.asarray(planned_n, dtype=float), 1.0)
    return np.sqrt(2 * (x + 1) / x * np.log(np.sqrt(x + 1) / alpha))


def sequential_interval(estimate: Any, variance: Any, n: Any, planned_n: Any, alpha: float = ALPHA) -> tuple[Any, Any]:
    """An always-valid confidence sequence (asymptotic, normal mixture), as GrowthBook uses: safe to
    look at every day. `variance` is the estimator's variance after n units."""
    half = sequential_multiplier(n, planned_n, alpha) * np.sqrt(np.asarray(variance, dtype=float))
    return estimate - half, estimate + half


def srm_p_value(counts: list[int], allocation: list[float]) -> float:
    """Pearson χ² test of the observed arm sizes against the intended allocation."""
    if len(counts) != 2:
        raise ValueError("the SRM check compares two arms")
    total = sum(counts)
    if total == 0:
        return 1.0
    expected = [total * a for a in allocation]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True) if e > 0)
    # the χ² survival function with one degree of freedom (no SciPy needed in the Lambda layer)
    return math.erfc(math.sqrt(chi2 / 2))


def srm_p_values(n_c: Any, n_t: Any, share_t: Any) -> Any:
    """`srm_p_value` over arrays (the simulation)."""
    n_c, n_t = np.asarray(n_c, dtype=float), np.asarray(n_t, dtype=float)
    total = n_c + n_t
    e_t = total * share_t
    e_c = total - e_t
    chi2 = np.where(
        total > 0, (n_t - e_t) ** 2 / np.maximum(e_t, 1e-12) + (n_c - e_c) ** 2 / np.maximum(e_c, 1e-12), 0.0
    )
    return np.vectorize(math.erfc, otypes=[float])(np.sqrt(chi2 / 2))


# --- planning ------------------------------------------------------------------------------------


def lift_unit_variance(baseline: float, lift: float, share_treatment: float) -> float:
    """Variance of the relative-lift estimator times N (total units): the delta method with both
    arms' own variances, p_T = p_C(1 + δ):
    [p_T(1 − p_T)/κ_T + (1 + δ)² p_C(1 − p_C)/κ_C] / p_C²."""
    p_c, p_t = baseline, baseline * (1 + lift)
    if not 0 < p_t < 1:
        raise ValueError(f"baseline {baseline} with lift {lift} is not a rate")
    return (p_t * (1 - p_t) / share_treatment + (1 + lift) ** 2 * p_c * (1 - p_c) / (1 - share_treatment)) / p_c**2


def difference_unit_variance(baseline: float, treatment: float, share_treatment: float) -> float:
    """Variance of the difference pT − pC times N."""
    return treatment * (1 - treatment) / share_treatment + baseline * (1 - baseline) / (1 - share_treatment)


def sample_size(baseline: float, mde: float, share_treatment: float, alpha: float = ALPHA, power: float = 0.8) -> int:
    """Total units for a fixed-horizon two-sided test of the relative lift `mde` on `baseline`:
    N = (z₁₋α/₂ + z_power)² · Var₁ / δ², Var₁ from `lift_unit_variance` (REFERENCE.md)."""
    k = (z(1 - alpha / 2) + z(power)) ** 2
    return _units(k * lift_unit_variance(baseline, mde, share_treatment) / mde**2)


def _units(value: float) -> int:
    if not math.isfinite(value):
        raise ValueError("no finite sample detects this effect")
    return math.ceil(value)


def sequential_sample_size(unit_variance: float, effect: float, alpha: float = ALPHA, power: float = 0.8) -> int:
    """Total units at which the always-valid interval (tuned to this very sample) excludes zero with
    probability `power` when the true effect is `effect`: (M + z_power)² · Var₁ / effect², M the
    interval's half-width in standard errors at its planned sample (3.03 at α = 0.05). Looking every
    day before that only adds power."""
    m = float(sequential_multiplier(1.0, 1.0, alpha))
    return _units((m + z(power)) ** 2 * unit_variance / effect**2)


def sequential_power(effect: float, unit_variance: float, n: float, tuned_n: float, alpha: float = ALPHA) -> float:
    """Probability (normal approximation) that after n units the always-valid interval tuned to
    `tuned_n` excludes 0 when the true effect is `effect`: Φ(|effect|·√(n / Var₁) − M(n, tuned_n))."""
    if n <= 0:
        return 0.0
    m = float(sequential_multiplier(n, tuned_n, alpha))
    return _NORMAL.cdf(abs(effect) * math.sqrt(n / unit_variance) - m)


def non_inferiority_power(
    rate: float, margin: float, n: float, share_treatment: float, tuned_n: float, alpha: float = ALPHA
) -> float:
    """Probability that after n units (both arms) the always-valid upper bound of the difference
    pT − pC, as the evaluator computes it (Agresti–Caffo variance: one event and one non-event added
    per arm), is below `margin` when both arms have `rate`. The bound is D + M·ŝe with ŝe estimated
    from the same counts, so a high D comes with a high ŝe: to first order the bound has mean
    M·se(adjusted rates) and standard deviation √(Σ_arm r(1−r)/n_arm · (1 ± M(1−2r)/(2·n_arm·se))²).
    For rare events (a few dozen per arm) this is markedly below the plain Φ(margin/se − M)."""
    if n <= 0:
        return 0.0
    n_t, n_c = n * share_treatment, n * (1 - share_treatment)
    if min(n_t, n_c) < 1:
        return 0.0
    m = float(sequential_multiplier(n, tuned_n, alpha))
    se = math.sqrt(rate * (1 - rate) * (1 / n_t + 1 / n_c))
    adjusted_t, adjusted_c = (rate * n_t + 1) / (n_t + 2), (rate * n_c + 1) / (n_c + 2)
    se_adjusted = math.sqrt(adjusted_t * (1 - adjusted_t) / (n_t + 2) + adjusted_c * (1 - adjusted_c) / (n_c + 2))
    slope = m * (1 - 2 * rate) / (2 * se)
    spread = math.sqrt(rate * (1 - rate) * ((1 + slope / n_t) ** 2 / n_t + (1 - slope / n_c) ** 2 / n_c))
    return _NORMAL.cdf((margin - m * se_adjusted) / spread)


def wilson_interval(successes: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    zz = z(1 - alpha / 2)
    p = successes / n
    centre = (p + zz * zz / (2 * n)) / (1 + zz * zz / n)
    half = zz * math.sqrt(p * (1 - p) / n + zz * zz / (4 * n * n)) / (1 + zz * zz / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def proportion(successes: int, n: int) -> dict[str, Any]:
    """A rate with its 95 % Wilson interval and its sample size, as every report shows it."""
    low, high = wilson_interval(int(successes), int(n))
    return {"rate": successes / n if n else None, "interval": [low, high], "n": int(n)}

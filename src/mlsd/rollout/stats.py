"""Sequential A/B statistics that stay valid when looked at after every decision.

The comparison of two arms is a mixture sequential probability ratio test (mSPRT; Johari,
Pekelis & Walsh, "Always valid inference", the method behind Optimizely's stats engine):
its p-value and confidence sequence hold at every look simultaneously, so a controller may
decide after each batch without inflating the false-positive rate the way repeated
fixed-horizon z-tests do. Beside it: a sample-size plan for that test, the sample-ratio
mismatch check, non-inferiority for canaries and shadows, and multiple-testing corrections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sp

_TINY = 1e-12  # a control mean closer to 0 than this has no meaningful relative change


def _finite(x: float | None) -> float | None:
    """``x`` as a JSON-safe float: infinities and NaN become None."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """The sufficient statistics of one arm's per-unit values: count, mean and unbiased
    variance (0.0 for n < 2; mean 0.0 for n = 0)."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: Any) -> Sample:
        """The sample of ``values`` (NaN entries ignored)."""
        x = np.asarray(values, dtype=float).ravel()
        x = x[~np.isnan(x)]
        n = int(x.size)
        if n == 0:
            return cls(0, 0.0, 0.0)
        return cls(n, float(x.mean()), float(x.var(ddof=1)) if n > 1 else 0.0)

    def combine(self, other: Sample) -> Sample:
        """The exact sample of the union of both samples' values (pooled moments)."""
        n = self.n + other.n
        if n == 0:
            return Sample(0, 0.0, 0.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        # sums of squared deviations add, plus the between-sample term (Chan et al.)
        m2 = (
            self.var * max(self.n - 1, 0)
            + other.var * max(other.n - 1, 0)
            + delta**2 * self.n * other.n / n
        )
        return Sample(n, float(mean), float(m2 / (n - 1)) if n > 1 else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The sample as plain JSON values."""
        return {"n": int(self.n), "mean": float(self.mean), "var": float(self.var)}


# --------------------------------------------------------------------------- mSPRT


@dataclass(frozen=True)
class SequentialResult:
    """One look of the mSPRT: the difference test − control, its always-valid confidence
    sequence and p-value, and the same relative to the control mean."""

    difference: float
    ci_low: float
    ci_high: float
    relative: float | None
    relative_ci_low: float | None
    relative_ci_high: float | None
    p_value: float
    significant: bool
    n_control: int
    n_test: int
    alpha: float
    tau: float

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values (an unbounded interval end is None)."""
        return {
            "difference": _finite(self.difference),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "relative": _finite(self.relative),
            "relative_ci_low": _finite(self.relative_ci_low),
            "relative_ci_high": _finite(self.relative_ci_high),
            "p_value": float(self.p_value),
            "significant": bool(self.significant),
            "n_control": int(self.n_control),
            "n_test": int(self.n_test),
            "alpha": float(self.alpha),
            "tau": float(self.tau),
        }


def _variance(control: Sample, test: Sample) -> float:
    """The variance of test.mean − control.mean. A control with n but no variance (the
    paired case: the origin) adds nothing; a control without units adds nothing either."""
    v = test.var / test.n if test.n else math.inf
    return v + (control.var / control.n if control.n else 0.0)


def _half_width(v: float, tau: float, alpha: float) -> float:
    """The half width of the mSPRT confidence sequence at variance ``v``: the set of
    differences whose likelihood ratio stays below 1/alpha."""
    t2 = tau * tau
    return math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))


def msprt(control: Sample, test: Sample, *, tau: float, alpha: float) -> SequentialResult:
    """The mixture SPRT of test.mean − control.mean with a N(0, tau²) mixing distribution.

    Λ = sqrt(V/(V+τ²)) · exp(τ²d²/(2V(V+τ²))), p = min(1, 1/Λ); the confidence sequence is
    d ± sqrt(V(V+τ²)/τ² · (2 log(1/α) + log((V+τ²)/V))). Both are valid at every look. With
    fewer than two test units, a control of one unit or no variance there is no evidence:
    p = 1 and the interval is unbounded.
    """
    d = test.mean - control.mean
    v = _variance(control, test)
    degenerate = test.n < 2 or control.n == 1 or not (0 < v < math.inf) or tau <= 0
    if degenerate:
        p, lo, hi = 1.0, -math.inf, math.inf
    else:
        t2 = tau * tau
        log_lr = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
        p = min(1.0, math.exp(-log_lr)) if log_lr > -700 else 1.0
        h = _half_width(v, tau, alpha)
        lo, hi = d - h, d + h
    base = abs(control.mean)
    if control.n and base > _TINY:
        rel, rlo, rhi = d / base, lo / base, hi / base  # the control mean taken as known
    else:
        rel = rlo = rhi = None
    return SequentialResult(
        difference=float(d),
        ci_low=float(lo),
        ci_high=float(hi),
        relative=rel,
        relative_ci_low=rlo,
        relative_ci_high=rhi,
        p_value=float(p),
        significant=bool(p < alpha),
        n_control=int(control.n),
        n_test=int(test.n),
        alpha=float(alpha),
        tau=float(tau),
    )


def always_valid(prev_p: float | None, p: float) -> float:
    """The always-valid p-value after a new look: the running minimum of the sequence (valid
    because the mSPRT bounds the chance that 1/Λ *ever* falls below alpha)."""
    return float(p) if prev_p is None else float(min(prev_p, p))


def default_tau(mean: float, sd: float, mde_relative: float) -> float:
    """The mixing scale matched to the effect worth detecting.

    The mSPRT is most powerful for differences near ±tau, so tau is the minimum detectable
    effect |mean|·mde_relative; 1% of a standard deviation (and 1e-9) keep it positive when
    the mean is 0.
    """
    return float(max(abs(mean) * mde_relative, sd * 0.01, 1e-9))


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """The sample size of an mSPRT A/B test, with the fixed-horizon z-test's for reference."""

    n_total: int
    n_per_arm: list[int]
    tau: float
    fixed_horizon_n_total: int
    mde_absolute: float
    mde_relative: float
    alpha: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON values."""
        return {
            "n_total": int(self.n_total),
            "n_per_arm": [int(n) for n in self.n_per_arm],
            "tau": float(self.tau),
            "fixed_horizon_n_total": int(self.fixed_horizon_n_total),
            "mde_absolute": float(self.mde_absolute),
            "mde_relative": float(self.mde_relative),
            "alpha": float(self.alpha),
            "power": float(self.power),
        }


def plan(
    mean: float,
    sd: float,
    mde_relative: float,
    *,
    alpha: float,
    power: float,
    weights: Sequence[float] = (0.5, 0.5),
    tau: float | None = None,
) -> Plan:
    """The smallest total number of units at which the mSPRT confidence sequence excludes 0
    with probability ``power`` when the true difference is |mean|·mde_relative.

    With n·w_i units per arm, V(n) = sd²/(n·w0) + sd²/(n·w1) and c(n) the half width of the
    sequence, power(n) = Φ((δ − c(n))/√V(n)); n is found by doubling, then bisection.
    """
    if sd <= 0 or not math.isfinite(sd):
        raise ValueError(f"the metric's standard deviation must be positive — got {sd!r}")
    if mde_relative <= 0:
        raise ValueError(f"the minimum detectable effect must be positive — got {mde_relative!r}")
    if abs(mean) <= _TINY:
        raise ValueError(
            f"a relative effect of a metric whose mean is 0 is 0 — got mean {mean!r}; "
            "take the baseline from a metric with a non-zero mean"
        )
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1) — got {alpha!r}, {power!r}")
    w = np.asarray(weights, dtype=float)
    if w.size != 2 or (w <= 0).any():
        raise ValueError(f"two positive arm weights are needed — got {list(weights)}")
    w = w / w.sum()
    delta = abs(mean) * mde_relative
    tau = default_tau(mean, sd, mde_relative) if tau is None else float(tau)
    spread = sd * sd * float((1 / w).sum())  # V(n) = spread / n

    def enough(n: float) -> bool:
        v = spread / n
        return _sp.norm.cdf((delta - _half_width(v, tau, alpha)) / math.sqrt(v)) >= power

    hi = 2
    while not enough(hi):
        hi *= 2
        if hi > 2**62:
            raise ValueError("no sample size reaches that power")
    lo = hi // 2  # not enough (or 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    per_arm = [math.ceil(hi * share) for share in w]
    z = _sp.norm.ppf(1 - alpha / 2) + _sp.norm.ppf(power)
    fixed = math.ceil(z * z * spread / (delta * delta))
    return Plan(
        n_total=int(sum(per_arm)),
        n_per_arm=per_arm,
        tau=float(tau),
        fixed_horizon_n_total=int(fixed),
        mde_absolute=float(delta),
        mde_relative=float(mde_relative),
        alpha=float(alpha),
        power=float(power),
    )


# --------------------------------------------------------------------------- SRM


@dataclass(frozen=True)
class SRMResult:
    """The sample-ratio check: observed units against the configured shares."""

    chi2: float
    p_value: float
    mismatch: bool
    counts: list[int]
    expected: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The check as plain JSON values."""
        return {
            "chi2": _finite(self.chi2),
            "p_value": float(self.p_value),
            "mismatch": bool(self.mismatch),
            "counts": [int(c) for c in self.counts],
            "expected": [float(e) for e in self.expected],
        }


def srm(counts: Sequence[int], weights: Sequence[float], threshold: float = 0.001) -> SRMResult:
    """Chi-square goodness of fit of the units per arm against the shares ``weights`` (not
    necessarily summing to 1). A mismatch (p < threshold, strict because the check runs at
    every look) means the assignment or the logging is broken, not that an arm is better."""
    c = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    if c.shape != w.shape or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"one non-negative weight per count is needed — got {weights!r}")
    total = c.sum()
    expected = total * w / w.sum()
    if total == 0:
        chi2, p = 0.0, 1.0
    elif ((expected == 0) & (c > 0)).any():  # units in an arm meant to get none
        chi2, p = math.inf, 0.0
    else:
        used = expected > 0
        chi2 = float((((c - expected) ** 2)[used] / expected[used]).sum())
        dof = int(used.sum()) - 1
        p = float(_sp.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    return SRMResult(
        chi2=chi2,
        p_value=p,
        mismatch=bool(p < threshold),
        counts=[int(x) for x in c],
        expected=[float(e) for e in expected],
    )


# --------------------------------------------------------------------------- non-inferiority


@dataclass(frozen=True)
class NonInferiority:
    """Whether the test arm is no worse than the control by more than ``margin``; the
    difference is oriented so that positive means the test arm is better."""

    status: str  # "pass" | "fail" | "inconclusive"
    difference: float
    ci_low: float
    ci_high: float
    margin: float

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON values (an unbounded interval end is None)."""
        return {
            "status": self.status,
            "difference": _finite(self.difference),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "margin": float(self.margin),
        }


def non_inferiority(
    control: Sample,
    test: Sample,
    *,
    margin: float,
    higher_is_better: bool,
    tau: float,
    alpha: float,
) -> NonInferiority:
    """Non-inferiority from the mSPRT's two-sided always-valid confidence sequence: "pass"
    when it lies above −margin, "fail" when below, else "inconclusive". A control of n units
    with mean 0 and variance 0 makes ``test`` a paired difference sample."""
    r = msprt(control, test, tau=tau, alpha=alpha)
    if higher_is_better:
        d, lo, hi = r.difference, r.ci_low, r.ci_high
    else:
        d, lo, hi = -r.difference, -r.ci_high, -r.ci_low
    status = "pass" if lo > -margin else "fail" if hi < -margin else "inconclusive"
    return NonInferiority(status, float(d), float(lo), float(hi), float(margin))


# --------------------------------------------------------------------------- corrections


def _tested(ps: Sequence[float | None]) -> list[tuple[int, float]]:
    """The (index, p) pairs that were tested, smallest p first."""
    return sorted(((i, float(p)) for i, p in enumerate(ps) if p is not None), key=lambda t: t[1])


def holm(ps: Sequence[float | None], alpha: float) -> list[bool]:
    """Holm's step-down correction (controls the family-wise error rate): which hypotheses
    are rejected. None entries were not tested: never rejected, not counted."""
    out = [False] * len(ps)
    tested = _tested(ps)
    m = len(tested)
    for k, (i, p) in enumerate(tested):
        if p > alpha / (m - k):
            break
        out[i] = True
    return out


def benjamini_hochberg(ps: Sequence[float | None], alpha: float) -> list[bool]:
    """Benjamini–Hochberg step-up correction (controls the false discovery rate): which
    hypotheses are rejected. None entries were not tested: never rejected, not counted."""
    out = [False] * len(ps)
    tested = _tested(ps)
    m = len(tested)
    last = max((k for k, (_, p) in enumerate(tested, 1) if p <= k * alpha / m), default=0)
    for i, _ in tested[:last]:
        out[i] = True
    return out

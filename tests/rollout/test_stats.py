"""The sequential A/B statistics, judged by simulation: the error rates and the coverage they
promise must hold when the experiment is looked at after every batch (seeds are fixed, so
every figure below is reproducible)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sp

from mlsd.rollout import stats
from mlsd.rollout.stats import Sample

ALPHA = 0.05
RUNS = 200


def _bernoulli_looks(rng, p, runs, looks, batch):
    """Cumulative (n, successes) per run and look for one arm of 0/1 values."""
    wins = rng.binomial(batch, p, size=(runs, looks)).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    return n, wins


def _bernoulli_sample(n: int, wins: float) -> Sample:
    p = wins / n
    return Sample(int(n), float(p), n / (n - 1) * p * (1 - p))


def _normal_looks(rng, mean, sd, runs, sizes):
    """Sample per run and look of a normal arm, the looks at cumulative sizes ``sizes``."""
    x = rng.normal(mean, sd, size=(runs, sizes[-1]))
    means = np.stack([x[:, :n].mean(axis=1) for n in sizes], axis=1)
    variances = np.stack([x[:, :n].var(axis=1, ddof=1) for n in sizes], axis=1)
    return [
        [Sample(int(n), float(m), float(v)) for n, m, v in zip(sizes, ms, vs, strict=True)]
        for ms, vs in zip(means, variances, strict=True)
    ]


# --------------------------------------------------------------------------- A/A with peeking


def test_aa_false_positive_rate_holds_with_peeking_and_naive_peeking_does_not():
    """200 A/A experiments (a 10% rate), looked at after each of 20 batches of 250 units per
    arm: the mSPRT rejects at some look in at most alpha (+ simulation slack), while a
    fixed-horizon z-test repeated at every look rejects far more often on the same data."""
    rng = np.random.default_rng(7)
    looks, batch = 20, 250
    n, a = _bernoulli_looks(rng, 0.1, RUNS, looks, batch)
    _, b = _bernoulli_looks(rng, 0.1, RUNS, looks, batch)
    tau = stats.default_tau(0.1, 0.3, 0.05)
    z_crit = sp.norm.ppf(1 - ALPHA / 2)
    sequential = np.zeros(RUNS, dtype=bool)
    naive = np.zeros(RUNS, dtype=bool)
    for r in range(RUNS):
        running = None
        for t in range(looks):
            control = _bernoulli_sample(n[t], a[r, t])
            test = _bernoulli_sample(n[t], b[r, t])
            result = stats.msprt(control, test, tau=tau, alpha=ALPHA)
            running = stats.always_valid(running, result.p_value)
            sequential[r] |= result.significant
            se = math.sqrt(control.var / control.n + test.var / test.n)
            naive[r] |= abs(result.difference) / se > z_crit
        assert (running < ALPHA) == sequential[r]  # the running-min p says the same
    assert sequential.mean() <= ALPHA + 0.02, sequential.mean()
    assert naive.mean() > ALPHA + 0.02, naive.mean()  # ~0.2-0.25: why the mSPRT is needed


# --------------------------------------------------------------------------- power and plan


def test_planned_n_detects_a_five_percent_lift_with_the_planned_power():
    """A metric of mean 10 and sd 2, a 5% lift (0.5): at the plan's n, looked at ten times,
    the mSPRT detects it in at least 80% of 1,000 experiments. The plan's power is that of the
    last look alone; peeking only adds detections (about 84% in all, measured on 4,000 runs),
    and with 1,000 runs the binomial standard error (~0.012) keeps 80% three errors away
    whatever the seed."""
    mean, sd, lift = 10.0, 2.0, 0.05
    plan = stats.plan(mean, sd, lift, alpha=ALPHA, power=0.8)
    per_arm = plan.n_per_arm[0]
    sizes = np.unique(np.linspace(per_arm / 10, per_arm, 10).astype(int))
    rng = np.random.default_rng(11)
    controls = _normal_looks(rng, mean, sd, 1000, sizes)
    tests = _normal_looks(rng, mean * (1 + lift), sd, 1000, sizes)
    detected = [
        any(
            stats.msprt(c, t, tau=plan.tau, alpha=ALPHA).significant
            for c, t in zip(cs, ts, strict=True)
        )
        for cs, ts in zip(controls, tests, strict=True)
    ]
    assert np.mean(detected) >= 0.80, np.mean(detected)


def test_plan_costs_more_than_a_fixed_horizon_and_grows_as_the_effect_shrinks():
    plans = [stats.plan(10.0, 2.0, mde, alpha=ALPHA, power=0.8) for mde in (0.1, 0.05, 0.03)]
    for p in plans:
        assert p.n_total > p.fixed_horizon_n_total
        assert p.n_per_arm[0] == p.n_per_arm[1]
        assert sum(p.n_per_arm) == p.n_total
    assert plans[0].n_total < plans[1].n_total < plans[2].n_total
    assert plans[1].mde_absolute == pytest.approx(0.5)
    assert plans[1].tau == pytest.approx(stats.default_tau(10.0, 2.0, 0.05))
    json.dumps(plans[1].to_dict())
    # an uneven split needs more units in all than an even one
    uneven = stats.plan(10.0, 2.0, 0.05, alpha=ALPHA, power=0.8, weights=(0.2, 0.8))
    assert uneven.n_total > plans[1].n_total
    assert uneven.n_per_arm[0] < uneven.n_per_arm[1]


def test_plan_refuses_what_it_cannot_plan():
    with pytest.raises(ValueError, match="mean"):
        stats.plan(0.0, 1.0, 0.05, alpha=ALPHA, power=0.8)
    with pytest.raises(ValueError, match="standard deviation"):
        stats.plan(1.0, 0.0, 0.05, alpha=ALPHA, power=0.8)


# --------------------------------------------------------------------------- SRM


def test_srm_flags_a_52_48_split_and_rarely_a_true_50_50():
    flagged = stats.srm([5200, 4800], [0.5, 0.5])
    assert flagged.mismatch and flagged.p_value < 0.001
    assert stats.srm([5200, 4800], [50, 50]).p_value == pytest.approx(flagged.p_value)
    json.dumps(flagged.to_dict())
    rng = np.random.default_rng(3)
    first = rng.binomial(10_000, 0.5, size=RUNS)
    rate = np.mean([stats.srm([int(k), 10_000 - int(k)], [0.5, 0.5]).mismatch for k in first])
    assert rate <= 0.01, rate
    empty = stats.srm([0, 0], [0.5, 0.5])
    assert empty.p_value == 1.0 and not empty.mismatch
    assert stats.srm([1000, 2000, 3000], [1, 2, 3]).p_value == pytest.approx(1.0)


# --------------------------------------------------------------------------- non-inferiority


def test_non_inferiority_pass_fail_inconclusive():
    base = Sample(10_000, 1.0, 1.0)

    def verdict(test_mean: float, higher_is_better: bool = True) -> str:
        return stats.non_inferiority(
            base,
            Sample(10_000, test_mean, 1.0),
            margin=0.1,
            higher_is_better=higher_is_better,
            tau=0.1,
            alpha=ALPHA,
        ).status

    assert verdict(1.0) == "pass"  # CI about ±0.045 around 0
    assert verdict(0.7) == "fail"  # CI about [-0.35, -0.25]
    assert verdict(0.9) == "inconclusive"  # CI about [-0.15, -0.05] straddles -0.1
    # a loss: lower is better, so a higher test mean is the worse one
    assert verdict(1.3, higher_is_better=False) == "fail"
    assert verdict(0.7, higher_is_better=False) == "pass"
    loss = stats.non_inferiority(
        base, Sample(10_000, 1.3, 1.0), margin=0.1, higher_is_better=False, tau=0.1, alpha=ALPHA
    )
    assert loss.difference == pytest.approx(-0.3) and loss.ci_low < -0.3 < loss.ci_high
    json.dumps(loss.to_dict())


def test_non_inferiority_of_a_paired_difference_uses_the_difference_variance_alone():
    """The shadow path: the control is the origin (n units, mean 0, variance 0)."""
    diff = Sample(400, -0.01, 0.04)
    ni = stats.non_inferiority(
        Sample(400, 0.0, 0.0), diff, margin=0.05, higher_is_better=True, tau=0.05, alpha=ALPHA
    )
    v, t2 = 0.04 / 400, 0.05**2
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / ALPHA) + math.log((v + t2) / v)))
    assert ni.ci_low == pytest.approx(-0.01 - half)
    assert ni.ci_high == pytest.approx(-0.01 + half)
    assert ni.status == "pass"


def test_confidence_sequence_covers_the_true_difference_at_every_look():
    """200 experiments with a true difference of 0.3, looked at 20 times: the interval holds
    the truth at all looks at once in at least 93% of them (the promise is 95%)."""
    sizes = np.arange(50, 1001, 50)
    rng = np.random.default_rng(5)
    controls = _normal_looks(rng, 10.0, 2.0, RUNS, sizes)
    tests = _normal_looks(rng, 10.3, 2.0, RUNS, sizes)
    covered = [
        all(
            (r := stats.msprt(c, t, tau=0.5, alpha=ALPHA)).ci_low <= 0.3 <= r.ci_high
            for c, t in zip(cs, ts, strict=True)
        )
        for cs, ts in zip(controls, tests, strict=True)
    ]
    assert np.mean(covered) >= 0.93, np.mean(covered)


def test_msprt_without_evidence_and_its_figures():
    none = stats.msprt(Sample(1, 1.0, 0.0), Sample(1, 2.0, 0.0), tau=0.1, alpha=ALPHA)
    assert none.p_value == 1.0 and not none.significant
    assert none.to_dict()["ci_low"] is None and none.to_dict()["ci_high"] is None
    json.dumps(none.to_dict())
    r = stats.msprt(Sample(5000, 10.0, 4.0), Sample(5000, 10.5, 4.0), tau=0.5, alpha=ALPHA)
    assert r.significant and r.p_value < ALPHA
    assert r.relative == pytest.approx(0.05)
    assert r.relative_ci_low == pytest.approx(r.ci_low / 10.0)
    # p < alpha exactly when the confidence sequence excludes 0
    assert (r.ci_low > 0) == r.significant
    zero = stats.msprt(Sample(100, 0.0, 1.0), Sample(100, 0.1, 1.0), tau=0.1, alpha=ALPHA)
    assert zero.relative is None and zero.relative_ci_low is None
    assert stats.always_valid(None, 0.3) == 0.3
    assert stats.always_valid(0.2, 0.3) == 0.2
    assert stats.default_tau(0.0, 2.0, 0.05) == pytest.approx(0.02)


# --------------------------------------------------------------------------- corrections


def test_holm_and_benjamini_hochberg_by_hand():
    ps = [0.01, None, 0.04, 0.03, 0.005]
    # Holm, m = 4: 0.005 <= .0125, 0.01 <= .0167, 0.03 > .025 stops
    assert stats.holm(ps, 0.05) == [True, False, False, False, True]
    # BH, m = 4: thresholds .0125 .025 .0375 .05; the largest p (0.04) passes, so all do
    assert stats.benjamini_hochberg(ps, 0.05) == [True, False, True, True, True]
    # step-up: 0.04 > .0375 but 0.045 <= .05 rejects everything below it; Holm stops at 0.02
    ps = [0.001, 0.02, 0.04, 0.045]
    assert stats.benjamini_hochberg(ps, 0.05) == [True, True, True, True]
    assert stats.holm(ps, 0.05) == [True, False, False, False]
    # untested entries do not count in m: alone, 0.02 is rejected
    assert stats.holm([0.02, None, None], 0.05) == [True, False, False]
    assert stats.benjamini_hochberg([0.02, None, None], 0.05) == [True, False, False]
    assert stats.holm([None, None], 0.05) == [False, False]
    assert stats.benjamini_hochberg([], 0.05) == []
    assert stats.benjamini_hochberg([0.2, 0.3], 0.05) == [False, False]


# --------------------------------------------------------------------------- samples


def test_sample_of_and_combine_match_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(3, 2, 137), rng.normal(-1, 5, 64)
    s = Sample.of(np.concatenate([x, [np.nan]]))
    assert s.n == 137
    assert s.mean == pytest.approx(x.mean())
    assert s.var == pytest.approx(x.var(ddof=1))
    both = Sample.of(x).combine(Sample.of(y))
    xy = np.concatenate([x, y])
    assert both.n == xy.size
    assert both.mean == pytest.approx(xy.mean())
    assert both.var == pytest.approx(xy.var(ddof=1))
    assert Sample.of([]) == Sample(0, 0.0, 0.0)
    assert Sample.of([4.0]) == Sample(1, 4.0, 0.0)
    assert Sample.of([]).combine(Sample.of(x)) == Sample.of(x)
    one = Sample.of([1.0]).combine(Sample.of([3.0]))
    assert (one.n, one.mean, one.var) == (2, 2.0, pytest.approx(2.0))
    assert s.to_dict() == {"n": 137, "mean": s.mean, "var": s.var}

"""Thompson sampling and inverse propensity estimates, judged on simulated Bernoulli bandits
across several seeds (each figure reproducible: the seeds are fixed)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

from mlsd.rollout.bandit import BanditRun, ips, simulate_bandit, thompson_weights
from mlsd.rollout.stats import Sample
from mlsd.spec.rollout import BanditSpec

MEANS = (0.10, 0.12, 0.15)
PULLS = 20_000
FLOOR = BanditSpec.model_fields["floor"].default  # the spec's default floor (0.05)


@cache
def run(seed: int) -> BanditRun:
    return simulate_bandit(MEANS, PULLS, floor=FLOOR, seed=seed)


@pytest.mark.parametrize("seed", range(5))
def test_traffic_moves_to_the_best_arm_and_regret_is_sublinear(seed):
    r = run(seed)
    assert r.arms.size == r.rewards.size == r.propensities.size == r.regret.size == PULLS
    last_quarter = r.arms[-PULLS // 4 :]
    assert np.mean(last_quarter == 2) >= 0.90
    half = PULLS // 2
    first, second = r.regret[half - 1], r.regret[-1] - r.regret[half - 1]
    assert second < first  # learning: the second half costs less than the first
    uniform = PULLS * (max(MEANS) - np.mean(MEANS))  # ~533 expected under equal shares
    assert r.regret[-1] < 0.25 * uniform
    summary = r.to_dict()
    json.dumps(summary)
    assert sum(summary["pulls_per_arm"]) == PULLS
    assert summary["regret"] == pytest.approx(r.regret[-1])


def test_ips_intervals_cover_each_arms_true_mean():
    """Across 50 logged bandit runs, both estimators' 95% intervals hold each arm's true
    rate in at least 90% of the 150 (run, arm) cases (the traffic adapts, so the normal
    interval is approximate; measured coverage is ~95%)."""
    for method in ("hajek", "horvitz_thompson"):
        hits = []
        for seed in range(50):
            r = run(seed)
            estimates = ips(r.arms, r.rewards, r.propensities, len(MEANS), method=method)
            assert [e.arm for e in estimates] == [0, 1, 2]
            hits += [e.ci_low <= MEANS[e.arm] <= e.ci_high for e in estimates]
        assert np.mean(hits) >= 0.90, (method, np.mean(hits))


def test_ips_on_uniform_logs_and_an_arm_never_served():
    rng = np.random.default_rng(2)
    arms = rng.integers(0, 2, 4000)
    rewards = rng.normal(np.where(arms == 0, 1.0, 2.0), 1.0)
    estimates = ips(arms, rewards, np.full(4000, 0.5), 3)
    for e, truth in zip(estimates[:2], (1.0, 2.0), strict=True):
        assert abs(e.mean - truth) < 0.1  # ~4 standard errors of 2,000 rows
        # the interval is the plain mean's: half width 1.96 sd / sqrt(n_arm)
        assert e.ci_high - e.ci_low == pytest.approx(2 * 1.96 / np.sqrt(e.n), rel=0.1)
    # with constant propensities Hájek is the arm's plain mean
    assert estimates[0].mean == pytest.approx(rewards[arms == 0].mean())
    assert estimates[2].n == 0 and estimates[2].to_dict()["mean"] is None
    json.dumps([e.to_dict() for e in estimates])
    with pytest.raises(ValueError, match="propensity"):
        ips(arms, rewards, np.zeros(4000), 2)


def test_thompson_weights_sum_to_one_respect_the_floor_and_favour_the_best():
    samples = [Sample(1000, 0.10, 0.09), Sample(1000, 0.20, 0.16), Sample(1000, 0.11, 0.1)]
    for bernoulli in (False, True):
        w = thompson_weights(samples, floor=0.1, seed=4, bernoulli=bernoulli)
        assert w.sum() == pytest.approx(1.0)
        assert (w >= 0.1 / 3 - 1e-12).all()
        assert w.argmax() == 1 and w[1] > 0.9
        again = thompson_weights(samples, floor=0.1, seed=4, bernoulli=bernoulli)
        np.testing.assert_array_equal(w, again)
    plain = thompson_weights(samples, floor=0.0, seed=4)
    assert plain[1] == pytest.approx(1.0)  # the plain probability of being best
    # two equal arms share the traffic; a new arm (n < 2) gets a wide prior, not zero
    even = thompson_weights([Sample(500, 1.0, 1.0), Sample(500, 1.0, 1.0)], floor=0.0)
    assert even == pytest.approx([0.5, 0.5], abs=0.03)
    fresh = thompson_weights([Sample(500, 1.0, 1.0), Sample(0, 0.0, 0.0)], floor=0.0)
    assert 0.2 < fresh[1] < 0.8
    assert thompson_weights([Sample(0, 0.0, 0.0)] * 3, floor=0.05, bernoulli=True).sum() == (
        pytest.approx(1.0)
    )

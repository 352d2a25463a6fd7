"""Thompson sampling over model versions, and off-policy estimates from its logged traffic.

Each arm gets traffic in proportion to its posterior probability of being the best, mixed
with a floor so that every arm keeps being tried. Because the traffic adapts, the plain
per-arm means of the log are still fine for the posterior, but estimates of "what if all
traffic went to arm a" weight each logged row by 1/propensity (inverse propensity scoring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sp

from mlsd.rollout.stats import Sample


def _posterior_draws(
    samples: Sequence[Sample], draws: int, rng: np.random.Generator, bernoulli: bool
) -> np.ndarray:
    """A (draws, arms) matrix of draws from each arm's posterior mean."""
    k = len(samples)
    out = np.empty((draws, k))
    if bernoulli:  # Beta(1 + successes, 1 + failures): a uniform prior on the rate
        for j, s in enumerate(samples):
            wins = min(max(round(s.n * s.mean), 0), s.n)
            out[:, j] = rng.beta(1 + wins, 1 + s.n - wins, size=draws)
        return out
    seen = [s for s in samples if s.n >= 2]
    pooled = float(np.mean([s.var for s in seen])) if seen else 0.0
    # an arm that happened to show no spread is not certain: floor its variance at 1% of
    # the arms' typical variance
    var_floor = max(0.01 * pooled, 1e-12)
    center = float(np.mean([s.mean for s in seen])) if seen else 0.0
    wide = 10 * math.sqrt(pooled) if pooled > 0 else 1.0
    for j, s in enumerate(samples):
        if s.n >= 2:
            out[:, j] = rng.normal(s.mean, math.sqrt(max(s.var, var_floor) / s.n), size=draws)
        else:  # too little data: a wide prior around the others (its one value if it has it)
            out[:, j] = rng.normal(s.mean if s.n == 1 else center, wide, size=draws)
    return out


def thompson_weights(
    samples: Sequence[Sample],
    *,
    floor: float,
    draws: int = 10_000,
    seed: int | None = 0,
    bernoulli: bool = False,
) -> np.ndarray:
    """Each arm's traffic share: its posterior probability of having the highest mean,
    estimated from ``draws`` Monte-Carlo draws, mixed with a uniform floor.

    The posterior is Beta(1 + successes, 1 + failures) when ``bernoulli``, else
    Normal(mean, sqrt(var/n)). The share is floor/k + (1 − floor)·P(best): the floor keeps
    every arm explored and keeps every propensity above 0, which inverse propensity
    estimates divide by. With floor = 0 it is the plain probability of being best.
    """
    k = len(samples)
    if k == 0:
        return np.zeros(0)
    if not 0 <= floor <= 1:
        raise ValueError(f"floor must lie in [0, 1] — got {floor!r}")
    rng = np.random.default_rng(seed)
    best = _posterior_draws(samples, draws, rng, bernoulli).argmax(axis=1)
    p_best = np.bincount(best, minlength=k) / draws
    w = floor / k + (1 - floor) * p_best
    return w / w.sum()


# --------------------------------------------------------------------------- IPS


@dataclass(frozen=True)
class IPSEstimate:
    """An arm's off-policy mean reward with a normal confidence interval; ``n`` counts the
    logged rows that went to the arm."""

    arm: int
    n: int
    mean: float
    ci_low: float
    ci_high: float
    method: str  # "hajek" (self-normalized) | "horvitz_thompson"

    def to_dict(self) -> dict[str, Any]:
        """The estimate as plain JSON values (None when the arm has no rows)."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "arm": int(self.arm),
            "n": int(self.n),
            "mean": num(self.mean),
            "ci_low": num(self.ci_low),
            "ci_high": num(self.ci_high),
            "method": self.method,
        }


def ips(
    arm_ids: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    n_arms: int,
    alpha: float = 0.05,
    *,
    method: str = "hajek",
) -> list[IPSEstimate]:
    """Each arm's mean reward had it taken all traffic, from logged rows (the arm served,
    its reward, and the probability it had of being served).

    ``method="horvitz_thompson"`` averages 1{arm}·reward/propensity over all rows (unbiased);
    ``"hajek"`` (default) divides by the sum of the weights instead of the row count, which
    keeps the estimate within the range of the rewards and usually has lower variance. The
    interval is normal, from the variance of the per-row terms (linearized for Hájek).
    """
    if method not in ("hajek", "horvitz_thompson"):
        raise ValueError(f"method must be 'hajek' or 'horvitz_thompson' — got {method!r}")
    a = np.asarray(arm_ids, dtype=int)
    r = np.asarray(rewards, dtype=float)
    p = np.asarray(propensities, dtype=float)
    if not (a.shape == r.shape == p.shape):
        raise ValueError("arm_ids, rewards and propensities must have the same length")
    if (p <= 0).any():
        raise ValueError("every propensity must be positive (use a floor on the weights)")
    total = a.size
    z = float(_sp.norm.ppf(1 - alpha / 2))
    out = []
    for arm in range(n_arms):
        hit = a == arm
        n = int(hit.sum())
        if n == 0:
            out.append(IPSEstimate(arm, 0, math.nan, -math.inf, math.inf, method))
            continue
        weight = hit / p  # 0 for rows of other arms
        if method == "horvitz_thompson":
            terms = weight * r
            mean = float(terms.mean())
        else:
            mean = float((weight * r).sum() / weight.sum())
            terms = weight * (r - mean) / weight.mean()  # the delta method's influence terms
        se = float(terms.std(ddof=1) / math.sqrt(total)) if total > 1 else math.inf
        out.append(IPSEstimate(arm, n, mean, mean - z * se, mean + z * se, method))
    return out


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class BanditRun:
    """One simulated Bernoulli bandit: every pull's arm, reward and propensity, the
    cumulative expected regret after each pull, and the weights of each batch."""

    means: list[float]
    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    regret: np.ndarray
    weights: np.ndarray  # (batches, arms)

    def to_dict(self) -> dict[str, Any]:
        """A JSON summary: pulls and mean reward per arm, total regret, final weights."""
        k = len(self.means)
        pulls = np.bincount(self.arms, minlength=k)
        wins = np.bincount(self.arms, weights=self.rewards, minlength=k)
        return {
            "means": [float(m) for m in self.means],
            "pulls": int(self.arms.size),
            "pulls_per_arm": [int(x) for x in pulls],
            "mean_reward_per_arm": [
                float(w / n) if n else None for w, n in zip(wins, pulls, strict=True)
            ],
            "regret": float(self.regret[-1]) if self.regret.size else 0.0,
            "final_weights": [float(w) for w in self.weights[-1]] if len(self.weights) else [],
        }


def simulate_bandit(
    means: Sequence[float],
    pulls: int,
    *,
    batch: int = 500,
    floor: float = 0.1,
    seed: int = 0,
) -> BanditRun:
    """Play a Bernoulli bandit with arm success rates ``means`` for ``pulls`` pulls, in
    batches: each batch's weights come from :func:`thompson_weights` over the data so far
    (as the controller reweights at each decision), and each pull is drawn from them."""
    mu = np.asarray(means, dtype=float)
    k = mu.size
    rng = np.random.default_rng(seed)
    wins, counts = np.zeros(k), np.zeros(k, dtype=int)
    arms, rewards, props, history = [], [], [], []
    done = 0
    while done < pulls:
        m = min(batch, pulls - done)
        samples = [_bernoulli_sample(int(n), float(s)) for n, s in zip(counts, wins, strict=True)]
        w = thompson_weights(samples, floor=floor, seed=int(rng.integers(2**31)), bernoulli=True)
        arm = rng.choice(k, size=m, p=w)
        reward = (rng.random(m) < mu[arm]).astype(float)
        counts += np.bincount(arm, minlength=k)
        wins += np.bincount(arm, weights=reward, minlength=k)
        arms.append(arm)
        rewards.append(reward)
        props.append(w[arm])
        history.append(w)
        done += m
    arm_all = np.concatenate(arms) if arms else np.zeros(0, dtype=int)
    return BanditRun(
        means=[float(x) for x in mu],
        arms=arm_all,
        rewards=np.concatenate(rewards) if rewards else np.zeros(0),
        propensities=np.concatenate(props) if props else np.zeros(0),
        regret=np.cumsum(mu.max() - mu[arm_all]),
        weights=np.array(history),
    )


def _bernoulli_sample(n: int, successes: float) -> Sample:
    """The sample of n 0/1 values with ``successes`` ones."""
    if n == 0:
        return Sample(0, 0.0, 0.0)
    p = successes / n
    return Sample(n, p, n / (n - 1) * p * (1 - p) if n > 1 else 0.0)

"""Facts about the groups of a ranking table (step 4): list lengths, lists with nothing to
rank, and NDCG per group for the leakage checks.

``mlsd.data`` sits below ``mlsd.evaluation``, so the NDCG here is a small copy of the
metric's definition (linear gain, ``1/log2(position + 1)`` discount, tied scores averaged
over their orders, as :mod:`mlsd.evaluation.metrics` does); the data checks need only the
full-list value per group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MIN_ROWS = 2  # a list needs two rows for an order to mean anything


def group_codes(groups: Any) -> np.ndarray:
    """Integer codes of the group ids (missing ids: -1)."""
    codes, _ = pd.factorize(pd.Series(groups), use_na_sentinel=True)
    return codes.astype(np.int64)


def list_lengths(codes: np.ndarray) -> dict[str, Any]:
    """Rows per group as JSON: number of groups, min, median, p90, max and mean length."""
    sizes = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.zeros(0, np.int64)
    sizes = sizes[sizes > 0]
    if not len(sizes):
        return {"n_groups": 0}
    return {
        "n_groups": len(sizes),
        "min": int(sizes.min()),
        "median": float(np.median(sizes)),
        "p90": float(np.quantile(sizes, 0.9)),
        "max": int(sizes.max()),
        "mean": round(float(sizes.mean()), 2),
    }


def ndcg_per_group(
    relevance: np.ndarray, score: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Full-list NDCG of ``score``'s order in each group (codes 0..G-1), tied scores
    averaged over their orders, missing scores ranked last; and each group's ideal DCG
    (0 for a group with no relevant row, where NDCG is undefined and returned as NaN)."""
    rel = np.asarray(relevance, dtype=float)
    s = np.asarray(score, dtype=float)
    s = np.where(np.isfinite(s), s, -np.inf)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    order = np.lexsort((-s, codes))
    g, s_sorted, r_sorted = codes[order], s[order], rel[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    start = np.flatnonzero(new_group)
    gidx = np.cumsum(new_group) - 1
    discount = 1.0 / np.log2(np.arange(len(g)) - start[gidx] + 2.0)
    new_block = new_group | np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    block = np.cumsum(new_block) - 1
    gain = (np.bincount(block, weights=r_sorted) / np.bincount(block))[block]
    ideal = rel[np.lexsort((-rel, codes))]
    dcg = np.bincount(g, weights=gain * discount, minlength=n_groups)
    idcg = np.bincount(g, weights=ideal * discount, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), np.nan), idcg


def ndcg_lift(relevance: np.ndarray, score: np.ndarray, codes: np.ndarray) -> dict[str, float]:
    """Mean NDCG of ``score`` over the groups with a relevant row, the mean NDCG of a random
    order on the same groups, and the lift: the share of the gap between random and ideal
    that the score closes (1: every group ordered perfectly; 0: no better than random)."""
    ndcg, idcg = ndcg_per_group(relevance, score, codes)
    base, _ = ndcg_per_group(relevance, np.zeros(len(codes)), codes)
    scored = idcg > 0
    if not scored.any():
        return {"ndcg": float("nan"), "random": float("nan"), "lift": float("nan")}
    value, chance = float(ndcg[scored].mean()), float(base[scored].mean())
    lift = (value - chance) / (1 - chance) if chance < 1 else float("nan")
    return {"ndcg": value, "random": chance, "lift": lift}


def perfect_order_share(
    relevance: np.ndarray, score: np.ndarray, codes: np.ndarray
) -> tuple[float, int]:
    """Share of the groups whose relevance varies that ``score`` orders perfectly (higher
    score, higher relevance; ties only between equal relevance), and how many such groups."""
    rel = np.asarray(relevance, dtype=float)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    high = np.full(n_groups, -np.inf)
    low = np.full(n_groups, np.inf)
    np.maximum.at(high, codes, rel)
    np.minimum.at(low, codes, rel)
    varies = high > low
    if not varies.any():
        return float("nan"), 0
    ndcg, _ = ndcg_per_group(rel, score, codes)
    perfect = ndcg[varies] >= 1 - 1e-9
    return float(perfect.mean()), int(varies.sum())

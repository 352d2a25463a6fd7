"""Ensembles across families: a weighted average of fitted candidates, the weights found by
greedy forward selection with replacement on the selection predictions (Caruana et al.,
"Ensemble Selection from Libraries of Models", 2004), kept only when it beats the best
single candidate beyond noise (:func:`gain_interval`).

Members may read different featurizers (LightGBM's codes, a linear model's one-hot): the
package then holds them side by side (:mod:`mlsd.features.stacked`) and each member reads
its own columns. The average is an :class:`~mlsd.models.families.EnsembleModel`, saved as
its members' own native files (LightGBM text, coefficients JSON), never a pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mlsd.models.base import Model, TaskInfo
from mlsd.models.families import EnsembleModel

ROUNDS = 25  # greedy additions at most: weights in steps of 1/25 at the finest
BOOTSTRAPS = 300


def weighted(
    members: Sequence[Model],
    names: Sequence[str],
    weights: Sequence[float],
    spans: Sequence[tuple[int, int]] | None,
    task: TaskInfo,
) -> EnsembleModel:
    """An ensemble of fitted ``members`` (called ``names`` in reports) averaged with
    ``weights``, member i reading columns ``spans[i]`` of the feature matrix."""
    params = {
        "method": "weighted",
        "members": list(names),
        "weights": [float(w) for w in weights],
        "spans": None if spans is None else [list(map(int, s)) for s in spans],
    }
    return EnsembleModel(task, params, 0, members)


def greedy_weights(
    preds: Sequence[np.ndarray],
    score: Callable[[np.ndarray], float],
    higher_is_better: bool,
    rounds: int = ROUNDS,
) -> np.ndarray:
    """Weights over ``preds`` (the first is the best alone): start from the best, then add,
    with replacement, whichever prediction improves the average's ``score`` most; stop when
    none does. Returns each prediction's share of the additions."""
    sign = 1.0 if higher_is_better else -1.0
    counts = np.zeros(len(preds))
    counts[0] = 1
    total = np.asarray(preds[0], dtype=np.float64).copy()
    best = sign * score(total)
    for _ in range(rounds - 1):
        n = counts.sum()
        trials = [sign * score((total + p) / (n + 1)) for p in preds]
        pick = int(np.nanargmax(trials))
        if not trials[pick] > best:
            break
        best = trials[pick]
        counts[pick] += 1
        total = total + preds[pick]
    return counts / counts.sum()


def gain_interval(
    y: np.ndarray,
    ensemble: np.ndarray,
    single: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
    higher_is_better: bool,
    seed: int = 0,
    level: float = 0.9,
) -> tuple[float, float]:
    """The gain of ``ensemble`` over ``single`` predictions of the same rows (positive:
    better) and the one-sided lower bound at ``level`` of its paired bootstrap: resampled
    rows, both scored on each resample by ``metric(y, pred, rows)``."""
    sign = 1.0 if higher_is_better else -1.0
    rows = np.arange(len(y))
    gain = sign * (metric(y, ensemble, rows) - metric(y, single, rows))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAPS):
        idx = rng.integers(0, len(y), len(y))
        draws.append(sign * (metric(y, ensemble, idx) - metric(y, single, idx)))
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    low = float(np.quantile(draws, 1 - level)) if len(draws) else float("nan")
    return float(gain), low

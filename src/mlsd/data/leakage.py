"""Target leakage: features that are the target in another form, told apart from strong ones.

A feature *leaks* when it determines the target: a copy, a recoding of the labels, a unit
conversion or a log of a number, a set of columns that add up to it. Such a value is only
known once the outcome is, so a model trained on it is useless in production. A feature that
merely predicts well is what a model is for; it is worth a warning (is it recorded before the
outcome?) but must not block training. Three tests find determination, each on the rows a
fit did not see or on a statistic that cannot be reached by chance:

- **monotone** (numeric targets): the ranks of the column and the target agree, |Spearman|
  at least :data:`MONOTONE_RHO`. Copies, unit conversions and logs land at 1.0.
- **lookup**: every row's target predicted from the training-fold row with the nearest value
  of the column (same category, or nearest number), cross-fitted over two folds. A column
  the target is a function of makes next to no error there: held-out R² at least
  :data:`EXACT_FIT` for numbers; for classes, no more errors than the class boundaries
  themselves cost (one per boundary per fold) plus 1% of what always guessing the majority
  class gets wrong.
- **sum**: a few numeric columns whose linear combination equals the target (R² at least
  :data:`EXACT_FIT` with far more rows than columns): parts of a total.

A **strong** feature is one whose coarse lookup (32 quantile bins, cross-fitted) scores at
least ``data.checks.leakage`` (R², ROC AUC or accuracy) without determining the target: a
warning with its score and its error count.

Ranking (grouped tasks) adds a fourth test of determination and scores strength per group:

- **order**: the column alone (higher first, or lower first) orders every group whose
  relevance varies perfectly (NDCG 1: ties only between equal relevance), in at least
  :data:`ORDER_SHARE` of at least :data:`MIN_GROUPS` such groups: a copy of the relevance,
  or a rank written down once the outcome was known, even when its scale differs by group.
- strength is the NDCG lift of the cross-fitted coarse lookup (folds of whole groups): the
  share of the gap between a random order and the ideal one that the column alone closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data import ranking
from mlsd.tasks import get_task

SAMPLE = 20_000  # rows the checks look at: determination shows on any sample this size
MONOTONE_RHO = 0.999  # |Spearman| of a monotone function of the target, short of ties
EXACT_FIT = 0.999  # held-out R² (lookup) or in-sample R² (sums) of a determined target
SUM_FIT = 0.9999  # R² of a linear combination that "is" the target
MIN_ROWS = 20  # below this no claim of determination is made
COARSE_BINS = 32
FOLDS = 5  # for the strength score: every row is scored once
MIN_GROUPS = 20  # ranking: groups with varying relevance needed to claim an exact order
ORDER_SHARE = 0.99  # ranking: share of those groups a determining column orders perfectly


@dataclass
class Finding:
    """One column's verdict: how it relates to the target and the evidence."""

    column: str
    kind: str  # "monotone" | "lookup" | "order" | "sum" | "strong"
    evidence: dict[str, Any]

    @property
    def determines(self) -> bool:
        """True for the kinds that mean the column is the target in another form."""
        return self.kind != "strong"


def _as_numbers(series: pd.Series) -> np.ndarray | None:
    """A column as float64 (datetimes as epoch seconds, booleans as 0/1); None for
    categories and text."""
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object:
        return None
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        # in numpy and the column's own unit: pandas would subtract in nanoseconds, which
        # overflow for times after 2262 (a Parquet column in seconds can hold year 9999)
        if series.dt.tz is not None:
            series = series.dt.tz_convert(None)
        return (series.to_numpy() - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    try:
        return series.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return None


def _codes(series: pd.Series) -> np.ndarray:
    """Category codes with missing as a code of its own."""
    codes = pd.Series(series).astype("category").cat.codes.to_numpy().astype(np.int64)
    return np.where(codes < 0, codes.max() + 1, codes)


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    """A balanced fold number per row, in a seeded random order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def _nearest(
    x: np.ndarray | None, codes: np.ndarray | None, y: np.ndarray, fit: np.ndarray, classes: int
) -> np.ndarray:
    """Each row not in ``fit`` predicted by the fit rows with the nearest value of the column
    (their mean, or majority class); rows whose value the fit rows never had (an unseen
    category, a missing number) get the fit rows' overall mean or majority."""
    values = (codes if x is None else x).astype(float)
    known = fit & np.isfinite(values)
    keys, inverse = np.unique(values[known], return_inverse=True)
    if classes:
        labels = y[known].astype(np.int64)
        table = np.bincount(inverse * classes + labels, minlength=len(keys) * classes)
        answer = table.reshape(len(keys), classes).argmax(axis=1).astype(float)
        fallback = float(np.bincount(y[fit].astype(np.int64), minlength=classes).argmax())
    else:
        answer = np.bincount(inverse, weights=y[known]) / np.bincount(inverse)
        fallback = float(y[fit].mean())
    query = values[~fit]
    out = np.full(len(query), fallback)
    finite = np.isfinite(query)
    if not len(keys) or not finite.any():
        return out
    q = query[finite]
    right = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    if x is None:  # categories: the same category or nothing
        out[finite] = np.where(keys[right] == q, answer[right], fallback)
        return out
    left = np.maximum(right - 1, 0)
    out[finite] = answer[np.where(np.abs(q - keys[left]) <= np.abs(keys[right] - q), left, right)]
    return out


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((y - pred) ** 2).sum()) / total if total else float("nan")


def _lookup(
    x: np.ndarray | None, codes: np.ndarray | None, y: np.ndarray, classes: int, seed: int
) -> dict[str, Any]:
    """Cross-fitted nearest-value predictions of the target over two folds, scored."""
    fold = _folds(len(y), 2, seed)
    pred = np.empty(len(y))
    for f in (0, 1):
        pred[fold == f] = _nearest(x, codes, y, fold != f, classes)
    if not classes:
        return {"r2": _r2(y, pred)}
    errors = int((pred != y).sum())
    majority = int(len(y) - np.bincount(y.astype(int), minlength=classes).max())
    return {"errors": errors, "majority_errors": majority, "rows": len(y)}


def _coarse_codes(x: np.ndarray | None, codes: np.ndarray | None) -> np.ndarray:
    """Quantile bins of a number (missing its own bin), or the category codes. The edges
    come from the column alone, never from the target, so every fold may share them."""
    if x is None:
        return codes
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(len(x), dtype=np.int64)
    edges = np.unique(np.quantile(x[finite], np.linspace(0, 1, COARSE_BINS + 1)[1:-1]))
    return np.where(finite, np.searchsorted(edges, x, side="right"), len(edges) + 1)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties averaged."""
    ranks = pd.Series(score).rank().to_numpy()
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if not n1 or not n0:
        return float("nan")
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def strength(
    x: np.ndarray | None, codes: np.ndarray | None, y: np.ndarray, task: str, classes: int, seed
) -> float:
    """How well the column's coarse bins alone predict held-out targets (cross-fitted):
    the task's ``leakage_metric``: R² for numbers, ROC AUC for two classes, accuracy for more."""
    metric = get_task(task).leakage_metric
    fold = _folds(len(y), FOLDS, seed)
    pred = np.empty(len(y))
    binned = _coarse_codes(x, codes)
    size = int(binned.max()) + 1
    for f in range(FOLDS):
        fit, held = fold != f, fold == f
        count = np.bincount(binned[fit], minlength=size).astype(float)
        if metric == "accuracy":  # the majority class of the bin
            table = np.zeros((size, classes))
            np.add.at(table, (binned[fit], y[fit].astype(int)), 1)
            prior = np.bincount(y[fit].astype(int), minlength=classes).argmax()
            pred[held] = np.where(count > 0, table.argmax(axis=1), prior)[binned[held]]
        else:
            total = np.bincount(binned[fit], weights=y[fit], minlength=size)
            mean = np.where(count > 0, total / np.maximum(count, 1), y[fit].mean())
            pred[held] = mean[binned[held]]
    if metric == "accuracy":
        return float((pred == y).mean())
    if metric == "roc_auc":
        return _auc(y, pred)
    return _r2(y, pred)


def ranking_strength(
    x: np.ndarray | None, codes: np.ndarray | None, y: np.ndarray, groups: np.ndarray, seed
) -> dict[str, Any]:
    """How well the column's coarse bins alone order held-out groups: the bins' mean
    relevance learnt on the other folds (folds of whole groups), scored by NDCG per group
    against a random order; ``lift`` is the share of the gap to the ideal order closed."""
    n_groups = int(groups.max()) + 1
    fold = _folds(n_groups, FOLDS, seed)[groups]
    pred = np.empty(len(y))
    binned = _coarse_codes(x, codes)
    size = int(binned.max()) + 1
    for f in range(FOLDS):
        fit, held = fold != f, fold == f
        if not held.any():
            continue
        count = np.bincount(binned[fit], minlength=size).astype(float)
        total = np.bincount(binned[fit], weights=y[fit], minlength=size)
        mean = np.where(count > 0, total / np.maximum(count, 1), y[fit].mean())
        pred[held] = mean[binned[held]]
    return ranking.ndcg_lift(y, pred, groups)


def exact_order(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, Any] | None:
    """Evidence that the column alone orders every group perfectly (either direction), or
    None: see :data:`ORDER_SHARE` and :data:`MIN_GROUPS`."""
    for direction, score in (("higher first", x), ("lower first", -x)):
        share, n = ranking.perfect_order_share(y, score, groups)
        if n >= MIN_GROUPS and share >= ORDER_SHARE:
            return {"perfect_share": round(share, 4), "groups": n, "direction": direction}
    return None


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    finite = np.isfinite(x)
    if finite.sum() < MIN_ROWS:
        return float("nan")
    rx = pd.Series(x[finite]).rank().to_numpy()
    ry = pd.Series(y[finite]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def column_findings(
    frame: pd.DataFrame,
    y: np.ndarray,
    features: list[str],
    task: str,
    classes: int,
    limit: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> list[Finding]:
    """Per feature: ``monotone``, ``lookup`` or (ranking) ``order`` when it determines the
    target, ``strong`` when it merely scores at least ``limit`` alone; columns that are
    neither are left out. ``y`` is the encoded target (floats, or class indices with
    ``classes`` > 0); ``groups`` the group code of each row (0..G-1) for a grouped task,
    whose strength is then the NDCG lift per group (see :func:`ranking_strength`)."""
    found = []
    numeric_target = not get_task(task).classification
    for name in features:
        x = _as_numbers(frame[name])
        codes = _codes(frame[name]) if x is None else None
        if x is not None and not np.isfinite(x).any():
            continue
        if len(y) >= MIN_ROWS:
            if numeric_target and x is not None:
                rho = _spearman(x, y)
                if abs(rho) >= MONOTONE_RHO:
                    found.append(Finding(name, "monotone", {"spearman": round(rho, 6)}))
                    continue
            if groups is not None and x is not None:
                order = exact_order(x, y, groups)
                if order is not None:
                    found.append(Finding(name, "order", order))
                    continue
            fit = _lookup(x, codes, y, classes, seed)
            if numeric_target:
                if fit["r2"] >= EXACT_FIT:
                    found.append(Finding(name, "lookup", {"r2": round(fit["r2"], 6)}))
                    continue
            elif fit["errors"] <= 2 * (classes - 1) + 0.01 * fit["majority_errors"]:
                found.append(Finding(name, "lookup", fit))
                continue
        metric = get_task(task).leakage_metric
        if groups is not None:
            lift = ranking_strength(x, codes, y, groups, seed)
            if lift["lift"] >= limit:
                evidence = {k: round(v, 4) for k, v in lift.items()}
                score = evidence.pop("lift")
                found.append(
                    Finding(name, "strong", {"metric": metric, "score": score, **evidence})
                )
            continue
        score = strength(x, codes, y, task, classes, seed)
        if score >= limit:
            found.append(Finding(name, "strong", {"metric": metric, "score": round(score, 4)}))
    return found


def _r2_linear(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    design = np.column_stack([x, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return _r2(y, design @ coef), coef


def exact_sum(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, Any] | None:
    """The smallest set of numeric columns (found greedily) whose linear combination is the
    target, with its coefficients; None when no combination is exact.

    All columns are fitted at once (with many more rows than columns an R² of
    :data:`SUM_FIT` is no accident), then columns are dropped one by one, least useful first,
    while the fit stays exact, so a strong but innocent column is not named with the parts.
    """
    n, p = x.shape
    if p == 0 or n < 5 * p + MIN_ROWS:
        return None
    x = np.where(np.isfinite(x), x, np.nan)
    x = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    x = np.nan_to_num(x)
    r2, _ = _r2_linear(x, y)
    if not r2 >= SUM_FIT:
        return None
    # the pruning refits many times: a few rows per column are plenty to tell exact from not
    rows = np.random.default_rng(0).permutation(n)[: max(2000, 10 * p)]
    xs, ys = x[rows], y[rows]
    keep = list(range(p))
    scale = xs.std(axis=0)
    while len(keep) > 1:
        _, coef = _r2_linear(xs[:, keep], ys)
        order = np.argsort(np.abs(coef[:-1]) * scale[keep])  # least weight first
        for i in order:
            trial = [k for j, k in enumerate(keep) if j != i]
            if _r2_linear(xs[:, trial], ys)[0] >= SUM_FIT:
                keep = trial
                break
        else:
            break
    r2, coef = _r2_linear(x[:, keep], y)
    if not r2 >= SUM_FIT:
        return None
    return {
        "columns": [names[k] for k in keep],
        "r2": round(r2, 6),
        "coefficients": [round(float(c), 4) + 0.0 for c in coef],  # + 0.0: no -0.0
    }

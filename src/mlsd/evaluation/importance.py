"""Which inputs the model leans on: gain, SHAP contributions, coefficients, permutation.

Which views apply is the importance method its family declares
(:data:`mlsd.model_params.TREES` or :data:`~mlsd.model_params.COEFFICIENTS`); permutation
applies to every model. Every view is reported per *input column* (the one-hot or cyclical
features a column expands into are summed back), because that is what a person can act on;
coefficients stay per feature, since a linear model's weight belongs to one feature.

- gain: LightGBM's total split gain per feature (how much the trees used it).
- SHAP: LightGBM's own exact TreeSHAP contributions (``pred_contrib``), mean absolute value
  over rows; per row they sum, with the expected value, to the raw score.
- coefficients: a linear model's weights on standardised features.
- permutation: how much the primary metric worsens on validation rows when one column's
  values are shuffled (all of its features shuffled together, so a column is one unit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlsd.evaluation.metrics import MetricError, compute, get_metric
from mlsd.model_params import COEFFICIENTS, FAMILIES, TREES

TOP = 20  # rows per importance table
SHAP_ROWS = 2000  # TreeSHAP costs trees x leaves x depth per row: a sample says enough
PERMUTATION_ROWS = 2000
PERMUTATION_REPEATS = 3


def feature_groups(featurizer: Any) -> list[tuple[str, slice]]:
    """(input column, its slice of feature-matrix columns) per featurizer transform; a cross of
    several columns is named ``a+b``."""
    groups, start = [], 0
    for transform in featurizer.transforms:
        width = len(transform.names)
        groups.append(("+".join(transform.inputs), slice(start, start + width)))
        start += width
    return groups


def _by_column(values: np.ndarray, featurizer: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, span in feature_groups(featurizer):
        out[name] = out.get(name, 0.0) + float(np.sum(values[span]))
    return out


def _ranked(values: dict[str, float], key: str) -> list[dict[str, Any]]:
    total = sum(abs(v) for v in values.values()) or 1.0
    rows = sorted(values.items(), key=lambda kv: -abs(kv[1]))[:TOP]
    return [{"feature": k, key: v, "share": abs(v) / total} for k, v in rows]


def method(model: Any) -> str | None:
    """How ``model``'s family reads its importance (None for a model of no declared family,
    such as an ensemble)."""
    family = FAMILIES.get(model.family)
    return family.importance if family else None


def _lightgbm_booster(model: Any) -> Any:
    """The lightgbm package's Booster for a fitted or loaded mlsd GBDT model (offline only)."""
    import lightgbm as lgb

    return lgb.Booster(model_str=model.model_string())


def contributions(model: Any, X: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions of a LightGBM model: ``(n, features + 1)`` whose last column is
    the expected value; for k classes ``(n, k, features + 1)``. Rows sum to the raw score."""
    booster = _lightgbm_booster(model)
    out = booster.predict(np.asarray(X, dtype=np.float64), pred_contrib=True)
    out = np.asarray(out)
    k = model.task.n_scores
    return out.reshape(len(X), k, -1) if k > 1 else out


def raw_score(model: Any, X: np.ndarray) -> np.ndarray:
    """A LightGBM model's raw (margin) score: log-odds for binary, the value for regression."""
    return np.asarray(
        _lightgbm_booster(model).predict(np.asarray(X, dtype=np.float64), raw_score=True)
    )


def gain(model: Any, featurizer: Any) -> list[dict[str, Any]] | None:
    """Total split gain per input column (tree models; None for other families)."""
    if method(model) != TREES:
        return None
    values = _lightgbm_booster(model).feature_importance(importance_type="gain")
    return _ranked(_by_column(np.asarray(values, dtype=np.float64), featurizer), "gain")


def shap(model: Any, featurizer: Any, X: np.ndarray, seed: int = 0) -> dict[str, Any] | None:
    """Mean |SHAP contribution| per input column on (a sample of) ``X``; tree models only."""
    if method(model) != TREES or not len(X):
        return None
    rows = _sample(len(X), SHAP_ROWS, seed)
    contrib = contributions(model, X[rows])
    if contrib.ndim == 3:  # multiclass: the mean over classes of each class's |contribution|
        mean_abs = np.abs(contrib[:, :, :-1]).mean(axis=(0, 1))
        expected = contrib[0, :, -1].tolist()
    else:
        mean_abs = np.abs(contrib[:, :-1]).mean(axis=0)
        expected = float(contrib[0, -1])
    return {
        "rows": len(rows),
        "expected_value": expected,
        "mean_abs": _ranked(_by_column(mean_abs, featurizer), "mean_abs"),
    }


def coefficients(model: Any) -> list[dict[str, Any]] | None:
    """A linear model's weights on its standardised features, largest first (None otherwise).
    With several outputs (multiclass) the weight shown is the largest in absolute value."""
    if method(model) != COEFFICIENTS or model.coef_ is None:
        return None
    coef = np.asarray(model.coef_)
    names = model.feature_names or [f"f{i}" for i in range(coef.shape[0])]
    pick = coef[np.arange(coef.shape[0]), np.abs(coef).argmax(axis=1)]
    order = np.argsort(-np.abs(pick), kind="stable")[:TOP]
    return [{"feature": names[i], "coefficient": float(pick[i])} for i in order]


def permutation(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    featurizer: Any,
    *,
    task: str,
    metric: str,
    threshold: float = 0.5,
    repeats: int = PERMUTATION_REPEATS,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """How much ``metric`` worsens when each input column is shuffled (mean over ``repeats``),
    positive when the column matters. None when the metric is undefined on these rows.
    With ``groups`` (ranking) whole groups are sampled and the metric is scored per group."""
    if not len(X):
        return None
    rng = np.random.default_rng(seed)
    if groups is None:
        rows = _sample(len(X), PERMUTATION_ROWS, seed)
    else:
        groups = np.asarray(groups)
        rows = _sample_groups(groups, PERMUTATION_ROWS, seed)
        groups = groups[rows]
    X, y = np.array(X[rows], dtype=np.float64), np.asarray(y)[rows]
    direction = 1.0 if get_metric(metric).direction == "max" else -1.0

    def score(matrix: np.ndarray) -> float | None:
        try:
            value = compute(
                task, y, predict(matrix), names=[metric], threshold=threshold, groups=groups
            )
        except MetricError:
            return None
        return value[metric]

    base = score(X)
    if base is None:
        return None
    drops: dict[str, list[float]] = {}
    for name, span in feature_groups(featurizer):
        original = X[:, span].copy()
        for _ in range(repeats):
            X[:, span] = original[rng.permutation(len(X))]
            value = score(X)
            if value is not None:
                drops.setdefault(name, []).append(direction * (base - value))
        X[:, span] = original
    table = sorted(drops.items(), key=lambda kv: -float(np.mean(kv[1])))[:TOP]
    return {
        "metric": metric,
        "baseline": base,
        "rows": len(rows),
        "repeats": repeats,
        "drop": [
            {"feature": k, "drop": float(np.mean(v)), "std": float(np.std(v))} for k, v in table
        ],
    }


def _sample(n: int, cap: int, seed: int) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def _sample_groups(groups: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Rows of whole groups, drawn at random until about ``cap`` rows (at least one group)."""
    if len(groups) <= cap:
        return np.arange(len(groups))
    codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)[1:]
    order = np.random.default_rng(seed).permutation(len(sizes))
    take = order[: max(1, int(np.searchsorted(np.cumsum(sizes[order]), cap, side="right")))]
    return np.flatnonzero(np.isin(codes, take))


def analyse(
    model: Any,
    featurizer: Any,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    task: str,
    metric: str,
    threshold: float = 0.5,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """The importance section of the evaluation report (views that do not apply are None);
    ``groups``: the query group of each row (ranking)."""
    return {
        "by": "input column",
        "gain": gain(model, featurizer),
        "shap": shap(model, featurizer, X_valid, seed),
        "coefficients": coefficients(model),
        "permutation": permutation(
            model.predict,
            X_valid,
            y_valid,
            featurizer,
            task=task,
            metric=metric,
            threshold=threshold,
            seed=seed,
            groups=groups,
        ),
    }

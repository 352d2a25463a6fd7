"""Reference profiles of a data set, and drift distances against them.

:func:`profile` summarises each column once, at snapshot time: counts, missing rates,
quantiles and a histogram on quantile bin edges for numbers, category frequencies for
categories. Monitoring keeps only this profile, never the training data, and measures drift
of new values against it with :func:`psi_numeric` and :func:`psi_categorical`.

Numeric histogram layout: ``edges`` holds the finite cut points e1 < ... < em and
``counts`` the m + 1 bins (-inf, e1), [e1, e2), ..., [em, +inf); the outer bins are open so
new values outside the reference range are still counted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.tasks import LABEL, PER_CLASS, get_task
from mlsd.values import FALSE_WORDS, TRUE_WORDS, category_key

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SKETCH_BINS = 100  # percentile bins of the numeric sketch that KS and Wasserstein drift read
OTHER = "__other__"  # categories outside the top_k
MISSING = "__missing__"  # missing values, in categorical drift
TYPES = ("numeric", "boolean", "categorical", "datetime", "text", "identifier")


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN or infinity)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _as_float(series: pd.Series) -> np.ndarray:
    """Numeric values as float64 with NaN for missing or unreadable values."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series.astype(object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _bin_edges(finite_sorted_quantiles: np.ndarray) -> np.ndarray:
    """Interior cut points from quantile edges q0..qb: drop the outer two, collapse repeats."""
    inner = finite_sorted_quantiles[1:-1]
    # interpolating between values near ±1.8e308 overflows to infinity: not a cut point
    return np.unique(inner[np.isfinite(inner)])


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of non-missing ``values`` in (-inf, e1), [e1, e2), ..., [em, +inf)."""
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def _numeric(series: pd.Series, n: int, bins: int) -> dict:
    values = _as_float(series)
    present = values[~np.isnan(values)]
    is_finite = np.isfinite(present)
    finite = present if is_finite.all() else present[is_finite]
    count = int(present.size)
    out: dict[str, Any] = {
        "count": count,
        "missing": n - count,
        "missing_rate": (n - count) / n if n else 0.0,
        "infinite": int(present.size - finite.size),
    }
    if finite.size == 0:
        out.update(
            mean=None,
            std=None,
            min=None,
            max=None,
            quantiles={f"{q:g}": None for q in QUANTILES},
            histogram={"edges": [], "counts": [count]},
        )
        return out
    # one selection pass for both the reported quantiles and the histogram edges
    edge_levels = np.linspace(0.0, 1.0, bins + 1)
    sketch_levels = np.linspace(0.0, 1.0, SKETCH_BINS + 1)
    levels = np.unique(np.concatenate([QUANTILES, edge_levels, sketch_levels]))
    found = np.quantile(finite, levels)
    at = dict(zip(levels.tolist(), found.tolist(), strict=True))
    edges = _bin_edges(np.array([at[q] for q in edge_levels]))
    sketch_at = np.array([at[q] for q in sketch_levels])
    out.update(
        mean=_num(finite.mean()),
        std=_num(finite.std(ddof=1)) if finite.size > 1 else None,
        min=_num(at[0.0]),
        max=_num(at[1.0]),
        quantiles={f"{q:g}": _num(at[q]) for q in QUANTILES},
        histogram={
            "edges": [float(e) for e in edges],
            "counts": _histogram(present, edges).tolist(),
        },
        sketch=_sketch(present, finite, sketch_at, edges),
    )
    return out


def _distinct(finite: np.ndarray, limit: int) -> np.ndarray | None:
    """The sorted distinct values when there are at most ``limit`` of them, else None."""
    probe = finite[:: max(1, finite.size // 2000)]  # cheap no for continuous columns
    if pd.unique(probe).size > limit:
        return None
    values = pd.unique(finite)
    return np.sort(values) if values.size <= limit else None


def _sketch(
    present: np.ndarray, finite: np.ndarray, quantiles: np.ndarray, coarse_edges: np.ndarray
) -> dict:
    """A fine histogram for drift tests: exact counts and value means on percentile edges.

    Edges are the percentiles (or every value, when a column has at most ``SKETCH_BINS``
    distinct ones: ``distinct`` is then true), the coarse histogram's edges (so its bins are
    unions of these) and the float just above the maximum, so values beyond the reference
    range land in a bin the reference leaves empty: (-inf, e1), [e1, e2), ..., [em, +inf).
    Exact counts on fixed edges let a binned Kolmogorov-Smirnov statistic be computed later;
    it can only be smaller than the statistic on raw values, so its p-value errs on the safe
    side.
    """
    distinct = _distinct(finite, SKETCH_BINS)
    top = np.nextafter(quantiles[-1], np.inf)
    cuts = quantiles if distinct is None else distinct
    edges = np.unique(np.concatenate([cuts, coarse_edges, [top]]))
    edges = edges[np.isfinite(edges)]
    bins = np.searchsorted(edges, present, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    sums = np.bincount(bins, weights=present, minlength=len(edges) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return {
        "edges": [float(e) for e in edges],
        "counts": counts.tolist(),
        "means": [_num(m) if c else None for m, c in zip(means.tolist(), counts, strict=True)],
        "distinct": distinct is not None,
    }


def _to_truth(series: pd.Series) -> np.ndarray:
    """Booleans as float 1/0 with NaN for missing or unreadable values."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isnan(values), np.nan, (values != 0).astype(np.float64))
    words = series.astype(str).str.strip().str.lower()
    out = np.full(len(series), np.nan)
    out[words.isin(TRUE_WORDS).to_numpy()] = 1.0
    out[words.isin(FALSE_WORDS).to_numpy()] = 0.0
    out[series.isna().to_numpy()] = np.nan
    return out


def _boolean(series: pd.Series, n: int) -> dict:
    truth = _to_truth(series)
    present = ~np.isnan(truth)
    count = int(present.sum())
    return {
        "count": count,
        "missing": n - count,
        "missing_rate": (n - count) / n if n else 0.0,
        "true_rate": float(truth[present].mean()) if count else None,
    }


def _value_counts(series: pd.Series) -> pd.Series:
    """Counts of each present value, most frequent first, with zero counts dropped."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(series.cat.categories))
        result = pd.Series(counts, index=series.cat.categories)
        result = result[result > 0]
        # stable sort keeps category order among equal counts: same data, same profile
        return result.iloc[np.argsort(-result.to_numpy(), kind="stable")]
    return series.value_counts(dropna=True, sort=True)


def _categorical(series: pd.Series, n: int, kind: str, top_k: int) -> dict:
    counts = _value_counts(series)
    if kind == "categorical":  # values the featurizer reads as missing ("") count as missing
        counts = counts[[category_key(v) is not None for v in counts.index]]
    count = int(counts.sum())
    out: dict[str, Any] = {
        "count": count,
        "missing": n - count,
        "missing_rate": (n - count) / n if n else 0.0,
        "n_unique": len(counts),
    }
    if kind == "categorical":
        top: dict[str, int] = {}
        for value, c in counts.iloc[:top_k].items():
            key = category_key(value)
            top[key] = top.get(key, 0) + int(c)  # 1 and 1.0 would share a key
        top[OTHER] = int(counts.iloc[top_k:].sum())
        out["counts"] = top
    else:  # free text and ids: their values are not a distribution worth keeping
        lengths = pd.Series(counts.index.astype(str)).str.len().to_numpy()
        out["mean_length"] = float(lengths @ counts.to_numpy() / count) if count else None
    return out


def _datetime(series: pd.Series, n: int) -> dict:
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        series = pd.to_datetime(series.astype(object), errors="coerce", format="ISO8601")
    count = int(series.notna().sum())
    return {
        "count": count,
        "missing": n - count,
        "missing_rate": (n - count) / n if n else 0.0,
        "min": series.min().isoformat() if count else None,
        "max": series.max().isoformat() if count else None,
    }


def profile(
    df: pd.DataFrame, column_types: dict[str, str], *, bins: int = 10, top_k: int = 50
) -> dict:
    """The reference profile of ``df``: ``{"n_rows": n, "columns": {name: {...}}}``.

    ``column_types`` maps each column to profile to its type (numeric, boolean, categorical,
    datetime, text, identifier); other columns are skipped. Every column entry has ``type``,
    ``count`` (non-missing), ``missing`` and ``missing_rate``, and then:

    - numeric: ``infinite`` (count, left out of the statistics), ``mean``, ``std``, ``min``,
      ``max``, ``quantiles`` (keys "0", "0.01", ..., "1") and ``histogram`` with ``edges``
      (cut points from the ``bins`` + 1 quantiles, outer two dropped, repeats collapsed) and
      ``counts`` of the bins (-inf, e1), [e1, e2), ..., [em, +inf); ``sketch``, the same
      layout on finer edges (every percentile, or every value when there are at most 100
      distinct ones (``distinct``), the histogram's edges and the float just above the
      maximum) with ``counts`` and per-bin value ``means``, for drift tests.
    - boolean: ``true_rate``.
    - categorical: ``n_unique`` and ``counts`` of the ``top_k`` most frequent values (keys
      from :func:`category_key`) plus ``"__other__"`` for the rest.
    - text, identifier: ``n_unique`` and ``mean_length``; no values are kept.
    - datetime: ``min`` and ``max`` as ISO strings.

    The result is plain JSON: no numpy scalars, no NaN (None instead).
    """
    if bins < 1 or top_k < 0:
        raise DataError(
            f"profile needs bins >= 1 and top_k >= 0 — given bins={bins}, top_k={top_k}",
            hint="pass a positive number of bins",
        )
    n = len(df)
    columns: dict[str, dict] = {}
    for name, kind in column_types.items():
        if name not in df.columns:
            raise DataError(
                f"cannot profile column '{name}': it is not in the data — given columns: "
                f"{', '.join(map(str, list(df.columns)[:20]))}",
                hint="profile only columns of this frame (check the schema's column names)",
            )
        series = df[name]
        if kind == "numeric":
            col = _numeric(series, n, bins)
        elif kind == "boolean":
            col = _boolean(series, n)
        elif kind in ("categorical", "text", "identifier"):
            col = _categorical(series, n, kind, top_k)
        elif kind == "datetime":
            col = _datetime(series, n)
        else:
            raise DataError(
                f"cannot profile column '{name}': unknown type — given {kind!r}",
                hint="use one of: " + ", ".join(TYPES),
            )
        columns[str(name)] = {"type": kind, **col}
    return {"n_rows": n, "columns": columns}


# --- drift distances ---------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index between two count (or share) vectors over the same bins.

    ``sum((a - e) * ln(a / e))`` over the bins' shares, with shares floored at ``eps`` so
    empty bins give a large but finite term. 0 means identical; above about 0.1 is a
    moderate shift and above 0.25 a large one. Returns 0.0 when either side is empty (no
    values, no evidence of a change in their distribution).
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"psi needs vectors over the same bins — given {e.shape} and {a.shape}")
    e_total, a_total = e.sum(), a.sum()
    if e_total <= 0 or a_total <= 0:
        return 0.0
    e = np.maximum(e / e_total, eps)
    a = np.maximum(a / a_total, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_numeric(reference_col_profile: dict, values: np.ndarray) -> float:
    """PSI of new numeric ``values`` against a numeric column profile from :func:`profile`.

    The values are counted in the reference histogram's bins (quantile edges, open outer
    bins); missing values are left out (missing rates are compared separately).
    """
    hist = reference_col_profile["histogram"]
    edges = np.asarray(hist["edges"], dtype=np.float64)
    actual = _histogram(_as_float(pd.Series(values)), edges)
    return psi(np.asarray(hist["counts"]), actual)


def psi_categorical(reference_col_profile: dict, values: Any) -> float:
    """PSI of new category ``values`` against a categorical column profile.

    Bins are the reference's top categories, ``"__other__"`` (every value outside them,
    including categories never seen before) and ``"__missing__"``.
    """
    ref_counts: dict[str, int] = reference_col_profile["counts"]
    keys = [k for k in ref_counts if k != OTHER]
    expected = [ref_counts[k] for k in keys] + [
        ref_counts.get(OTHER, 0),
        reference_col_profile.get("missing", 0),
    ]
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    counts = _value_counts(series)
    observed: dict[str, int] = {}
    for value, c in counts.items():
        key = category_key(value)
        observed[key] = observed.get(key, 0) + int(c)
    known = [observed.pop(k, 0) for k in keys]
    missing = len(series) - int(counts.sum()) + observed.pop(None, 0)
    actual = [*known, sum(observed.values()), missing]
    return psi(np.asarray(expected), np.asarray(actual))


# --- model outputs -----------------------------------------------------------------------------


def predictions_profile(
    pred: np.ndarray, task: str, classes: list | None = None, threshold: float = 0.5
) -> dict:
    """The reference profile of a model's outputs, named as the server answers them.

    One column per output field of the task (``Task.outputs``): numbers numeric, labels
    categorical (at ``threshold``), a per-class field one numeric ``<field>.<class>`` per
    class. Monitoring tests prediction drift on it with the same machinery as features
    (``mlsd.monitoring.drift``).
    """
    kind = get_task(task)
    pred = np.asarray(pred, dtype=np.float64)
    # labels as the server answers them (the class values: 0.0 is category "0", as served),
    # probabilities under the server's keys (str of the class)
    values = np.asarray(list(classes or []), dtype=object)
    columns: dict[str, Any] = {}
    types: dict[str, str] = {}
    for field, v in zip(kind.outputs, kind.output_values(pred, threshold), strict=True):
        if field.kind == LABEL:
            columns[field.name] = values[v] if len(values) else None
            types[field.name] = "categorical"
        elif field.kind == PER_CLASS:
            for i, c in enumerate(values):
                columns[f"{field.name}.{c}"] = v[:, i]
                types[f"{field.name}.{c}"] = "numeric"
        else:
            columns[field.name] = v.reshape(-1)
            types[field.name] = "numeric"
    return profile(pd.DataFrame(columns), types)

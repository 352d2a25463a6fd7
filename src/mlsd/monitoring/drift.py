"""Feature drift: is this window of traffic distributed like the data the model learned from?

Monitoring never reads the training data again: each column of the current window is
compared with its entry in the package's reference profile (:mod:`mlsd.data.profile`).

Every column gets a hypothesis test (a p-value) and an effect size (a distance). A column
drifts when its p-value, corrected for testing many columns at once, is below ``alpha`` AND
its distance reaches the method's threshold. The test keeps small windows from alerting on
noise; the distance keeps huge windows from alerting on shifts too small to matter.

===============  ========================================  =====================  =========
method           test (p-value)                            distance               threshold
===============  ========================================  =====================  =========
ks               two-sample Kolmogorov-Smirnov, binned     KS statistic D         0.05 [*]
wasserstein      same KS test                              Wasserstein / ref std  0.1
psi              chi-square on the 10 reference bins       PSI                    0.1
chi2             chi-square homogeneity on the bins        Jensen-Shannon         0.05
jensen_shannon   same chi-square test                      Jensen-Shannon         0.1
===============  ========================================  =====================  =========

[*] or Wasserstein / std >= the wasserstein threshold: D misses a few values moving far (3%
of rows turned into a -999 sentinel: D = 0.03), Wasserstein / std misses the bulk of a
heavy-tailed column moving (lognormal values halved: 0.07 sd, D = 0.14).

Methods chosen by type (``auto``): numeric -> ``ks``, or ``chi2`` when every reference value
sits on a sketch edge (a discrete column such as an hour or a count: KS is needlessly
conservative on ties); categorical and boolean -> ``chi2``. Why these defaults: a 0.3
standard-deviation mean shift gives a PSI of only about 0.09, under the customary 0.1, while
its KS statistic is 0.12; D >= 0.05 and JS >= 0.05 both correspond to about a 0.125 sd shift
of a normal feature.

Honesty of the numeric test: the profile keeps exact reference counts on ~100 percentile
edges (``sketch``); the current values are counted on the same edges and D is the largest
gap of the two cumulative shares at the edges. That can only be smaller than D on the raw
values, so the p-value (Smirnov's distribution with n = n_ref n_cur / (n_ref + n_cur), as
``scipy.stats.ks_2samp`` uses) errs on the safe side. Chi-square pools bins whose expected
count is under 5 so its approximation holds. Missing values are left out of every
distribution and reported as rates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsd.data.profile import OTHER, psi
from mlsd.errors import MlsdError, did_you_mean
from mlsd.values import FALSE_WORDS, TRUE_WORDS, category_key

if TYPE_CHECKING:
    import pyarrow as pa

    from mlsd.spec import DriftSpec

NUMERIC_METHODS = ("ks", "wasserstein", "psi", "chi2", "jensen_shannon")
CATEGORICAL_METHODS = ("chi2", "jensen_shannon", "psi")
METHODS = NUMERIC_METHODS  # every method (numeric columns accept them all)
DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "chi2": 0.05,
    "jensen_shannon": 0.1,
}
DEFAULT_ALPHA = 0.01
TESTED_TYPES = ("numeric", "categorical", "boolean")
CORRECTIONS = ("bh", "bonferroni")
MIN_EXPECTED = 5.0  # chi-square bins with fewer expected rows are pooled
MAX_UNSEEN = 10  # unseen categories listed per column
PARALLEL_VALUES = 500_000  # from this many values in a window, columns are tested in threads


class DriftError(MlsdError):
    """A drift test was asked something it cannot answer (unknown column, method or type)."""

    headline = "drift error"


# --------------------------------------------------------------------------- values


def _to_arrow(values: Any) -> pa.Array | pa.ChunkedArray | None:
    """``values`` as an Arrow array when Arrow can take them as they are, else None."""
    import pyarrow as pa

    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return None


def numeric_values(values: Any) -> np.ndarray:
    """Values as float64 with NaN for missing or unreadable ones (numpy, Arrow, lists)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    arr = _to_arrow(values)
    if arr is None:
        return np.array([_float_or_nan(v) for v in values], dtype=np.float64)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        try:
            arr = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return np.array([_float_or_nan(v) for v in arr.to_pylist()], dtype=np.float64)
    if arr.null_count:
        arr = pc.fill_null(pc.cast(arr, pa.float64()), float("nan"))
    return arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def category_counts(values: Any) -> tuple[dict[str, int], int]:
    """Counts of each category key (see ``category_key``) and the number of missing values."""
    import pyarrow.compute as pc

    arr = _to_arrow(values)
    if arr is None:  # mixed Python types: count the slow way
        counts: dict[str | None, int] = {}
        for v in values:
            key = category_key(v)
            counts[key] = counts.get(key, 0) + 1
        missing = counts.pop(None, 0)
        return counts, missing  # type: ignore[return-value]
    total = len(arr)
    out: dict[str, int] = {}
    missing = 0
    for pair in pc.value_counts(arr).to_pylist():
        key = category_key(pair["values"])
        if key is None:
            missing += pair["counts"]
        else:
            out[key] = out.get(key, 0) + pair["counts"]
    missing += total - missing - sum(out.values())  # nulls are not in value_counts' output
    return out, missing


def boolean_counts(values: Any) -> tuple[int, int, int]:
    """(true, false, missing) counts of booleans given as bools, numbers or words."""
    counts, missing = category_counts(values)
    true = false = 0
    for key, c in counts.items():
        word = key.strip().lower()
        if word in TRUE_WORDS or word == "true":
            true += c
        elif word in FALSE_WORDS or word == "false":
            false += c
        else:
            try:
                number = float(word)
            except ValueError:
                missing += c
                continue
            if number != number:
                missing += c
            elif number:
                true += c
            else:
                false += c
    return true, false, missing


# --------------------------------------------------------------------------- statistics


def ks_p_value(d: float, n_reference: int, n_current: int) -> float:
    """Two-sample KS p-value of statistic ``d``: Smirnov's distribution with n = n1 n2 / (n1 + n2)."""
    from scipy.stats import kstwo

    if n_reference <= 0 or n_current <= 0:
        return 1.0
    en = n_reference * n_current / (n_reference + n_current)
    return float(min(1.0, max(0.0, kstwo.sf(d, max(1, round(en))))))


def _pool(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bins whose smaller expected count is under MIN_EXPECTED into one bin."""
    total = ref + cur
    keep = total > 0
    ref, cur, total = ref[keep], cur[keep], total[keep]
    n = total.sum()
    if n <= 0:
        return ref, cur
    expected = total * min(ref.sum(), cur.sum()) / n
    small = expected < MIN_EXPECTED
    if not small.any():
        return ref, cur
    big_ref, big_cur = ref[~small], cur[~small]
    pooled_ref, pooled_cur = ref[small].sum(), cur[small].sum()
    if (pooled_ref + pooled_cur) * min(ref.sum(), cur.sum()) / n < MIN_EXPECTED and big_ref.size:
        smallest = int(np.argmin(big_ref + big_cur))  # still too small: join the smallest bin
        big_ref = big_ref.copy()
        big_cur = big_cur.copy()
        big_ref[smallest] += pooled_ref
        big_cur[smallest] += pooled_cur
        return big_ref, big_cur
    return np.append(big_ref, pooled_ref), np.append(big_cur, pooled_cur)


def chi2_homogeneity(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, int]:
    """Chi-square test that two count vectors over the same bins share one distribution.

    Returns (statistic, p-value, degrees of freedom); bins with small expected counts are
    pooled first. A side with no rows, or a single bin left, gives (0, 1, 0).
    """
    from scipy.stats import chi2

    ref, cur = _pool(np.asarray(reference, np.float64), np.asarray(current, np.float64))
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref <= 0 or n_cur <= 0 or ref.size < 2:
        return 0.0, 1.0, 0
    total = ref + cur
    n = n_ref + n_cur
    e_ref, e_cur = total * n_ref / n, total * n_cur / n
    stat = float(np.sum((ref - e_ref) ** 2 / e_ref) + np.sum((cur - e_cur) ** 2 / e_cur))
    dof = int(ref.size - 1)
    return stat, float(chi2.sf(stat, dof)), dof


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors."""
    p = np.asarray(reference, np.float64)
    q = np.asarray(current, np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max(0.0, (kl_p + kl_q) / 2)))


def adjust(p_values: Sequence[float], correction: str = "bh") -> np.ndarray:
    """p-values corrected for testing them together: Benjamini-Hochberg or Bonferroni."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    if correction == "bonferroni":
        return np.minimum(1.0, p * p.size)
    if correction == "bh":
        from scipy.stats import false_discovery_control

        return np.minimum(1.0, false_discovery_control(p, method="bh"))
    raise DriftError(
        f"unknown multiple-testing correction — given {correction!r}",
        hint="use one of: " + ", ".join(CORRECTIONS),
    )


# --------------------------------------------------------------------------- one column


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class _NumericReference:
    edges: np.ndarray  # fine edges (sketch, or the coarse histogram for old profiles)
    counts: np.ndarray
    points: np.ndarray  # a value standing for each fine bin (its mean)
    coarse_edges: np.ndarray
    coarse_counts: np.ndarray
    scale: float  # what a Wasserstein distance is divided by
    discrete: bool


def _numeric_reference(ref: Mapping[str, Any]) -> _NumericReference:
    hist = ref.get("histogram") or {"edges": [], "counts": [ref.get("count", 0)]}
    coarse_edges = np.asarray(hist["edges"], np.float64)
    coarse_counts = np.asarray(hist["counts"], np.float64)
    sketch = ref.get("sketch")
    if sketch:  # profiles written since drift tests exist
        edges = np.asarray(sketch["edges"], np.float64)
        counts = np.asarray(sketch["counts"], np.float64)
        means = sketch.get("means") or [None] * len(counts)
    else:  # older profiles: the 10-bin histogram only (coarser, still a valid binned test)
        edges, counts, means = coarse_edges, coarse_counts, [None] * len(coarse_counts)
    lo, hi = _num(ref.get("min")), _num(ref.get("max"))
    points = np.empty(len(counts))
    for i, mean in enumerate(means):
        if mean is not None:
            points[i] = mean
        elif len(edges) == 0:
            points[i] = _num(ref.get("mean")) or 0.0
        elif i == 0:
            points[i] = lo if lo is not None else edges[0]
        elif i == len(edges):
            points[i] = hi if hi is not None and hi > edges[-1] else edges[-1]
        else:
            points[i] = (edges[i - 1] + edges[i]) / 2
    # discrete: each value has a bin of its own (an hour, a count): chi-square fits better
    discrete = bool(sketch) and (
        bool(sketch.get("distinct"))
        or all(
            c == 0 or (i > 0 and m == edges[i - 1])
            for i, (c, m) in enumerate(zip(counts, means, strict=True))
        )
    )
    std = _num(ref.get("std"))
    return _NumericReference(
        edges=edges,
        counts=counts,
        points=points,
        coarse_edges=coarse_edges,
        coarse_counts=coarse_counts,
        scale=std if std and std > 0 else 1.0,
        discrete=discrete,
    )


def _bin_counts(
    edges: np.ndarray, x: np.ndarray, n_missing: int, *, sums: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Counts (and value sums) of ``x`` in (-inf, e1), [e1, e2), ..., [em, +inf), NaN left out.

    NaN sorts above every edge, so it lands in the top bin and is taken out of that bin
    afterwards: cheaper than copying the present values out of a million-row column.
    """
    bins = np.searchsorted(edges, x, side="right")
    top = len(edges)
    counts = np.bincount(bins, minlength=top + 1).astype(np.float64)
    counts[top] -= n_missing
    if not sums:
        return counts, None
    totals = np.bincount(bins, weights=x, minlength=top + 1)
    if n_missing:  # NaN spoilt the top bin's sum only
        totals[top] = x[x >= edges[-1]].sum() if top else np.nansum(x)
    return counts, totals


def _coarse(nref: _NumericReference, fine_counts: np.ndarray, x: np.ndarray, n_missing: int):
    """Current counts on the coarse histogram: summed from fine bins when its edges nest."""
    if np.isin(nref.coarse_edges, nref.edges).all():
        coarse_of_fine = np.searchsorted(
            nref.coarse_edges, np.concatenate([[-np.inf], nref.edges]), side="right"
        )
        return np.bincount(
            coarse_of_fine, weights=fine_counts, minlength=len(nref.coarse_edges) + 1
        )
    return _bin_counts(nref.coarse_edges, x, n_missing)[0]


def _numeric_drift(ref: Mapping[str, Any], values: Any, method: str) -> dict[str, Any]:
    from scipy.stats import wasserstein_distance

    nref = _numeric_reference(ref)
    x = numeric_values(values)
    n_missing = int(np.count_nonzero(np.isnan(x)))
    counts, sums = _bin_counts(nref.edges, x, n_missing, sums=True)
    n_ref, n_cur = float(nref.counts.sum()), float(counts.sum())
    coarse = _coarse(nref, counts, x, n_missing)
    out: dict[str, Any] = {
        "n_current": int(n_cur),
        "missing_current": n_missing / x.size if x.size else None,
        "reference_hist": nref.coarse_counts.astype(int).tolist(),
        "current_hist": coarse.astype(int).tolist(),
        "edges_or_categories": nref.coarse_edges.tolist(),
    }
    if n_ref <= 0 or n_cur <= 0:
        return {
            **out,
            "statistic": None,
            "p_value": 1.0,
            "distances": {},
            "note": "no values to compare" if n_cur <= 0 else "reference has no values",
        }
    cdf_gap = np.abs(np.cumsum(nref.counts) / n_ref - np.cumsum(counts) / n_cur)
    d = float(cdf_gap[:-1].max()) if cdf_gap.size > 1 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cur_points = np.where(counts > 0, sums / np.maximum(counts, 1), nref.points)
    cur_points = np.where(np.isfinite(cur_points), cur_points, nref.points)
    ref_used, cur_used = nref.counts > 0, counts > 0
    w = wasserstein_distance(
        nref.points[ref_used], cur_points[cur_used], nref.counts[ref_used], counts[cur_used]
    )
    distances = {
        "ks": d,
        "wasserstein": float(w / nref.scale),
        "psi": psi(nref.coarse_counts, coarse),
        "jensen_shannon": jensen_shannon(nref.counts, counts),
    }
    if method in ("ks", "wasserstein"):
        statistic, p = d, ks_p_value(d, int(n_ref), int(n_cur))
    elif method == "psi":
        statistic, p, _ = chi2_homogeneity(nref.coarse_counts, coarse)
    else:  # chi2, jensen_shannon: on the fine bins
        statistic, p, _ = chi2_homogeneity(nref.counts, counts)
    return {**out, "statistic": statistic, "p_value": p, "distances": distances}


def _categorical_reference(ref: Mapping[str, Any], kind: str) -> tuple[list[str], np.ndarray]:
    if kind == "boolean":
        count = int(ref.get("count") or 0)
        true = round((ref.get("true_rate") or 0.0) * count)
        return ["True", "False"], np.array([true, count - true], np.float64)
    ref_counts: Mapping[str, int] = ref.get("counts") or {}
    keys = [k for k in ref_counts if k != OTHER]
    return [*keys, OTHER], np.array(
        [ref_counts[k] for k in keys] + [ref_counts.get(OTHER, 0)], np.float64
    )


def _test_bins(ref_counts: np.ndarray) -> np.ndarray:
    """The test bin of each reference category (the last one is ``__other__``).

    A profile lists its top-k categories by their counts in the reference sample, so the
    ones near the cut were listed partly because they happened to be over-counted there: on
    fresh data they look rarer, and ``__other__`` commoner, than the reference says. The
    categories within noise of the cut (count < cut + 3 sqrt(cut)) join ``__other__`` in
    the test, which removes that bias (measured: 12.7% false alarms at alpha 0.05 on an
    80-level Zipf column before, about 5% after).
    """
    index = np.arange(ref_counts.size)
    if ref_counts.size < 2 or ref_counts[-1] <= 0:  # nothing was cut: nothing to undo
        return index
    listed = ref_counts[:-1]
    cut = listed.min()
    index[:-1][listed < cut + 3 * math.sqrt(cut) + 1] = ref_counts.size - 1
    return np.unique(index, return_inverse=True)[1]


def _categorical_drift(
    ref: Mapping[str, Any], values: Any, kind: str, method: str
) -> dict[str, Any]:
    keys, ref_counts = _categorical_reference(ref, kind)
    unseen: dict[str, int] = {}
    if kind == "boolean":
        true, false, missing = boolean_counts(values)
        counts = np.array([true, false], np.float64)
    else:
        observed, missing = category_counts(values)
        counts = np.array([observed.pop(k, 0) for k in keys[:-1]] + [0], np.float64)
        counts[-1] = sum(observed.values())
        top = sorted(observed.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_UNSEEN]
        unseen = dict(top)
    n_ref, n_cur = float(ref_counts.sum()), float(counts.sum())
    total = n_cur + missing
    out: dict[str, Any] = {
        "n_current": int(n_cur),
        "missing_current": missing / total if total else None,
        "reference_hist": ref_counts.astype(int).tolist(),
        "current_hist": counts.astype(int).tolist(),
        "edges_or_categories": keys,
    }
    if kind == "categorical":
        out["unseen"] = unseen  # values outside the reference's listed categories
    if n_ref <= 0 or n_cur <= 0:
        return {
            **out,
            "statistic": None,
            "p_value": 1.0,
            "distances": {},
            "note": "no values to compare" if n_cur <= 0 else "reference has no values",
        }
    bins = _test_bins(ref_counts) if kind == "categorical" else np.arange(ref_counts.size)
    ref_test = np.bincount(bins, weights=ref_counts)
    cur_test = np.bincount(bins, weights=counts)
    statistic, p, _ = chi2_homogeneity(ref_test, cur_test)
    distances = {
        "jensen_shannon": jensen_shannon(ref_test, cur_test),
        "psi": psi(ref_test, cur_test),
    }
    return {**out, "statistic": statistic, "p_value": p, "distances": distances}


def default_method(reference: Mapping[str, Any], kind: str) -> str:
    """The method ``auto`` picks: ks for numbers (chi2 if discrete), chi2 for categories."""
    if kind == "numeric":
        return "chi2" if _numeric_reference(reference).discrete else "ks"
    return "chi2"


def _check_method(method: str, kind: str, column: str | None) -> None:
    allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if method not in allowed:
        where = f" for column '{column}'" if column else ""
        raise DriftError(
            f"no drift method {method!r}{where} of type {kind}",
            hint=f"use one of: auto, {', '.join(allowed)}",
        )


def column_drift(
    reference: Mapping[str, Any],
    values: Any,
    *,
    kind: str | None = None,
    method: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    column: str | None = None,
) -> dict[str, Any]:
    """Drift of one column's current ``values`` against its reference column profile.

    ``values`` may be a numpy array, an Arrow (chunked) array or a list; missing values are
    allowed and left out. ``kind`` defaults to the profile's ``type``; ``method`` to the
    type's default (``auto``); ``thresholds`` (minimum distance per method) override
    :data:`DEFAULT_THRESHOLDS`.

    Returns ``{column, kind, method, statistic, p_value, distance, threshold, distances,
    n_reference, n_current, missing_reference, missing_current, reference_hist,
    current_hist, edges_or_categories}``; numeric histograms are counts on the reference's
    10 quantile bins (``edges_or_categories`` holds their cut points, outer bins open),
    categorical ones are counts per reference category plus ``__other__``, with ``unseen``
    listing the most frequent values outside the reference's categories. ``note`` says why
    a column could not be tested (then ``p_value`` is 1). ``material`` holds the distances
    that count as a material change and their thresholds: the method's own, and for ``ks``
    also the Wasserstein distance, since D misses a few values moving far (a 3% sentinel
    of -999) and Wasserstein / std misses the bulk of a heavy-tailed column moving.
    """
    kind = kind or reference.get("type")
    if kind not in TESTED_TYPES:
        raise DriftError(
            f"no drift test for column '{column or '?'}' of type {kind!r}",
            hint="drift is tested on numeric, categorical and boolean columns",
        )
    method = default_method(reference, kind) if method in (None, "auto") else method
    _check_method(method, kind, column)
    if kind == "numeric":
        result = _numeric_drift(reference, values, method)
    else:
        result = _categorical_drift(reference, values, kind, method)
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    distance_key = {"ks": "ks", "chi2": "jensen_shannon"}.get(method, method)
    material = {distance_key: float(limits[method])}
    if method == "ks":
        material["wasserstein"] = float(limits["wasserstein"])
    return {
        "column": column,
        "kind": kind,
        "method": method,
        "statistic": result.pop("statistic"),
        "p_value": result.pop("p_value"),
        "distance": result["distances"].get(distance_key),
        "threshold": material[distance_key],
        "material": material,
        "n_reference": int(reference.get("count") or 0),
        "missing_reference": reference.get("missing_rate"),
        **result,
    }


def scores_drift(
    reference: Mapping[str, Any],
    scores: Any,
    *,
    method: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Drift of the model's outputs (prediction drift), with the same tests as a feature.

    ``reference`` is a column profile of the outputs (``profile["predictions"]["columns"]
    [name]`` in packages that record them); ``scores`` the current outputs. One test, so
    ``p_adjusted`` is the p-value; ``drifted`` follows the same rule as features.
    """
    out = column_drift(reference, scores, method=method, thresholds=thresholds, column="prediction")
    out["p_adjusted"] = out["p_value"]
    out["drifted"] = _drifted(out, alpha)
    return out


def _drifted(col: Mapping[str, Any], alpha: float) -> bool:
    """Significant after correction, and at least one material distance reaches its limit."""
    p = col.get("p_adjusted")
    distances = col.get("distances") or {}
    return bool(
        p is not None
        and p < alpha
        and any(
            distances.get(name) is not None and distances[name] >= limit
            for name, limit in col["material"].items()
        )
    )


# --------------------------------------------------------------------------- many columns


@dataclass
class DriftResult:
    """Drift of a window: one entry per tested column, corrected together."""

    columns: list[dict[str, Any]]
    alpha: float
    correction: str
    n_rows: int
    absent: list[str] = field(default_factory=list)  # profiled columns not in the window

    @property
    def drifted(self) -> list[str]:
        """Names of the columns that drifted."""
        return [c["column"] for c in self.columns if c["drifted"]]

    def column(self, name: str) -> dict[str, Any]:
        """The entry of one column."""
        for c in self.columns:
            if c["column"] == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: no numpy values, no NaN."""
        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "n_rows": self.n_rows,
            "drifted": self.drifted,
            "absent": list(self.absent),
            "columns": [_json(c) for c in self.columns],
        }


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _names(current: Any) -> list[str]:
    names = getattr(current, "column_names", None)
    return list(names) if names is not None else list(current.keys())


def _unknown(name: str, known: Sequence[str], what: str) -> DriftError:
    return DriftError(
        f"unknown column '{name}' {what}{did_you_mean(name, known)}"
        + f" — known: {', '.join(list(known)[:20])}",
        hint="name columns of the reference profile (the training data's columns)",
    )


def detect(
    profile: Mapping[str, Any],
    current: Mapping[str, Any] | pa.Table,
    *,
    spec: DriftSpec | None = None,
    columns: Sequence[str] | None = None,
) -> DriftResult:
    """Test every column of ``current`` against the reference ``profile``.

    ``current`` maps column names to values (numpy or Arrow arrays, lists) or is an Arrow
    table. By default every numeric, categorical and boolean column of the profile that
    ``current`` holds is tested (profiled columns it lacks are listed in ``absent``);
    ``columns`` names the ones to test. ``spec`` (``monitoring.drift``) chooses methods,
    thresholds, ``alpha`` and the correction; without it the defaults apply.
    """
    from mlsd.spec import DriftSpec

    spec = spec or DriftSpec()
    ref_columns: Mapping[str, Mapping[str, Any]] = profile["columns"]
    available = set(_names(current))
    for name, method in spec.columns.items():
        if name not in ref_columns:
            raise _unknown(name, list(ref_columns), "in monitoring.drift.columns")
        kind = ref_columns[name]["type"]
        if kind not in TESTED_TYPES:
            raise DriftError(
                f"monitoring.drift.columns sets a method for '{name}', a {kind} column",
                hint="drift is tested on numeric, categorical and boolean columns",
            )
        if method != "auto":
            _check_method(method, "numeric" if kind == "numeric" else "categorical", name)
    if columns is None:
        tested = [n for n, c in ref_columns.items() if c["type"] in TESTED_TYPES]
        names = [n for n in tested if n in available]
        absent = [n for n in tested if n not in available]
    else:
        names, absent = list(columns), []
        for name in names:
            if name not in ref_columns:
                raise _unknown(name, list(ref_columns), "in the reference profile")
            if name not in available:
                raise _unknown(name, sorted(available), "in the current data")

    def one(name: str) -> dict[str, Any]:
        ref = ref_columns[name]
        kind = ref["type"]
        method = spec.columns.get(name) or (spec.numeric if kind == "numeric" else spec.categorical)
        return column_drift(
            ref,
            current[name],
            kind=kind,
            method=method,
            thresholds=spec.thresholds,
            column=name,
        )

    n_rows = len(current) if hasattr(current, "num_rows") else _rows(current, names)
    if n_rows * len(names) >= PARALLEL_VALUES and len(names) > 1:
        # numpy's binary search and Arrow's counting release the GIL: columns overlap
        with ThreadPoolExecutor(min(len(names), os.cpu_count() or 1, 8)) as pool:
            results = list(pool.map(one, names))
    else:
        results = [one(name) for name in names]
    p_adjusted = adjust([c["p_value"] for c in results], spec.correction)
    for col, p in zip(results, p_adjusted, strict=True):
        col["p_adjusted"] = float(p)
        col["drifted"] = _drifted(col, spec.alpha)
    return DriftResult(results, spec.alpha, spec.correction, n_rows, absent)


def _rows(current: Mapping[str, Any], names: Sequence[str]) -> int:
    for name in names:
        return len(current[name])
    return 0

"""Slices: where the model is worse than on the whole, named by the spec or found by search.

A slice's metric is the mean of a per-row loss (absolute or squared error for regression,
log loss for classification), so every candidate slice of a column, or of a pair of columns,
is scored by one ``np.bincount`` over integer codes: the search over the 3,570 column pairs of
an 85-column table takes a fraction of a second. Candidates are ranked by how surely they are
worse than the whole (the gap in standard errors), not by the raw gap, so a 30-row slice that is
bad by luck does not outrank a 300-row slice that is reliably bad. The slices reported carry a
bootstrap confidence interval of their metric and, when it is defined there, the primary metric.

A ranking model is judged per query group, not per row: :func:`by_group` slices the groups by
the columns that hold one value per group, on the primary metric of each group.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import MlsdError
from mlsd.evaluation.metrics import MetricError, compute
from mlsd.tasks import RANKING, get_task

BOOTSTRAP = 500  # resamples behind each confidence interval
LEVELS = 12  # a numeric column with at most this many distinct values is sliced by value
BINS = 5  # other numeric columns: quantile bins
MAX_LEVELS = 50  # categorical levels kept per column (the rest pooled as "other")
MAX_PAIR_COLUMNS = 100  # wider tables: pairs among the columns with the worst single slices
# a pair must beat its worse parent by this many standard errors: an interaction, not a
# piece of a bad single slice that happens to be a little worse
PAIR_LIFT_Z = 2.0
ALPHA = 0.05  # family-wise error rate of the slice search
_EPS = float(np.finfo(np.float64).eps)


class SliceError(MlsdError):
    """A slice named in the spec cannot be evaluated on the data."""

    headline = "slice error"


@dataclass(frozen=True)
class SliceLoss:
    """The per-row loss behind slice metrics and how it becomes the metric's value."""

    metric: str  # the name reported: mae, rmse or log_loss
    loss: np.ndarray  # per row; higher is worse
    root: bool = False  # rmse: the metric is the square root of the mean loss

    def value(self, mean: np.ndarray | float) -> np.ndarray | float:
        """Metric value(s) from mean loss(es)."""
        return np.sqrt(mean) if self.root else mean


def row_loss(task: str, y: np.ndarray, pred: np.ndarray, primary: str) -> SliceLoss:
    """The per-row loss for ``task``: squared error when the primary metric is RMSE, absolute
    error for other regression metrics, log loss (always defined, proper) for classification."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    kind = get_task(task)
    if not kind.classification:
        if primary == "rmse":
            return SliceLoss("rmse", (y - pred) ** 2, root=True)
        return SliceLoss("mae", np.abs(y - pred))
    if kind.thresholded:
        p = pred[:, 1] if pred.ndim == 2 else pred
        p = np.clip(p, _EPS, 1 - _EPS)
        return SliceLoss("log_loss", -(y * np.log(p) + (1 - y) * np.log1p(-p)))
    p = np.clip(pred[np.arange(len(y)), y.astype(np.int64)], _EPS, 1.0)
    return SliceLoss("log_loss", -np.log(p))


@dataclass
class _Coded:
    """A column cut into slices: an integer code per row and the condition of each code."""

    column: str
    codes: np.ndarray  # int64 in 0..len(labels)-1
    labels: list[str]


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _by_value(name: str, values: pd.Series) -> _Coded:
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=True)
    labels = [f"{name} == {_quote(u.item() if hasattr(u, 'item') else u)}" for u in uniques]
    if len(labels) > MAX_LEVELS:  # pool the rare levels: they are below any support anyway
        counts = np.bincount(codes[codes >= 0], minlength=len(labels))
        keep = np.sort(np.argsort(-counts, kind="stable")[: MAX_LEVELS - 1])
        remap = np.full(len(labels), len(keep), dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        labels = [labels[i] for i in keep] + [f"{name} in (other levels)"]
    return _with_missing(name, codes.astype(np.int64), labels)


def _with_missing(name: str, codes: np.ndarray, labels: list[str]) -> _Coded:
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, f"{name} is missing"]
    return _Coded(name, codes, labels)


def _by_bins(name: str, values: pd.Series) -> _Coded:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    edges = np.unique(np.nanquantile(x, np.linspace(0, 1, BINS + 1)))
    inner = edges[1:-1]
    codes = np.searchsorted(inner, x, side="right").astype(np.int64)
    labels = []
    for i in range(len(inner) + 1):
        if i == 0:
            labels.append(f"{name} < {_quote(float(inner[0]))}" if len(inner) else name)
        elif i == len(inner):
            labels.append(f"{name} >= {_quote(float(inner[-1]))}")
        else:
            labels.append(f"{_quote(float(inner[i - 1]))} <= {name} < {_quote(float(inner[i]))}")
    return _with_missing(name, np.where(np.isnan(x), -1, codes), labels)


def code_column(name: str, values: pd.Series) -> _Coded:
    """Cut a column into slices: by value (categorical, boolean, few distinct numbers) or by
    quantile bins (other numbers); missing values form a slice of their own."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > LEVELS:
        return _by_bins(name, values)
    return _by_value(name, values)


def bootstrap_ci(
    loss: SliceLoss, rows: np.ndarray, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the metric on ``rows`` (indices into ``loss.loss``)."""
    values = loss.loss[rows]
    if len(values) < 2:
        v = float(loss.value(values.mean())) if len(values) else math.nan
        return v, v
    means = np.empty(BOOTSTRAP)
    step = max(1, 2_000_000 // len(values))  # bound the memory of one (resamples, rows) block
    for start in range(0, BOOTSTRAP, step):
        stop = min(BOOTSTRAP, start + step)
        pick = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[pick].mean(axis=1)
    low, high = np.quantile(loss.value(means), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _describe(
    name: str,
    columns: list[str],
    rows: np.ndarray,
    loss: SliceLoss,
    overall: float,
    n_total: int,
    rng: np.random.Generator,
    primary: Mapping[str, Any],
) -> dict[str, Any]:
    value = float(loss.value(loss.loss[rows].mean())) if len(rows) else None
    low, high = bootstrap_ci(loss, rows, rng) if len(rows) else (None, None)
    out = {
        "slice": name,
        "columns": columns,
        "support": len(rows),
        "share": len(rows) / n_total,
        "metric": value,
        "ci_low": low,
        "ci_high": high,
        "gap": None if value is None else value - overall,
        # the whole's value lies below the slice's interval: worse beyond sampling noise
        "significant": bool(low is not None and low > overall),
    }
    if primary.get("name"):
        out["primary"] = _primary_on(rows, primary)
    return out


def _primary_on(rows: np.ndarray, primary: Mapping[str, Any]) -> float | None:
    if len(rows) == 0:
        return None
    pred = primary["pred"]
    try:
        return compute(
            primary["task"],
            primary["y"][rows],
            pred[rows],
            names=[primary["name"]],
            threshold=primary.get("threshold", 0.5),
        )[primary["name"]]
    except MetricError:  # e.g. adjusted R² on a handful of rows
        return None


def spec_slice_rows(frame: pd.DataFrame, expression: str) -> np.ndarray:
    """Row positions where a boolean spec expression (``balance > 1000``) holds.

    Missing values never satisfy a condition. Raises :class:`SliceError` for an expression
    that names an unknown column, does not parse, or is not a yes/no condition.
    """
    try:
        mask = frame.eval(expression, engine="python")
    except Exception as exc:  # pandas raises many types (NameError, SyntaxError, TypeError…)
        raise SliceError(
            f"evaluation.slices entry {expression!r} cannot be evaluated: "
            f"{type(exc).__name__}: {exc}",
            hint="write a column name or a condition on columns, e.g. `temp > 0.7` or "
            '`student == "Yes"`; columns: ' + ", ".join(map(str, frame.columns[:20])),
        ) from None
    if isinstance(mask, pd.Series) and (
        pd.api.types.is_bool_dtype(mask) or str(mask.dtype) == "boolean"
    ):
        return np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool))
    raise SliceError(
        f"evaluation.slices entry {expression!r} is not a yes/no condition on rows "
        f"(it gives {type(mask).__name__})",
        hint="compare a column with a value, e.g. `temp > 0.7`, or name a column to slice by",
    )


def spec_slices(
    frame: pd.DataFrame,
    entries: Sequence[str],
    loss: SliceLoss,
    *,
    rng: np.random.Generator,
    primary: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every slice the spec names: a column gives one slice per value or quantile bin, an
    expression gives one slice."""
    overall = float(loss.value(loss.loss.mean()))
    out = []
    for entry in entries:
        if entry in frame.columns:
            coded = code_column(entry, frame[entry])
            for code, label in enumerate(coded.labels):
                rows = np.flatnonzero(coded.codes == code)
                out.append(
                    _describe(label, [entry], rows, loss, overall, len(frame), rng, primary or {})
                )
        else:
            rows = spec_slice_rows(frame, entry)
            out.append(_describe(entry, [], rows, loss, overall, len(frame), rng, primary or {}))
    return out


@dataclass
class _Candidates:
    """Scored slices of one column or pair: which codes, their support and mean loss."""

    columns: tuple[int, ...]
    cells: np.ndarray  # combined code per candidate
    support: np.ndarray
    mean: np.ndarray


def _cells(codes: np.ndarray, size: int, loss: np.ndarray, min_support: int) -> tuple:
    counts = np.bincount(codes, minlength=size)
    sums = np.bincount(codes, weights=loss, minlength=size)
    cells = np.flatnonzero(counts >= min_support)
    return cells, counts[cells], sums[cells] / counts[cells]


def search(
    frame: pd.DataFrame,
    columns: Sequence[str],
    loss: SliceLoss,
    *,
    min_support: int,
    k: int = 10,
    pairs: bool = True,
    rng: np.random.Generator,
    primary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``k`` slices (one column's value or bin, or a pair of them) most surely worse than
    the whole, among those with at least ``min_support`` rows.

    A pair is kept only when it is worse than both of its single-column parents by
    ``PAIR_LIFT_Z`` standard errors and is not just one of them again (same rows), so the
    list names interactions, not pieces of one bad column.
    """
    start = time.perf_counter()
    n = len(frame)
    coded = [code_column(c, frame[c]) for c in columns if c in frame.columns]
    values = loss.loss
    overall_mean = float(values.mean())
    sd = float(values.std()) or 1.0
    found: list[_Candidates] = []
    single_mean: dict[tuple[int, int], float] = {}
    single_support: dict[tuple[int, int], int] = {}
    worst_single = np.full(len(coded), -np.inf)
    for i, c in enumerate(coded):
        cells, support, mean = _cells(c.codes, len(c.labels), values, min_support)
        keep = support < n  # a slice holding every row is the whole, not a slice
        cells, support, mean = cells[keep], support[keep], mean[keep]
        found.append(_Candidates((i,), cells, support, mean))
        for cell, s, m in zip(cells, support, mean, strict=True):
            single_mean[(i, int(cell))] = float(m)
            single_support[(i, int(cell))] = int(s)
        if len(mean):
            worst_single[i] = _z(mean, support, overall_mean, sd, n).max()
    n_pairs = 0
    if pairs and len(coded) > 1:
        pool = np.argsort(-worst_single, kind="stable")[:MAX_PAIR_COLUMNS]
        pool = np.sort(pool)
        for ai, a in enumerate(pool):
            for b in pool[ai + 1 :]:
                ca, cb = coded[a], coded[b]
                nb = len(cb.labels)
                cells, support, mean = _cells(
                    ca.codes * nb + cb.codes, len(ca.labels) * nb, values, min_support
                )
                n_pairs += 1
                if not len(cells):
                    continue
                pa, pb = np.divmod(cells, nb)
                parent_a = np.array([single_mean.get((int(a), int(x)), np.inf) for x in pa])
                parent_b = np.array([single_mean.get((int(b), int(x)), np.inf) for x in pb])
                sa = np.array([single_support.get((int(a), int(x)), 0) for x in pa])
                sb = np.array([single_support.get((int(b), int(x)), 0) for x in pb])
                lift = (mean - np.maximum(parent_a, parent_b)) * np.sqrt(support) / sd
                keep = (lift >= PAIR_LIFT_Z) & (support < sa) & (support < sb)
                if keep.any():
                    found.append(
                        _Candidates((int(a), int(b)), cells[keep], support[keep], mean[keep])
                    )
    # rank every candidate by its gap in standard errors
    table = [
        (float(z), cand.columns, int(cell), int(s), float(m))
        for cand in found
        for z, cell, s, m in zip(
            _z(cand.mean, cand.support, overall_mean, sd, n),
            cand.cells,
            cand.support,
            cand.mean,
            strict=True,
        )
        if m > overall_mean
    ]
    # Slices worse beyond chance after a Bonferroni correction for every candidate tried come
    # first, the largest gap first; then the rest, the surest first.
    z_crit = NormalDist().inv_cdf(1 - ALPHA / max(len(table), 1))
    table.sort(key=lambda t: (t[0] < z_crit, -(t[4] if t[0] >= z_crit else t[0])))
    overall = float(loss.value(overall_mean))
    worst: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    for z, cols, cell, _, _ in table:
        if len(worst) == k:
            break
        if len(cols) == 1:
            c = coded[cols[0]]
            rows = np.flatnonzero(c.codes == cell)
            name, names = c.labels[cell], [c.column]
        else:
            ca, cb = coded[cols[0]], coded[cols[1]]
            ia, ib = divmod(cell, len(cb.labels))
            rows = np.flatnonzero((ca.codes == ia) & (cb.codes == ib))
            name, names = f"{ca.labels[ia]} and {cb.labels[ib]}", [ca.column, cb.column]
        key = hashlib.blake2b(rows.tobytes(), digest_size=16).digest()
        if key in seen:  # the same rows under another name (e.g. two codings of one fact)
            continue
        seen.add(key)
        item = _describe(name, names, rows, loss, overall, n, rng, primary or {})
        item["z"] = z
        item["beyond_chance"] = bool(z >= z_crit)
        worst.append(item)
    return {
        "worst": worst,
        "columns_searched": len(coded),
        "pairs_searched": n_pairs,
        "candidates": len(table),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _z(mean: np.ndarray, support: np.ndarray, overall: float, sd: float, n: int) -> np.ndarray:
    """Gap of slice means to the whole in standard errors (finite-population corrected)."""
    se = sd / np.sqrt(support) * np.sqrt(np.maximum(1 - support / n, 1e-12))
    return (mean - overall) / se


def analyse(
    frame: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    task: str,
    primary: str,
    columns: Sequence[str],
    spec_entries: Sequence[str] = (),
    auto: bool = True,
    min_support: int = 30,
    min_share: float = 0.01,
    k: int = 10,
    threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """The slices section of the evaluation report: the spec's slices and the worst found.

    ``frame`` holds the raw columns of the labelled rows (aligned with ``y`` and ``pred``);
    ``columns`` are the ones the search may cut (the model's inputs). The minimum support is
    ``max(min_support, min_share * rows)``.
    """
    frame = frame.reset_index(drop=True)
    loss = row_loss(task, y, pred, primary)
    support = max(int(min_support), math.ceil(min_share * len(frame)))
    context = {"task": task, "y": np.asarray(y), "pred": np.asarray(pred), "name": primary}
    context["threshold"] = threshold
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "metric": loss.metric,
        "overall": float(loss.value(loss.loss.mean())),
        "primary_metric": primary,
        "rows": len(frame),
        "min_support": support,
        "spec": spec_slices(frame, spec_entries, loss, rng=rng, primary=context),
    }
    if auto:
        out.update(search(frame, columns, loss, min_support=support, k=k, rng=rng, primary=context))
    else:
        out["worst"] = []
    return out


# --------------------------------------------------------------------------- ranking


def group_level_columns(
    frame: pd.DataFrame, position: np.ndarray, first: np.ndarray, columns: Sequence[str]
) -> list[str]:
    """The ``columns`` of ``frame`` that hold one value in every group (``position``: each
    row's group index; ``first``: the first row of each group)."""
    out = []
    for c in columns:
        if c not in frame.columns:
            continue
        values = frame[c].reset_index(drop=True)
        head = values.iloc[first[position]].reset_index(drop=True)
        same = (values == head) | (values.isna() & head.isna())
        if bool(same.all()):
            out.append(c)
    return out


def by_group(
    frame: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    groups: np.ndarray,
    *,
    metric: str,
    columns: Sequence[str],
    spec_entries: Sequence[str] = (),
    auto: bool = True,
    min_support: int = 30,
    min_share: float = 0.01,
    k: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """The slices section for a ranking model: the per-group ``metric`` (nDCG@10…) sliced by
    the columns that are constant within each group (a query's country, a user's segment).

    Only groups with a relevant item count (the others carry no value); support is counted in
    groups, the minimum being ``max(min_support, min_share * groups)``. A slice is worse than
    the whole when its metric is lower (higher for a "min" metric); ``significant`` when its
    95% bootstrap interval (over groups) lies on the worse side of the whole. Spec entries that
    name a column or condition on group-level columns are sliced; the rest are listed in
    ``skipped`` with the reason. No pairs are searched.
    """
    from mlsd.evaluation.metrics import get_metric
    from mlsd.evaluation.ranking import group_table

    m = get_metric(metric, RANKING.name)
    sign = 1.0 if m.direction == "max" else -1.0
    frame = frame.reset_index(drop=True)
    table = group_table(y, pred, groups, m.name)
    position = pd.Index(table["group"]).get_indexer(np.asarray(groups))
    order = np.argsort(position, kind="stable")
    first = order[np.r_[0, np.flatnonzero(np.diff(position[order])) + 1]]
    level = group_level_columns(frame, position, first, columns)
    valid = table["value"].notna().to_numpy()
    values = table["value"].to_numpy()[valid]
    gframe = frame.iloc[first[valid]].reset_index(drop=True)
    n = len(values)
    loss = SliceLoss(m.name, values)
    overall = float(values.mean()) if n else math.nan
    support = max(int(min_support), math.ceil(min_share * n))
    rng = np.random.default_rng(seed)
    skipped: list[dict[str, str]] = []

    def describe(name: str, cols: list[str], rows: np.ndarray) -> dict[str, Any]:
        value = float(values[rows].mean()) if len(rows) else None
        low, high = bootstrap_ci(loss, rows, rng) if len(rows) else (None, None)
        worse_side = None if low is None else (high if sign > 0 else low)
        return {
            "slice": name,
            "columns": cols,
            "support": len(rows),
            "share": len(rows) / max(n, 1),
            "metric": value,
            "ci_low": low,
            "ci_high": high,
            "gap": None if value is None else value - overall,
            "significant": bool(worse_side is not None and sign * (overall - worse_side) > 0),
        }

    spec: list[dict[str, Any]] = []
    for entry in spec_entries:
        if entry in frame.columns and entry not in level:
            skipped.append({"slice": entry, "reason": "not one value per group"})
            continue
        if entry in level:
            coded = code_column(entry, gframe[entry])
            for code, label in enumerate(coded.labels):
                spec.append(describe(label, [entry], np.flatnonzero(coded.codes == code)))
            continue
        try:
            spec.append(describe(entry, [], spec_slice_rows(gframe[level], entry)))
        except SliceError:
            skipped.append({"slice": entry, "reason": "not a condition on group-level columns"})
    worst: list[dict[str, Any]] = []
    candidates = 0
    if auto and n > 1:
        sd = float(values.std()) or 1.0
        table_z = []
        for c in level:
            coded = code_column(c, gframe[c])
            cells, counts, means = _cells(coded.codes, len(coded.labels), values, support)
            keep = counts < n
            for cell, count, mean in zip(cells[keep], counts[keep], means[keep], strict=True):
                z = float(_z(np.array([sign * (overall - mean)]), np.array([count]), 0.0, sd, n)[0])
                candidates += 1
                if z > 0:
                    table_z.append((z, c, coded, int(cell)))
        z_crit = NormalDist().inv_cdf(1 - ALPHA / max(candidates, 1))
        table_z.sort(key=lambda t: -t[0])
        for z, c, coded, cell in table_z[:k]:
            item = describe(coded.labels[cell], [c], np.flatnonzero(coded.codes == cell))
            item["z"] = z
            item["beyond_chance"] = bool(z >= z_crit)
            worst.append(item)
    return {
        "metric": m.name,
        "direction": m.direction,
        "unit": "groups",
        "overall": overall if n else None,
        "primary_metric": m.name,
        "rows": len(frame),
        "groups": n,
        "min_support": support,
        "group_columns": level,
        "spec": spec,
        "skipped": skipped,
        "worst": worst,
        "columns_searched": len(level) if auto else 0,
        "pairs_searched": 0,
        "candidates": candidates,
    }

"""Train/valid/test splits (step 4): random, stratified, time and group.

:func:`split_rows` gives every row one label (``TRAIN``, ``VALID`` or ``TEST``), aligned to
the frame's rows by position. Every random choice takes ``spec.seed``, so the same frame and
spec always give the same labels. :func:`split_summary` describes a split as plain JSON.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.spec import SystemSpec
from mlsd.tasks import get_task

TRAIN, VALID, TEST = 0, 1, 2
NAMES = ("train", "valid", "test")
MISSING = "__missing__"  # label of the missing-value class/group in summaries


# --- shared helpers --------------------------------------------------------------------------


def _target_counts(n: int, valid: float, test: float) -> tuple[int, int, int]:
    """Rows wanted in train, valid and test: rounded shares, at least one row in each split."""
    need = 3 if valid > 0 else 2
    if n < need:
        wanted = "train, valid and test" if valid > 0 else "train and test"
        raise DataError(
            f"too few rows to split — given {n} row{'s' * (n != 1)}, but {wanted} need at "
            f"least {need} (one each)",
            hint="add rows"
            + (", or set data.split.valid: 0 to drop the validation split" if valid > 0 else ""),
        )
    # round half up (not Python's banker's rounding) so counts are easy to predict
    n_test = max(1, math.floor(n * test + 0.5))
    n_valid = max(1, math.floor(n * valid + 0.5)) if valid > 0 else 0
    while n - n_test - n_valid < 1:  # tiny frames with large shares: train keeps one row
        if n_valid > n_test:
            n_valid -= 1
        else:
            n_test -= 1
    return n - n_test - n_valid, n_valid, n_test


def _column(df: pd.DataFrame, name: str, role: str, key: str) -> pd.Series:
    if name not in df.columns:
        raise DataError(
            f"the {role} column '{name}' is not in the data — given columns: "
            f"{', '.join(map(str, list(df.columns)[:20]))}",
            hint=f"fix {key} in system.yaml, or add the column to the data",
        )
    return df[name]


def _nearest_cuts(sizes: np.ndarray, n_valid: int, n_test: int) -> tuple[int, int]:
    """Cut ordered blocks of rows into train | valid | test at block boundaries.

    ``sizes`` are the row counts of blocks in their order (time keys, shuffled groups).
    Returns (cut1, cut2) as row positions: rows before cut1 are train, from cut2 on test.
    Both cuts lie on block boundaries, as near as possible to the requested counts (sum of
    absolute errors, earliest on ties), and leave every split at least one block.
    """
    n = int(sizes.sum())
    bounds = np.cumsum(sizes)[:-1]  # row positions between consecutive blocks
    t2 = n - n_test
    t1 = t2 - n_valid
    if n_valid == 0:
        cut = int(bounds[np.argmin(np.abs(bounds - t2))])
        return cut, cut
    # for each choice of cut2 = bounds[j] (j >= 1), the best cut1 among bounds[:j]
    j = np.arange(1, len(bounds))
    k = np.searchsorted(bounds, t1)  # bounds[k-1] < t1 <= bounds[k]
    lo = bounds[np.minimum(k, j) - 1]  # nearest bound below t1 inside the prefix
    hi = bounds[np.minimum(k, j - 1)]  # nearest bound at/above t1, if inside the prefix
    use_hi = (k < j) & (np.abs(hi - t1) < np.abs(lo - t1))
    cut1 = np.where(use_hi, hi, lo)
    cost = np.abs(bounds[j] - t2) + np.abs(cut1 - t1)
    best = int(np.argmin(cost))
    return int(cut1[best]), int(bounds[j[best]])


def _labels_from_cuts(rank: np.ndarray, sizes: np.ndarray, cut1: int, cut2: int) -> np.ndarray:
    """Labels for rows whose block is ``rank`` given cut row positions."""
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # first row position of each block
    block_label = np.where(start >= cut2, TEST, np.where(start >= cut1, VALID, TRAIN))
    return block_label.astype(np.int8)[rank]


def _dense_rank(codes: list[np.ndarray]) -> np.ndarray:
    """Rank of each row's key tuple (lexicographic, first array most significant); ties share."""
    if len(codes) == 1:
        return codes[0].astype(np.int64)
    order = np.lexsort(codes[::-1])  # lexsort treats its last key as most significant
    stacked = np.column_stack([c[order] for c in codes])
    new = np.ones(len(order), dtype=bool)
    new[1:] = (np.diff(stacked, axis=0) != 0).any(axis=1)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    return rank


def _time_rank(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Dense rank of the rows' event-time keys; missing or unorderable values are errors."""
    codes = []
    for name in columns:
        series = _column(df, name, "time", "problem.time")
        missing = int(series.isna().sum())
        if missing:
            raise DataError(
                f"the time column '{name}' has {missing} missing value"
                f"{'s' * (missing != 1)} of {len(series)} — a time split must place every "
                "row in time",
                hint=f"fill or drop the rows missing '{name}' before splitting, or use "
                "data.split.method: random",
            )
        try:
            if isinstance(series.dtype, pd.CategoricalDtype) and not series.cat.ordered:
                # factorize follows category order; unordered categories order by value
                series = series.cat.reorder_categories(series.cat.categories.sort_values())
            code, _ = pd.factorize(series, sort=True)
        except TypeError as exc:  # e.g. numbers mixed with strings: no order to follow
            raise DataError(
                f"the time column '{name}' mixes values that cannot be ordered — given "
                f"dtype {series.dtype} ({exc})",
                hint=f"make '{name}' all numbers, all dates or all strings",
            ) from exc
        codes.append(code)
    return _dense_rank(codes)


# --- the four methods ------------------------------------------------------------------------


def _random(n: int, counts: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    _, n_valid, n_test = counts
    perm = rng.permutation(n)
    labels = np.full(n, TRAIN, dtype=np.int8)
    labels[perm[:n_test]] = TEST
    labels[perm[n_test : n_test + n_valid]] = VALID
    return labels


def _controlled_round(
    class_counts: np.ndarray, split_counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rows per (class, split): proportional shares rounded down or up, all margins exact.

    Cell (k, s) wants ``class_counts[k] * split_counts[s] / n`` rows. Each cell gets the floor
    or the ceiling of that, so every class sits within one row of proportional in every split,
    while rows still add up to the class counts and columns to the split counts. Such a
    rounding always exists (the transportation polytope has integer vertices); a greedy pass
    finds most of it and augmenting paths fix the rest.
    """
    n = int(class_counts.sum())
    product = class_counts[:, None].astype(np.int64) * split_counts[None, :].astype(np.int64)
    base, rem = product // n, product % n  # exact integer arithmetic: no float rounding
    allowed = rem > 0  # only fractional cells may round up
    row_need = class_counts - base.sum(axis=1)
    col_need = split_counts - base.sum(axis=0)
    extra = np.zeros_like(allowed)
    # greedy: per split, round up the classes with the largest fractions (seeded tie-break)
    jitter = rng.random(allowed.shape)
    for s in np.argsort(col_need, kind="stable"):
        cand = np.flatnonzero(allowed[:, s] & (row_need > 0))
        take = cand[np.argsort(-(rem[cand, s] + jitter[cand, s]), kind="stable")][: col_need[s]]
        extra[take, s] = True
        row_need[take] -= 1
        col_need[s] -= len(take)
    # augmenting paths: give an unmet class a split by moving other classes between splits
    n_splits = len(split_counts)
    for k in np.flatnonzero(row_need > 0):
        while row_need[k] > 0:
            parent: dict[int, tuple[int, int]] = {}  # split -> (previous split, moved class)
            queue = [s for s in range(n_splits) if allowed[k, s] and not extra[k, s]]
            for s in queue:
                parent[s] = (-1, k)
            found = -1
            while queue:
                s = queue.pop(0)
                if col_need[s] > 0:
                    found = s
                    break
                for t in range(n_splits):
                    if t in parent:
                        continue
                    movable = np.flatnonzero(extra[:, s] & allowed[:, t] & ~extra[:, t])
                    if movable.size:
                        parent[t] = (s, int(movable[0]))
                        queue.append(t)
            if found < 0:  # cannot happen for consistent margins; guard against a silent skew
                raise RuntimeError("stratified split: no proportional rounding found")
            s = found
            col_need[s] -= 1
            while s >= 0:
                prev, cls = parent[s]
                extra[cls, s] = True
                if prev >= 0:
                    extra[cls, prev] = False
                s = prev
            row_need[k] -= 1
    return base + extra


def _stratified(
    target: pd.Series, counts: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    n = len(target)
    # missing targets form their own class: they are split in proportion like any other
    codes, _ = pd.factorize(target, use_na_sentinel=False)
    class_counts = np.bincount(codes)
    alloc = _controlled_round(class_counts, np.asarray(counts), rng)
    # rows of each class in a seeded random order, then the first a_test are test, etc.
    perm = rng.permutation(n)
    order = perm[np.argsort(codes[perm], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(class_counts)[:-1]])
    cls = codes[order]
    rank = np.arange(n) - starts[cls]
    n_test, n_test_valid = alloc[cls, TEST], alloc[cls, TEST] + alloc[cls, VALID]
    labels = np.empty(n, dtype=np.int8)
    labels[order] = np.where(rank < n_test, TEST, np.where(rank < n_test_valid, VALID, TRAIN))
    return labels


def group_start_rank(rank: np.ndarray, groups: pd.Series) -> np.ndarray:
    """Per row, the dense rank of its group's earliest time (``rank`` is the rows' time
    rank): the order in which a grouped time split places whole groups."""
    codes, _ = pd.factorize(groups, use_na_sentinel=False)  # missing values: one group
    start = np.full(int(codes.max()) + 1 if len(codes) else 0, np.iinfo(np.int64).max)
    np.minimum.at(start, codes, rank)
    _, block = np.unique(start, return_inverse=True)
    return block.astype(np.int64)[codes]


def _time(
    df: pd.DataFrame,
    columns: list[str],
    counts: tuple[int, int, int],
    group: str | None = None,
) -> np.ndarray:
    _, n_valid, n_test = counts
    rank = _time_rank(df, columns)
    if group is not None:  # whole groups, ordered by their first event
        groups = _column(df, group, "group", "problem.group")
        rank = group_start_rank(rank, groups)
    sizes = np.bincount(rank)
    need = 3 if n_valid else 2
    if len(sizes) < need:
        cols = ", ".join(f"'{c}'" for c in columns)
        what = f"distinct start times of the groups of '{group}'" if group else "distinct times"
        raise DataError(
            f"a time split needs at least {need} {what} so that every split is "
            f"strictly later than the one before — given {len(sizes)} distinct value"
            f"{'s' * (len(sizes) != 1)} of {cols} in {len(df)} rows",
            hint="use data.split.method: random (or group), or add rows from more points in time",
        )
    cut1, cut2 = _nearest_cuts(sizes, n_valid, n_test)
    return _labels_from_cuts(rank, sizes, cut1, cut2)


def _group(
    groups: pd.Series, column: str, counts: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    _, n_valid, n_test = counts
    codes, _ = pd.factorize(groups, use_na_sentinel=False)  # missing values: one group
    n_groups = int(codes.max()) + 1
    need = 3 if n_valid else 2
    if n_groups < need:
        raise DataError(
            f"a group split needs at least {need} distinct values of '{column}' (one group "
            f"per split) — given {n_groups}",
            hint="choose a group column with more values (data.split.group), or use "
            "data.split.method: random",
        )
    # a seeded shuffle of whole groups, then cut it where the row counts come nearest
    position = np.empty(n_groups, dtype=np.int64)
    position[rng.permutation(n_groups)] = np.arange(n_groups)
    rank = position[codes]
    sizes = np.bincount(rank, minlength=n_groups)
    cut1, cut2 = _nearest_cuts(sizes, n_valid, n_test)
    return _labels_from_cuts(rank, sizes, cut1, cut2)


def split_rows(df: pd.DataFrame, spec: SystemSpec) -> np.ndarray:
    """One label per row of ``df`` (``TRAIN`` 0, ``VALID`` 1, ``TEST`` 2) as an int8 array.

    The method is ``spec.split_method``; the shares are ``spec.data.split.valid`` and
    ``.test``; random choices take ``spec.seed``.

    - random: a seeded permutation.
    - stratified: each class of ``problem.target`` (missing targets form one class) is split
      in the same proportions, within one row.
    - time: rows ordered by ``problem.time`` (most significant column first); every valid
      row is strictly later than every train row and every test row strictly later than
      every valid row, so rows with equal times always share a split. For a grouped task
      (ranking) whole groups of ``spec.split_group`` are ordered by their earliest time
      instead, so no group spans two splits.
    - group: whole groups of ``spec.split_group`` go to one split (missing values form one
      group).

    Each split gets at least one row (no valid rows when ``valid`` is 0). Raises
    :class:`DataError` when that is impossible or a needed column is missing or unusable.
    """
    method = spec.split_method
    n = len(df)
    counts = _target_counts(n, spec.data.split.valid, spec.data.split.test)
    rng = np.random.default_rng(spec.seed)
    if method == "random":
        return _random(n, counts, rng)
    if method == "stratified":
        target = _column(df, spec.problem.target, "target", "problem.target")
        return _stratified(target, counts, rng)
    if method == "time":
        if not spec.problem.time:
            raise DataError(
                "a time split needs event-time columns — given none in problem.time",
                hint="set problem.time to the column(s) that order the rows",
            )
        group = spec.split_group if get_task(spec.problem.task).grouped else None
        return _time(df, list(spec.problem.time), counts, group)
    if method == "group":
        column = spec.split_group
        if not column:
            raise DataError(
                "a group split needs a group column — given neither data.split.group nor "
                "problem.id",
                hint="set data.split.group or problem.id",
            )
        groups = _column(df, column, "group", "data.split.group (or problem.id)")
        return _group(groups, column, counts, rng)
    raise DataError(
        f"unknown split method — given {method!r}",
        hint="use one of: auto, random, stratified, time, group",
    )


# --- summary ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """A plain JSON value for a cell: numbers, strings, ISO times; missing → None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _label_key(value: Any) -> str:
    """A class or group value as a JSON object key."""
    value = _jsonable(value)
    if value is None:
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def split_summary(labels: np.ndarray, df: pd.DataFrame, spec: SystemSpec) -> dict:
    """What a split did, as JSON-safe data.

    Always: ``method`` (resolved), ``seed``, requested ``valid`` and ``test`` shares,
    ``counts`` and actual ``shares`` per split. Then, by method: ``time`` gives the first
    and last event-time key of each split (for a grouped task, of the groups' first
    events); ``group`` the number of groups per split (every grouped task too);
    ``stratified`` each split's class shares (when there are at most 100 classes).
    """
    labels = np.asarray(labels)
    n = len(labels)
    method = spec.split_method
    masks = {name: labels == code for code, name in enumerate(NAMES)}
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    summary: dict[str, Any] = {
        "method": method,
        "seed": spec.seed,
        "valid": spec.data.split.valid,
        "test": spec.data.split.test,
        "counts": counts,
        "shares": {name: (c / n if n else 0.0) for name, c in counts.items()},
    }
    grouped = get_task(spec.problem.task).grouped and spec.split_group in df.columns
    if method == "time":
        columns = list(spec.problem.time)
        rank = _time_rank(df, columns)
        starts = np.ones(n, dtype=bool)
        if grouped:  # only each group's first event: the time its group is placed by
            block = group_start_rank(rank, df[spec.split_group])
            first_rank = np.full(int(block.max()) + 1 if n else 0, np.iinfo(np.int64).max)
            np.minimum.at(first_rank, block, rank)
            starts = rank == first_rank[block]
        bounds: dict[str, Any] = {}
        for name, mask in masks.items():
            if not mask.any():
                continue
            rows = np.flatnonzero(mask & starts)
            first, last = rows[np.argmin(rank[rows])], rows[np.argmax(rank[rows])]
            bounds[name] = {
                edge: {c: _jsonable(df[c].iloc[row]) for c in columns}
                for edge, row in (("first", first), ("last", last))
            }
        summary["time"] = {"columns": columns, "bounds": bounds}
        if grouped:
            summary["time"]["by"] = "group start"
    if method == "group" or grouped:
        column = spec.split_group
        codes, _ = pd.factorize(df[column], use_na_sentinel=False)
        summary["group"] = {
            "column": column,
            "groups": {name: int(np.unique(codes[mask]).size) for name, mask in masks.items()},
        }
    if method == "stratified":
        target = df[spec.problem.target]
        codes, uniques = pd.factorize(target, use_na_sentinel=False)
        keys = [_label_key(u) for u in uniques]
        info: dict[str, Any] = {"target": spec.problem.target, "n_classes": len(keys)}
        if len(keys) <= 100:
            info["class_shares"] = {}
            for name, mask in masks.items():
                class_counts = np.bincount(codes[mask], minlength=len(keys))
                total = int(mask.sum())
                info["class_shares"][name] = {
                    key: (int(c) / total if total else 0.0)
                    for key, c in zip(keys, class_counts, strict=True)
                }
        summary["stratified"] = info
    return summary

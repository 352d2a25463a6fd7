"""A funnel's data as its spec declares it: the interactions (``problem.id`` the user,
``problem.target`` the item), their split, each pair's latest time, the item and user
tables as ranker side features, and the business rules over the item table.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlsd.data.sources import read_source
from mlsd.errors import MlsdError
from mlsd.recsys.interactions import TEST, TRAIN, VALID, Interactions, latest, split_per_user
from mlsd.recsys.runtime import Side
from mlsd.recsys.validate import validate_interactions
from mlsd.spec import SystemSpec


class FunnelDataError(MlsdError):
    """The spec's tables cannot feed the funnel."""

    headline = "cannot read the funnel's data"


def interactions_of(spec: SystemSpec, frame: pd.DataFrame) -> Interactions:
    """The spec's interactions: users from ``problem.id``, items from ``problem.target``."""
    return Interactions.from_frame(frame, spec.problem.id, spec.problem.target)


def read_table(spec: SystemSpec, which: str) -> pd.DataFrame | None:
    """``data.items`` or ``data.users`` as a frame (None when not declared)."""
    source = getattr(spec.data, which)
    return None if source is None else read_source(source, spec.base_dir).to_pandas()


def validate_funnel_data(spec: SystemSpec, frame: pd.DataFrame) -> tuple[dict, list]:
    """Facts and findings of the spec's interactions (and item table)."""
    return validate_interactions(
        frame,
        spec.problem.id,
        spec.problem.target,
        time_column=spec.problem.time[0] if spec.problem.time else None,
        items=read_table(spec, "items"),
        item_key=spec.problem.target,
    )


def split(spec: SystemSpec, frame: pd.DataFrame, interactions: Interactions) -> np.ndarray:
    """TRAIN/VALID/TEST per interaction: each user's at random (per_user) or their last
    ones (per_user_time), or the newest of all (time: one cut in time for everyone)."""
    valid, test = spec.data.split.valid, spec.data.split.test
    shares = (1 - valid - test, valid, test)
    if spec.split_method == "per_user":
        return split_per_user(interactions.user_codes, shares, spec.seed)
    times = times_of(frame[spec.problem.time[0]])
    if spec.split_method == "per_user_time":
        return split_per_user(interactions.user_codes, shares, spec.seed, times=times)
    order = np.lexsort((np.random.default_rng(spec.seed).random(len(times)), times))
    labels = np.empty(len(times), dtype=np.int8)
    n_test, n_valid = round(test * len(times)), round(valid * len(times))
    labels[order] = TRAIN
    labels[order[len(order) - n_test - n_valid : len(order) - n_test]] = VALID
    labels[order[len(order) - n_test :]] = TEST
    return labels


def times_of(column: pd.Series) -> np.ndarray:
    """Event times as numbers (unreadable ones first)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.astype("int64").to_numpy()
    return pd.to_numeric(column, errors="coerce").fillna(-np.inf).to_numpy()


def pair_times(
    spec: SystemSpec, frame: pd.DataFrame, interactions: Interactions, labels: np.ndarray
) -> Callable[..., sp.csr_matrix | None]:
    """``when(*parts)``: each pair's latest time among the interactions of those split
    parts (all without parts; None without ``problem.time``), so no later part's time
    reaches an earlier part's fit."""
    if not spec.problem.time:
        return lambda *parts: None
    times = times_of(frame[spec.problem.time[0]])
    return lambda *parts: latest(interactions, times, np.isin(labels, parts) if parts else None)


def side_of(spec: SystemSpec, interactions: Interactions) -> Side | None:
    """The ranker's side features from ``data.items`` and ``data.users`` (None without
    either): numbers and booleans as they are, a text column of at most 30 values as one
    0/1 column per value; ids missing from a table get NaN."""
    items, users = read_table(spec, "items"), read_table(spec, "users")
    return side_features(interactions, items, users, spec.problem.target, spec.problem.id)


def side_features(
    interactions: Interactions,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    item_key: str,
    user_key: str,
) -> Side | None:
    """:class:`Side` from an item table keyed by ``item_key`` and a user table keyed by
    ``user_key`` (either may be None), in the order of ``interactions``' ids."""
    if items is None and users is None:
        return None
    item_values, item_names = _numeric(items, item_key, interactions.items)
    user_values, user_names = _numeric(users, user_key, interactions.users)
    return Side(item_values, user_values, item_names, user_names)


def _numeric(table: pd.DataFrame | None, key: str, ids: pd.Index) -> tuple[np.ndarray, list]:
    if table is None:
        return np.zeros((len(ids), 0), dtype=np.float32), []
    if key not in table.columns:
        raise FunnelDataError(
            f"the table keyed by {key!r} has no column {key!r}",
            hint=f"name the id column of data.items / data.users {key!r}, as in the interactions",
        )
    table = table.drop_duplicates(key).set_index(key).reindex(ids)
    columns, names = [], []
    for name in table.columns:
        values = table[name]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            columns.append(values.astype(float).to_numpy())
            names.append(name)
        elif values.nunique() <= 30:
            for level in sorted(map(str, values.dropna().unique())):
                columns.append((values.astype(str) == level).where(values.notna()).to_numpy(float))
                names.append(f"{name}_{level}")
    names = [re.sub(r"[^0-9A-Za-z_]+", "_", n) for n in names]  # LightGBM's feature names
    if not columns:
        return np.zeros((len(ids), 0), dtype=np.float32), []
    return np.column_stack(columns).astype(np.float32), names


def allowed(spec: SystemSpec, items: pd.Index) -> np.ndarray | None:
    """Which items pass every ``filters.rules`` condition (None without rules)."""
    rules = spec.architecture.filters.rules
    if not rules:
        return None
    import duckdb

    table = read_table(spec, "items")
    key = spec.problem.target
    where = " and ".join(f"({rule})" for rule in rules)
    try:
        con = duckdb.connect()
        con.register("items", table)
        passing = con.execute(f'select "{key}" from items where {where}').fetchnumpy()[key]
    except duckdb.Error as exc:
        raise FunnelDataError(
            f"architecture.filters.rules cannot be evaluated on the item table: {exc}",
            hint="write each rule as a DuckDB condition over the item table's columns",
        ) from exc
    return np.asarray(items.isin(pd.Index(passing)))

"""The baselines a ranker must beat: a random order, the order of one column (declared, or
the best one learned on train) and a pointwise model.

Like the other baselines (:mod:`mlsd.models.baselines`) they read raw columns, are fitted on
the training split and are never packaged. Each predicts a score per row; rows are ranked
within their group by it, ties broken at random in expectation (the metrics' rule), so
one score for every row *is* the random order, measured exactly rather than by one draw.

- ``random``: the same score for every row: each metric's expected value under a random
  order of every group.
- ``heuristic``: the spec's ``order by COLUMN [desc|asc]`` (e.g. ``order by views desc``:
  popularity; ``order by published desc``: recency); missing values rank last.
- ``best_column``: without a heuristic, the numeric feature and direction whose order scores
  best on train by the primary metric (a pointwise model of one feature).
- ``pointwise``: gradient-boosted trees regressing each row's relevance on the model's
  inputs, blind to its group ("ranking as regression"): what learning the order within
  each list must add to.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import did_you_mean
from mlsd.evaluation.metrics import Metric, MetricUndefined
from mlsd.models.base import ModelError

_ORDER = re.compile(r"^\s*order\s+by\s+(.+?)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)
HEURISTIC_KEY = "models.baselines.heuristic"


class RankingBaseline:
    """A score per row from raw columns; ``fit`` sees train's rows, labels and groups."""

    name = "baseline"

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> RankingBaseline:
        """Learn from the training rows; returns self."""
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """One score per row: higher ranks first."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What it does, for the leaderboard."""
        return {"family": self.name}


class RandomOrder(RankingBaseline):
    """Every row the same score: the expected metric of a random order."""

    name = "random"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(frame))

    def describe(self) -> dict[str, Any]:
        return {"family": self.name, "strategy": "random order (expected value over ties)"}


class ColumnOrder(RankingBaseline):
    """Rows ordered by one numeric column, descending or ascending; missing values last."""

    name = "heuristic"

    def __init__(self, column: str, descending: bool = True, text: str | None = None):
        self.column, self.descending = column, descending
        self.text = text or f"order by {column} {'desc' if descending else 'asc'}"

    @classmethod
    def parse(cls, text: str, columns: list[str]) -> ColumnOrder:
        """``order by COLUMN [desc|asc]`` (default desc) over one of ``columns``."""
        match = _ORDER.match(str(text))
        if match is None:
            raise ModelError(
                f"{HEURISTIC_KEY} {text!r} is not a ranking heuristic",
                hint="write `order by COLUMN desc` (or asc), e.g. `order by views desc`",
            )
        column = match.group(1).strip().strip("`\"'")
        if column not in columns:
            raise ModelError(
                f"{HEURISTIC_KEY} orders by {column!r}, which is not a column of the data"
                f"{did_you_mean(column, columns)}",
                hint=f"use one of: {', '.join(columns[:20])}",
            )
        return cls(column, (match.group(2) or "desc").lower() == "desc", str(text).strip())

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> ColumnOrder:
        _numbers(frame, self.column)  # refused now when it is not numeric
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return _order(_numbers(frame, self.column), self.descending)

    def describe(self) -> dict[str, Any]:
        return {"family": self.name, "rule": self.text}


class BestColumn(ColumnOrder):
    """The numeric column and direction whose order scores best on train."""

    name = "best_column"

    def __init__(self, metric: Metric, features: list[str]):
        super().__init__("", True)
        self.metric, self.features = metric, features
        self.train_score: float | None = None

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> BestColumn:
        best = None
        for column in self.features:
            series = frame[column]
            if not pd.api.types.is_numeric_dtype(series) or series.dtype == bool:
                continue
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            for descending in (True, False):
                try:
                    value = self.metric.fn(y, _order(values, descending), groups=groups)
                except MetricUndefined:
                    continue
                key = value if self.metric.direction == "max" else -value
                if best is None or key > best[0]:
                    best = (key, column, descending, value)
        if best is not None:
            _, self.column, self.descending, self.train_score = best
            self.text = f"order by {self.column} {'desc' if self.descending else 'asc'}"
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.column:  # no numeric column: a random order
            return np.zeros(len(frame))
        return super().predict(frame)

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "rule": self.text if self.column else "none (no numeric column)",
            "train": self.train_score,
        }


class Pointwise(RankingBaseline):
    """LightGBM regression of the relevance on the model's inputs, one row at a time."""

    name = "pointwise"
    ROUNDS = 100

    def __init__(self, features: list[str], seed: int = 0):
        self.features, self.seed = features, seed
        self.booster: Any = None
        self.levels: dict[str, pd.Index] = {}  # train's categories of each text column

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for column in self.features:
            series = frame[column]
            if column in self.levels:
                out[column] = pd.Categorical(series.astype("string"), self.levels[column])
            else:
                out[column] = pd.to_numeric(series, errors="coerce").astype(np.float64)
        return pd.DataFrame(out, index=frame.index)

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> Pointwise:
        import lightgbm as lgb

        for column in self.features:
            series = frame[column]
            if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
                self.levels[column] = pd.Index(series.astype("string").dropna().unique())
        params = {
            "objective": "regression",
            "verbose": -1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
        }
        dataset = lgb.Dataset(self._inputs(frame), label=np.asarray(y, dtype=np.float64))
        self.booster = lgb.train(params, dataset, num_boost_round=self.ROUNDS)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self._inputs(frame))

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "strategy": f"LightGBM regression of the relevance, {self.ROUNDS} trees, "
            "default parameters, groups ignored",
        }


def ranking_baselines(
    heuristic: str | None, columns: list[str], features: list[str], metric: Metric, seed: int = 0
) -> list[RankingBaseline]:
    """random, the spec's heuristic (over any of ``columns``) or, without one, the best
    single-feature order, and the pointwise model of ``features``."""
    if heuristic is not None and str(heuristic).strip():
        order: RankingBaseline = ColumnOrder.parse(heuristic, columns)
    else:
        order = BestColumn(metric, features)
    return [RandomOrder(), order, Pointwise(features, seed)]


def _order(values: np.ndarray, descending: bool) -> np.ndarray:
    """Scores that rank ``values`` (missing last) in the direction asked; finite, as the
    metrics require."""
    scores = values if descending else -values
    missing = np.isnan(scores)
    if missing.any():
        floor = np.nanmin(scores) - 1.0 if not missing.all() else 0.0
        scores = np.where(missing, floor, scores)
    return scores


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    series = frame[column]
    if not pd.api.types.is_numeric_dtype(series):
        raise ModelError(
            f"{HEURISTIC_KEY} orders by {column!r}, which is not numeric ({series.dtype})",
            hint="order by a numeric column (a count, a date as a number, a score)",
        )
    return series.to_numpy(dtype=np.float64, na_value=np.nan)

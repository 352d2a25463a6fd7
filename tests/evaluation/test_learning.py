"""The learning curve within a time limit: a refit expected to end past it is not started."""

from __future__ import annotations

import numpy as np

from mlsd.evaluation.learning import learning_curve
from mlsd.models.base import FitData, TaskInfo

REGRESSION = TaskInfo("regression")


def _data(n: int) -> FitData:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8))
    y = X[:, 0] + np.sin(X[:, 1]) + rng.normal(scale=0.3, size=n)
    return FitData(X[: n // 2], y[: n // 2], X[n // 2 :], y[n // 2 :], [f"x{i}" for i in range(8)])


def test_points_expected_to_end_past_the_limit_are_skipped():
    data = _data(40_000)
    full = {"train": None, "valid": None}
    params = {"num_boost_round": 150}
    # warm up (imports, first fit), so the timed curve below costs what its refits cost
    learning_curve("lightgbm", params, REGRESSION, _data(400), metric="rmse", full=full)
    free = learning_curve("lightgbm", params, REGRESSION, data, metric="rmse", full=full)
    assert [p["fraction"] for p in free["points"]] == [0.2, 0.4, 0.7, 1.0]
    first = free["seconds"] * 0.2 / (0.2 + 0.4 + 0.7)  # the 20% refit's share of the time
    # room for the 20% refit and a little more: the 40% one would take twice as long
    limit = 2.0 * first
    tight = learning_curve(
        "lightgbm", params, REGRESSION, data, metric="rmse", full=full, budget_s=limit
    )
    assert [p["fraction"] for p in tight["points"]] == [0.2, 1.0]
    assert "skipped" in tight["text"]
    none = learning_curve(
        "lightgbm", params, REGRESSION, data, metric="rmse", full=full, budget_s=0
    )
    assert [p["fraction"] for p in none["points"]] == [1.0] and none["verdict"] == "unclear"

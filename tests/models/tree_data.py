"""The synthetic table the tree families' tests learn: a nonlinear signal in 5 columns, as a
regression, binary or three-class target, split 75/25 into train and valid."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.models.base import FitData, TaskInfo

TASKS = pytest.mark.parametrize(
    "task",
    [TaskInfo("regression"), TaskInfo("binary", 2), TaskInfo("multiclass", 3)],
    ids=["regression", "binary", "multiclass"],
)


def tree_data(kind: str, n: int = 1200, seed: int = 0) -> FitData:
    """``n`` rows of the ``kind`` task (regression, binary or multiclass)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    z = 2 * X[:, 0] + np.sin(3 * X[:, 1]) - X[:, 2] * X[:, 3]
    if kind == "regression":
        y = z + rng.normal(scale=0.3, size=n)
    elif kind == "binary":
        y = (z + rng.normal(scale=0.5, size=n) > 0).astype(float)
    else:
        y = np.digitize(z + rng.normal(scale=0.3, size=n), [-1, 1]).astype(float)
    cut = int(n * 0.75)
    return FitData(X[:cut], y[:cut], X[cut:], y[cut:])

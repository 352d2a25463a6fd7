"""Tuning trials fitted on a Ray cluster (``--engine ray``): ask-and-tell with several trials
at once, the defaults first and never lost, cross-validation, the budget kept, and train()
end to end with the pool."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from mlsd.models.base import FitData, TaskInfo
from mlsd.models.train import train
from mlsd.models.tuning import tune
from mlsd.spec import EngineSpec, parse_spec
from mlsd.workspace import Workspace

pytest.importorskip("ray")
from mlsd.engine.ray_tuning import RayTrials

REGRESSION = TaskInfo("regression")


class CountingTrials(RayTrials):
    """RayTrials that adds up the seconds each finished trial took on its workers, and
    keeps each trial's (seconds from submitted to its result, seconds fitting)."""

    fitting_s = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.submitted, self.timings = {}, []

    def submit(self, *args):
        handle = super().submit(*args)
        self.submitted[handle] = time.perf_counter()
        return handle

    def result(self, handle):
        outcome = super().result(handle)
        self.fitting_s += outcome[-1]
        self.timings.append((time.perf_counter() - self.submitted[handle], outcome[-1]))
        return outcome


@pytest.fixture(scope="module")
def pool(ray_cluster):
    return CountingTrials(EngineSpec(kind="ray"))


def _regression(n: int = 900, seed: int = 0, folds: int = 0) -> FitData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = 2 * X[:, 0] + np.sin(3 * X[:, 1]) + X[:, 2] * X[:, 3] + rng.normal(scale=0.5, size=n)
    if folds:
        index = np.arange(n)
        parts = np.array_split(index, folds)
        return FitData(X, y, folds=[(np.setdiff1d(index, part), part) for part in parts])
    cut = n * 2 // 3
    return FitData(X[:cut], y[:cut], X[cut:], y[cut:])


def _mse(y: np.ndarray):
    return lambda pred: float(np.mean((y - pred) ** 2))


def _search(data: FitData, y_judged: np.ndarray, pool, budget_s: float = 6.0):
    return tune(
        "lightgbm", REGRESSION, data, score=_mse(y_judged), direction="min",
        budget_s=budget_s, max_trials=200, seed=0, pool=pool,
    )  # fmt: skip


def test_trials_run_on_the_cluster_two_at_a_time_and_never_lose_to_the_defaults(pool):
    data = _regression(n=3000)
    assert pool.slots == 2  # the cluster's CPUs
    pool.fitting_s = 0.0
    started = time.perf_counter()
    result = _search(data, data.y_valid, pool)
    took = time.perf_counter() - started
    assert took < 6.0 + 4.0  # the budget, and the trials in flight at its end cancelled
    # trials overlapped: their fitting time adds up to more than the search's wall time
    assert pool.fitting_s > took
    assert result.trials[0]["params"] == {} and result.trials[0]["state"] == "COMPLETE"
    local = _search(data, data.y_valid, None, budget_s=0)  # the defaults, fitted here
    assert result.default_score == pytest.approx(local.score, rel=1e-12)  # the same fit
    assert result.score <= result.default_score
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(complete) >= 3 and result.n_trials == len(result.trials)
    assert result.score == min(t["score"] for t in complete)
    # the model handed on is the best trial's, fitted on the cluster and brought back
    assert _mse(data.y_valid)(result.model.predict(data.X_valid)) == pytest.approx(result.score)


def test_cross_validated_trials_fit_their_folds_at_once_and_end_with_a_fit_on_every_row(
    ray_cluster,
):
    data = _regression(n=1500, folds=2)
    pool = CountingTrials(EngineSpec(kind="ray"))
    pool.share(data)
    assert pool.slots == 1  # two folds fill the two CPUs
    result = _search(data, data.y, pool, budget_s=8.0)
    # one trial at a time, yet most came back sooner than their folds' fitting seconds
    # added up: the folds ran at once (one after another, a trial takes at least their sum)
    assert len(pool.timings) >= 3
    assert sum(waited < fitting for waited, fitting in pool.timings) > len(pool.timings) / 2
    local = _search(data, data.y, None, budget_s=0)  # the defaults' folds, one by one here
    assert result.default_score == pytest.approx(local.score, rel=1e-12)
    assert result.valid_pred is not None and result.valid_pred.shape == data.y.shape
    assert result.score == pytest.approx(_mse(data.y)(result.valid_pred))
    assert result.model.n_features == 6  # refitted here on every row with the best params
    assert "num_boost_round" in result.params  # the folds' mean, for the fit on every row


def test_train_with_the_pool_registers_a_tuned_model(pool, tmp_path):
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = 3 * frame["a"] - frame["b"] ** 2 + rng.normal(scale=0.3, size=n)
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(
        "name: t\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        "models: {candidates: [lightgbm], tuning: {budget_s: 10}}\n"
    )
    spec._path = tmp_path / "system.yaml"
    spec._path.write_text("# written by the test\n")
    result = train(spec, Workspace(tmp_path / "ws"), progress=False, pool=pool)
    assert result.registered, result.reasons
    row = next(e for e in result.leaderboard if e.name == "lightgbm")
    assert row.details["trials"] >= 4

"""Tuning trials fitted on a Ray cluster (``--engine ray``): ask-and-tell with several trials
at once, the defaults first and never lost, cross-validation, the budget kept, and train()
end to end with the pool."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.models.base import FitData, TaskInfo
from mlsd.models.train import train
from mlsd.models.tuning import fit_fold, timed_trial, tune
from mlsd.spec import EngineSpec, parse_spec
from mlsd.workspace import Workspace

pytest.importorskip("ray")
from mlsd.engine.ray_tuning import RayTrials

REGRESSION = TaskInfo("regression")


class Clocked(RayTrials):
    """RayTrials whose tasks write when they ran (wall clock) to ``log``, one JSON line
    each: ``["trial" or "fold", the trial's parameters, began, ended]``."""

    def __init__(self, engine, log):
        super().__init__(engine)
        self.log, self._clocked = Path(log), False

    def spans(self, kind: str) -> dict[str, list[tuple[float, float]]]:
        """Parameters -> the (began, ended) of each task of ``kind`` that ran them."""
        out: dict[str, list] = {}
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            what, params, began, ended = json.loads(line)
            if what == kind:
                out.setdefault(params, []).append((began, ended))
        return out

    def _connect(self):
        ray = super()._connect()
        if not self._clocked:
            log = str(self.log)

            def clocked(kind, run, params):
                began = time.time()
                out = run()
                with open(log, "a") as lines:
                    key = repr(sorted(params.items()))
                    lines.write(json.dumps([kind, key, began, time.time()]) + "\n")
                return out

            def trial(data, family, task, params, seed, seconds):
                run = lambda: timed_trial(data, family, task, params, seed, seconds)  # noqa: E731
                return clocked("trial", run, params)

            def fold(family, task, params, seed, data, index):
                run = lambda: fit_fold(family, task, params, seed, data, index)  # noqa: E731
                return clocked("fold", run, params)

            self._trial = ray.remote(num_cpus=1, max_retries=0)(trial)
            self._fold = ray.remote(num_cpus=1, max_retries=0)(fold)
            self._clocked = True
        return ray


def overlap(spans: list[tuple[float, float]]) -> bool:
    """Whether the spans all ran at one moment."""
    return max(b for b, _ in spans) < min(e for _, e in spans)


@pytest.fixture(scope="module")
def pool(ray_cluster, tmp_path_factory):
    return Clocked(EngineSpec(kind="ray"), tmp_path_factory.mktemp("clock") / "tasks.jsonl")


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


def _search(data: FitData, y_judged: np.ndarray, pool, budget_s: float = 6.0, trials: int = 200):
    return tune(
        "lightgbm", REGRESSION, data, score=_mse(y_judged), direction="min",
        budget_s=budget_s, max_trials=trials, seed=0, pool=pool,
    )  # fmt: skip


def test_trials_run_on_the_cluster_two_at_a_time_and_never_lose_to_the_defaults(pool):
    data = _regression(n=3000)
    assert pool.slots == 2  # the cluster's CPUs
    # ended by its number of trials, not by the clock: as many trials on a loaded machine
    result = _search(data, data.y_valid, pool, budget_s=300, trials=6)
    # trials ran two at a time: some pair of them was fitting at one moment
    spans = sorted(span for runs in pool.spans("trial").values() for span in runs)
    assert any(overlap([a, b]) for a, b in itertools.pairwise(spans)), spans
    assert result.trials[0]["params"] == {} and result.trials[0]["state"] == "COMPLETE"
    local = _search(data, data.y_valid, None, budget_s=0)  # the defaults, fitted here
    assert result.default_score == pytest.approx(local.score, rel=1e-12)  # the same fit
    assert result.score <= result.default_score
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(complete) >= 3 and result.n_trials == len(result.trials) <= 6
    assert result.score == min(t["score"] for t in complete)
    # the model handed on is the best trial's, fitted on the cluster and brought back
    assert _mse(data.y_valid)(result.model.predict(data.X_valid)) == pytest.approx(result.score)


def test_the_budget_ends_the_search_on_the_cluster(pool):
    data = _regression(n=3000)
    started = time.perf_counter()
    result = _search(data, data.y_valid, pool, budget_s=3.0)
    took = time.perf_counter() - started
    assert took < 3.0 + 4.0  # the budget, and the trials in flight at its end cancelled
    assert result.n_trials < 200 and result.trials[0]["state"] == "COMPLETE"


def test_cross_validated_trials_fit_their_folds_at_once_and_end_with_a_fit_on_every_row(
    ray_cluster, tmp_path
):
    data = _regression(n=1500, folds=2)
    pool = Clocked(EngineSpec(kind="ray"), tmp_path / "tasks.jsonl")
    pool.share(data)
    assert pool.slots == 1  # two folds fill the two CPUs
    result = tune(
        "lightgbm", REGRESSION, data, score=_mse(data.y), direction="min",
        budget_s=120, max_trials=4, seed=0, pool=pool,
    )  # fmt: skip
    # one trial at a time, and the two folds of each ran at once: their spans overlap
    pairs = [s for s in pool.spans("fold").values() if len(s) == 2]  # TPE may repeat one
    assert len(pairs) >= 3
    assert all(overlap(s) for s in pairs), pairs
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

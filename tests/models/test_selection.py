"""Cross-validation for small tables: when it is chosen, folds that hold every row out once,
tuning scored on out-of-fold predictions, and the final fit on every row with the rounds the
folds chose."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.models.base import FitData, TaskInfo
from mlsd.models.linear import LinearModel
from mlsd.models.selection import Selection, choose_selection, fold_indices
from mlsd.models.tuning import tune

BINARY = TaskInfo("binary", 2)
REGRESSION = TaskInfo("regression")


def test_small_validation_splits_are_cross_validated_and_large_ones_kept():
    y = lambda n, share=0.5: (np.arange(n) < share * n).astype(float)  # noqa: E731
    small = choose_selection("auto", 5, "stratified", BINARY, y(400), y(85))
    assert small.cv and small.folds == 5 and small.repeats == 2 and "85 rows" in small.reason
    big = choose_selection("auto", 5, "stratified", BINARY, y(6000), y(1500))
    assert not big.cv and big.repeats == 1
    rare = choose_selection("auto", 5, "stratified", BINARY, y(6000, 0.02), y(1500, 0.02))
    assert rare.cv and "30 rows of a class" in rare.reason and rare.repeats == 1
    timed = choose_selection("auto", 5, "time", REGRESSION, y(400), y(85))
    assert not timed.cv and "time split" in timed.reason
    assert not choose_selection("auto", 5, "random", TaskInfo("ranking"), y(400), y(85)).cv
    assert choose_selection("cv", 3, "time", REGRESSION, y(6000), y(1500)).folds == 3
    assert not choose_selection("holdout", 5, "random", REGRESSION, y(400), y(85)).cv


def test_every_row_is_held_out_once_per_repeat_and_classes_keep_their_share():
    y = (np.arange(500) % 10 == 0).astype(float)  # 10% positives
    folds = fold_indices(y, BINARY, Selection("cv", 5, 2), seed=3)
    assert len(folds) == 10
    for repeat in (folds[:5], folds[5:]):
        held = np.concatenate([b for _, b in repeat])
        assert np.array_equal(np.sort(held), np.arange(500))
        for fit, out in repeat:
            assert not set(fit) & set(out) and len(fit) + len(out) == 500
            assert y[out].mean() == pytest.approx(0.1, abs=0.01)
    assert not np.array_equal(folds[0][1], folds[5][1])  # a new shuffle per repeat


def _rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X[:, 0] - 2 * X[:, 1] + X[:, 2] * X[:, 3] + rng.normal(scale=0.5, size=n)
    return X, y


def test_cross_validated_tuning_scores_out_of_fold_and_refits_on_every_row():
    X, y = _rows()
    folds = fold_indices(y, REGRESSION, Selection("cv", 5, 1), seed=0)
    data = FitData(X, y, folds=folds)
    mse = lambda pred: float(np.mean((y - pred) ** 2))  # noqa: E731
    result = tune("linear", REGRESSION, data, score=mse, direction="min", budget_s=0,
                  max_trials=1, seed=0)  # fmt: skip
    # each row predicted by the model of the fold that held it out, none fitted on it
    expected = np.zeros(len(y))
    for fit, out in folds:
        expected[out] = LinearModel(REGRESSION).fit(FitData(X[fit], y[fit])).predict(X[out])
    assert np.allclose(result.valid_pred, expected)
    assert result.score == pytest.approx(mse(expected))
    # the model handed on is fitted on every row: in-sample, it beats its out-of-fold score
    assert np.allclose(
        result.model.predict(X), LinearModel(REGRESSION).fit(FitData(X, y)).predict(X)
    )


def test_boosted_trees_carry_the_folds_mean_rounds_into_the_final_fit():
    X, y = _rows(600, seed=1)
    folds = fold_indices(y, REGRESSION, Selection("cv", 3, 1), seed=0)
    mse = lambda pred: float(np.mean((y - pred) ** 2))  # noqa: E731
    result = tune("lightgbm", REGRESSION, FitData(X, y, folds=folds), score=mse,
                  direction="min", budget_s=2, max_trials=4, seed=0)  # fmt: skip
    rounds = result.params["num_boost_round"]
    assert 1 <= rounds < 2000 and result.model.best_iteration == rounds
    assert result.valid_pred.shape == y.shape and result.n_trials >= 1
    assert all("num_boost_round" in t["params"] for t in result.trials if t["state"] == "COMPLETE")


def test_a_cross_validated_search_stops_mid_trial_when_the_budget_ends():
    import time

    X, y = _rows(4000, seed=2)
    folds = fold_indices(y, REGRESSION, Selection("cv", 5, 1), seed=0)
    data = FitData(X, y, folds=folds)
    mse = lambda pred: float(np.mean((y - pred) ** 2))  # noqa: E731
    started = time.perf_counter()
    tune("lightgbm", REGRESSION, data, score=mse, direction="min", budget_s=0, max_trials=1,
         seed=0)  # fmt: skip
    one_run = time.perf_counter() - started  # the defaults cross-validated, and the final fit
    budget = 1.5 * one_run
    result = tune("lightgbm", REGRESSION, data, score=mse, direction="min", budget_s=budget,
                  max_trials=1000, seed=0)  # fmt: skip
    # cross-validated trials are never pruned on their scores: a pruned one is one the
    # deadline cut between two folds instead of letting it run all five past the budget
    states = [t["state"] for t in result.trials]
    assert states[0] == "COMPLETE" and "PRUNED" in states, states
    assert result.elapsed_s < budget + one_run, (result.elapsed_s, one_run)

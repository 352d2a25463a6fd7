"""tune(): defaults at budget 0, Optuna search within a budget, pruning, class-weight choices,
fixed parameters, and a search space read from the family's parameter table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd.model_params import LIGHTGBM, LINEAR
from mlsd.models.base import FitData, ModelError, TaskInfo
from mlsd.models.gbdt import GBDTModel
from mlsd.models.linear import LinearModel
from mlsd.models.tuning import draw, start_point, tune

BINARY = TaskInfo("binary", 2)
REGRESSION = TaskInfo("regression")


def _regression(n: int = 900, seed: int = 0) -> FitData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = 2 * X[:, 0] + np.sin(3 * X[:, 1]) + X[:, 2] * X[:, 3] + rng.normal(scale=0.5, size=n)
    cut = 600
    return FitData(X[:cut], y[:cut], X[cut:], y[cut:])


def _imbalanced(n: int = 1500, seed: int = 1) -> FitData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] - X[:, 1] + rng.normal(scale=1.0, size=n) > 2.8).astype(float)
    cut = 1000
    return FitData(X[:cut], y[:cut], X[cut:], y[cut:])


def _mse(data: FitData):
    return lambda pred: float(np.mean((data.y_valid - pred) ** 2))


def _recall(data: FitData):
    """A score that rewards catching the rare positives (class weights help it)."""
    positive = data.y_valid == 1
    return lambda pred: float((pred[positive] > 0.5).mean())


@pytest.mark.parametrize("family", ["linear", "lightgbm", "random_forest"])
def test_budget_zero_fits_the_defaults_once(family):
    data = _regression()
    result = tune(
        family,
        REGRESSION,
        data,
        score=_mse(data),
        direction="min",
        budget_s=0,
        max_trials=50,
        seed=0,
    )
    assert (result.n_trials, result.n_pruned, result.params) == (1, 0, {})
    assert result.model.params == {}
    assert result.score == pytest.approx(_mse(data)(result.model.predict(data.X_valid)))
    assert result.score == result.default_score


def test_small_budget_runs_several_trials_and_never_loses_to_defaults():
    data = _regression()
    result = tune(
        "linear",
        REGRESSION,
        data,
        score=_mse(data),
        direction="min",
        budget_s=2,
        max_trials=10_000,
        seed=0,
    )
    assert result.n_trials > 3
    assert result.elapsed_s < 6
    assert result.score <= result.default_score
    assert isinstance(result.model, LinearModel)
    assert "alpha" in result.params or result.params == {}
    assert result.trials[0] == {
        "number": 0,
        "params": {},
        "score": result.default_score,
        "state": "COMPLETE",
    }
    assert result.describe()["n_trials"] == result.n_trials


def test_lightgbm_search_prunes_and_improves_on_defaults():
    data = _regression()
    result = tune(
        "lightgbm",
        REGRESSION,
        data,
        score=_mse(data),
        direction="min",
        budget_s=60,
        max_trials=20,
        seed=3,
    )
    assert result.n_trials == 20
    assert result.n_pruned > 0
    assert result.score <= result.default_score
    assert isinstance(result.model, GBDTModel)
    # the kept model is the one that scored best
    assert _mse(data)(result.model.predict(data.X_valid)) == pytest.approx(result.score)


def test_pruning_respects_a_maximised_score():
    data = _imbalanced()
    positive = data.y_valid == 1

    def separation(pred):  # higher is better
        return float(pred[positive].mean() - pred[~positive].mean())

    result = tune(
        "lightgbm",
        BINARY,
        data,
        score=separation,
        direction="max",
        budget_s=60,
        max_trials=15,
        seed=0,
    )
    assert result.score >= result.default_score
    assert result.n_trials == 15


def test_class_weight_choices_at_budget_zero_keep_the_better():
    data = _imbalanced()
    result = tune(
        "linear",
        BINARY,
        data,
        score=_recall(data),
        direction="max",
        budget_s=0,
        max_trials=5,
        seed=0,
        param_choices={"class_weight": [None, "balanced"]},
    )
    assert result.n_trials == 2
    assert result.params == {"class_weight": "balanced"}
    assert result.model.describe()["params"]["class_weight"] == "balanced"
    assert result.score > result.default_score  # default = the first choice (None)


def test_class_weight_choices_enter_the_search():
    data = _imbalanced()
    result = tune(
        "lightgbm",
        BINARY,
        data,
        score=_recall(data),
        direction="max",
        budget_s=60,
        max_trials=6,
        seed=0,
        param_choices={"class_weight": [None, "balanced"]},
    )
    seen = {trial["params"].get("class_weight") for trial in result.trials}
    assert seen == {None, "balanced"}
    assert result.params["class_weight"] == "balanced"


def test_a_choice_may_fix_a_searched_parameter():
    data = _imbalanced()
    result = tune(
        "linear",
        BINARY,
        data,
        score=_recall(data),
        direction="max",
        budget_s=60,
        max_trials=4,
        seed=0,
        param_choices={"C": [0.01, 1.0]},
    )
    assert {trial["params"]["C"] for trial in result.trials} <= {0.01, 1.0}


@pytest.mark.parametrize("family", ["linear", "lightgbm", "random_forest"])
def test_regression_accepts_the_no_weight_choice(family):
    data = _regression()
    result = tune(
        family,
        REGRESSION,
        data,
        score=_mse(data),
        direction="min",
        budget_s=60,
        max_trials=2,
        seed=0,
        param_choices={"class_weight": [None]},
    )
    assert result.n_trials == 2 and result.params.get("class_weight") is None


def test_nan_scores_never_win():
    data = _regression()
    calls = []

    def flaky(pred):
        calls.append(1)
        return math.nan if len(calls) > 1 else float(np.mean((data.y_valid - pred) ** 2))

    result = tune(
        "linear", REGRESSION, data, score=flaky, direction="min", budget_s=60, max_trials=4, seed=0
    )
    assert result.n_trials == 4
    assert result.params == {}  # only the defaults scored


def test_errors():
    data = _regression()
    with pytest.raises(ModelError, match="did you mean 'linear'"):
        tune(
            "linaer",
            REGRESSION,
            data,
            score=_mse(data),
            direction="min",
            budget_s=0,
            max_trials=1,
            seed=0,
        )
    no_valid = FitData(data.X, data.y)
    with pytest.raises(ModelError, match="validation split"):
        tune(
            "linear",
            REGRESSION,
            no_valid,
            score=_mse(data),
            direction="min",
            budget_s=5,
            max_trials=3,
            seed=0,
        )
    result = tune(
        "linear",
        REGRESSION,
        no_valid,
        score=_mse(data),
        direction="min",
        budget_s=0,
        max_trials=3,
        seed=0,
    )
    assert math.isnan(result.score) and result.n_trials == 1


class _Recorder:
    """A stand-in Optuna trial recording how each parameter is drawn."""

    def __init__(self):
        self.calls = []

    def suggest_float(self, name, low, high, log=False):
        self.calls.append(("float", name, low, high, log))
        return low

    def suggest_int(self, name, low, high, log=False):
        self.calls.append(("int", name, low, high, log))
        return low

    def suggest_categorical(self, name, choices):
        self.calls.append(("categorical", name, choices))
        return choices[0]


def test_the_search_space_is_the_families_table():
    trial = _Recorder()
    space = LIGHTGBM.search_space(REGRESSION.kind)
    drawn = {name: draw(trial, param) for name, param in space.items()}
    # the same distributions, in the same order, as before the table: same trials per seed
    assert trial.calls == [
        ("float", "learning_rate", 0.01, 0.3, True),
        ("int", "num_leaves", 7, 255, True),
        ("int", "min_data_in_leaf", 5, 100, False),
        ("float", "feature_fraction", 0.5, 1.0, False),
        ("float", "bagging_fraction", 0.5, 1.0, False),
        ("float", "lambda_l2", 1e-8, 10.0, True),
        ("categorical", "extra_trees", [False, True]),
    ]
    assert drawn["bagging_freq"] == 1  # searched trials bag, so bagging_fraction matters
    assert start_point(space) == {
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 1.0,
        "lambda_l2": 1e-8,  # the default 0 is below the log range: its floor
        "extra_trees": False,
    }
    for task, name in ((REGRESSION, "alpha"), (BINARY, "C")):
        trial = _Recorder()
        space = LINEAR.search_space(task.kind)
        for param in space.values():
            draw(trial, param)
        assert trial.calls == [("float", name, 1e-4, 1e3, True)]
        assert start_point(space) == {name: 1.0}


def test_fixed_parameters_hold_in_every_trial_and_are_not_searched():
    data = _regression()
    common = dict(score=_mse(data), direction="min", max_trials=4, seed=0)
    result = tune("lightgbm", REGRESSION, data, budget_s=60, fixed={"num_leaves": 15}, **common)
    assert result.n_trials == 4
    assert all(trial["params"]["num_leaves"] == 15 for trial in result.trials)
    assert result.model.booster_params["num_leaves"] == 15
    searched = set(LIGHTGBM.search_space(REGRESSION.kind))
    assert all(set(trial["params"]) == searched for trial in result.trials[1:])
    plain = tune("linear", REGRESSION, data, budget_s=0, fixed={"alpha": 3.0}, **common)
    assert plain.params == {"alpha": 3.0} and plain.model.resolved == {"alpha": 3.0}
    with pytest.raises(ModelError, match="num_leaves must be an integer in"):
        tune("lightgbm", REGRESSION, data, budget_s=0, fixed={"num_leaves": 1}, **common)
    with pytest.raises(ModelError, match="both fixed and given choices"):
        tune(
            "linear",
            BINARY,
            _imbalanced(),
            budget_s=0,
            fixed={"class_weight": None},
            param_choices={"class_weight": [None, "balanced"]},
            **common,
        )

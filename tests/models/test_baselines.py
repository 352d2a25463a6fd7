"""Baselines on tiny hand-checked frames: zero rule, random, heuristic rules and groups, stump."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from mlsd.models.base import ModelError, TaskInfo
from mlsd.models.baselines import (
    HeuristicBaseline,
    RandomBaseline,
    StumpBaseline,
    ZeroRuleBaseline,
    find_stump,
    make_baselines,
)

BINARY = TaskInfo("binary", 2)
MULTI = TaskInfo("multiclass", 3)
REGRESSION = TaskInfo("regression")


@pytest.fixture
def credit() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "balance": [100.0, 500.0, 1900.0, 2500.0, np.nan, 2000.0],
            "student": ["No", "Yes", "Yes", "No", "Yes", None],
        }
    )


def test_zero_rule_mean_median_and_priors(credit):
    y = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 4.0])
    assert ZeroRuleBaseline(REGRESSION).fit(credit, y).predict(credit[:2]).tolist() == [19.0] * 2
    median = ZeroRuleBaseline(REGRESSION, statistic="median").fit(credit, y)
    assert median.predict(credit[:1]).tolist() == [3.5]
    assert median.describe()["statistic"] == "median"

    binary = ZeroRuleBaseline(BINARY).fit(credit, np.array([0, 0, 1, 1, 0, 0.0]))
    assert binary.predict(credit).tolist() == pytest.approx([1 / 3] * 6)
    assert binary.describe()["majority_class"] == 0

    multi = ZeroRuleBaseline(MULTI).fit(credit, np.array([0, 2, 2, 2, 0, 0.0]))
    assert multi.predict(credit[:2]).tolist() == [[0.5, 0.0, 0.5]] * 2


def test_random_is_seeded_and_stratified(credit):
    frame = pd.DataFrame({"a": np.arange(2000)})
    y = (np.arange(2000) % 4 == 0).astype(float)  # 25 % positive
    first = RandomBaseline(BINARY, seed=7).fit(frame, y).predict(frame)
    again = RandomBaseline(BINARY, seed=7).fit(frame, y).predict(frame)
    other = RandomBaseline(BINARY, seed=8).fit(frame, y).predict(frame)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert set(np.unique(first)) == {0.0, 1.0}
    assert 0.2 < first.mean() < 0.3

    multi = RandomBaseline(MULTI, seed=1).fit(frame, np.arange(2000) % 3.0).predict(frame)
    assert multi.shape == (2000, 3) and (multi.sum(axis=1) == 1).all()

    values = np.array([1.0, 5.0, 9.0, 10.0, 11.0, 12.0])
    drawn = RandomBaseline(REGRESSION, seed=3).fit(credit, values).predict(frame)
    assert set(drawn) <= set(values)
    assert np.array_equal(
        drawn, RandomBaseline(REGRESSION, seed=3).fit(credit, values).predict(frame)
    )


def test_heuristic_rule_learns_per_side_statistics(credit):
    y = np.array([0, 0, 1, 1, 0, 1.0])
    model = HeuristicBaseline(BINARY, "balance > 1800").fit(credit, y)
    # true side: rows 2, 3, 5 (all positive); false: 0, 1 and the missing balance
    assert model.predict(credit).tolist() == [0, 0, 1, 1, 0, 1]
    info = model.describe()
    assert info["kind"] == "rule" and info["when_true"] == 1.0 and info["train_share_true"] == 0.5

    both = HeuristicBaseline(REGRESSION, 'student == "Yes" and balance > 1000')
    both.fit(credit, np.array([1.0, 2.0, 10.0, 3.0, 4.0, 5.0]))
    assert both.predict(credit).tolist() == [3.0, 3.0, 10.0, 3.0, 3.0, 3.0]

    multi = HeuristicBaseline(MULTI, "balance > 1800").fit(credit, np.array([0, 0, 1, 2, 0, 2.0]))
    assert multi.predict(credit[2:4]).tolist() == [[0, 1 / 3, 2 / 3]] * 2


def test_heuristic_group_statistic_with_unseen_groups():
    train = pd.DataFrame({"hr": [0, 0, 1, 1, 2], "day": ["a", "b", "a", "a", "b"]})
    y = np.array([1.0, 3.0, 10.0, 20.0, 100.0])
    model = HeuristicBaseline(REGRESSION, "mean of bikers by hr", target="bikers").fit(train, y)
    new = pd.DataFrame({"hr": [2, 1, 0, 7], "day": ["a"] * 4})
    assert model.predict(new).tolist() == [100.0, 15.0, 2.0, pytest.approx(26.8)]
    assert model.describe()["n_groups"] == 3

    two = HeuristicBaseline(REGRESSION, "median of bikers by hr, day").fit(train, y)
    assert two.predict(pd.DataFrame({"hr": [1, 0], "day": ["a", "c"]})).tolist() == [15.0, 10.0]

    rate = HeuristicBaseline(BINARY, "mean of churn by day").fit(train, np.array([1, 0, 1, 0, 0.0]))
    assert rate.predict(pd.DataFrame({"day": ["a", "b"]})).tolist() == pytest.approx([2 / 3, 0])


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("balanse > 1800", "unknown column 'balanse' — did you mean 'balance'"),
        ("`studnt` == 'Yes'", "unknown column 'studnt' — did you mean 'student'"),
        ("balance >", "is not a valid expression"),
        ("balance + 1", "is not a true/false rule"),
        ("mean of y by studen", "groups by an unknown column 'studen' — did you mean 'student'"),
    ],
)
def test_bad_expressions_say_what_and_how_to_fix(credit, expression, message):
    with pytest.raises(ModelError, match=message) as info:
        HeuristicBaseline(REGRESSION, expression).fit(credit, np.arange(6.0))
    assert "models.baselines.heuristic" in info.value.render()
    assert expression in info.value.render()


def test_group_target_must_match():
    with pytest.raises(ModelError, match="did you mean 'bikers'"):
        HeuristicBaseline(REGRESSION, "mean of bikres by hr", target="bikers")


def test_stump_finds_the_step():
    frame = pd.DataFrame(
        {
            "noise": np.random.default_rng(0).normal(size=24),
            "hr": np.arange(24),
            "weathersit": ["clear", "rain"] * 12,
        }
    )
    y = np.where(frame.hr > 6, 50.0, 5.0)
    model = StumpBaseline(REGRESSION).fit(frame, y)
    assert model.describe()["rule"] == "hr > 6.5"
    assert model.predict(frame).tolist() == y.tolist()

    rain = (frame.weathersit == "rain").to_numpy(dtype=float)
    found = StumpBaseline(BINARY).fit(frame, rain)
    assert found.describe()["rule"] in ('weathersit == "rain"', 'weathersit == "clear"')
    assert found.predict(frame).tolist() == rain.tolist()


def test_stump_without_a_useful_split_predicts_the_overall_statistic():
    frame = pd.DataFrame({"constant": [1.0] * 4, "when": pd.date_range("2024-01-01", periods=4)})
    model = StumpBaseline(REGRESSION).fit(frame, np.array([1.0, 2.0, 3.0, 6.0]))
    assert model.describe()["rule"] == "none"
    assert model.predict(frame).tolist() == [3.0] * 4


def test_stump_text_quotes_awkward_names():
    frame = pd.DataFrame({"my col": ["x", "y", "x", "y"]})
    rule = find_stump(frame, np.array([1.0, 0, 1, 0]), BINARY)
    assert rule is not None and rule.text().startswith("`my col` == ")
    assert HeuristicBaseline(BINARY, rule.text()).fit(frame, np.array([1.0, 0, 1, 0]))


def test_stump_is_fast_on_100k_rows_by_50_columns():
    rng = np.random.default_rng(0)
    n = 100_000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(45)})
    for i in range(5):
        frame[f"c{i}"] = rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=n)
    y = (frame.x30 > 0.25).to_numpy() * 3.0 + rng.normal(size=n)
    start = time.perf_counter()
    model = StumpBaseline(REGRESSION).fit(frame, y)
    assert time.perf_counter() - start < 5
    assert model.describe()["rule"].startswith("x30 > 0.2")


def test_make_baselines():
    kinds = [b.name for b in make_baselines(BINARY, None, seed=0)]
    assert kinds == ["random", "zero_rule", "stump"]
    chosen = make_baselines(REGRESSION, "hr > 6", seed=0, statistic="median")
    assert [b.name for b in chosen] == ["random", "zero_rule", "heuristic"]
    assert all(b.statistic == "median" for b in chosen)
    with pytest.raises(ModelError, match="statistic"):
        make_baselines(REGRESSION, None, seed=0, statistic="mode")

"""Each transform against hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd.errors import FeatureError
from mlsd.features import Featurizer
from mlsd.features.transforms import factorize, to_bool, to_datetime, to_float
from mlsd.spec import FeaturesSpec
from mlsd.values import category_key

NAN = float("nan")


def fit(types: dict, data: dict, encoding: str = "codes", **options):
    """Fit a featurizer of ``types`` on ``data`` with FeaturesSpec ``options``."""
    return Featurizer(types, FeaturesSpec(**options), encoding=encoding).fit(data)


# --- numeric ---------------------------------------------------------------------------------


def test_numeric_median_and_missing_indicator():
    f = fit({"x": "numeric"}, {"x": np.array([1.0, 2.0, NAN, 4.0, np.inf])})
    assert f.feature_names == ["x", "x__missing"]
    out = f.transform({"x": np.array([NAN, 3.0, -np.inf])})
    # observed training values 1, 2, 4 → median 2; inf counts as missing
    np.testing.assert_array_equal(out, [[2.0, 1.0], [3.0, 0.0], [2.0, 1.0]])


def test_numeric_strings_and_none_become_imputed_not_errors():
    f = fit({"x": "numeric"}, {"x": [1.0, None, 3.0]})
    out = f.transform({"x": ["3.5", "abc", None, " 7 ", "inf", True]})
    np.testing.assert_array_equal(out[:, 0], [3.5, 2.0, 2.0, 7.0, 2.0, 1.0])
    np.testing.assert_array_equal(out[:, 1], [0, 1, 1, 0, 1, 0])


@pytest.mark.parametrize(("impute", "fill"), [("median", 2.0), ("mean", 7 / 3), ("zero", 0.0)])
def test_numeric_impute_strategies_per_column(impute, fill):
    f = fit({"x": "numeric"}, {"x": [1.0, 2.0, 4.0, None]}, columns={"x": {"impute": impute}})
    assert f.transform({"x": [None]})[0, 0] == pytest.approx(fill)


def test_no_indicator_without_training_missing_or_when_disabled():
    assert fit({"x": "numeric"}, {"x": [1.0, 2.0]}).feature_names == ["x"]
    f = fit({"x": "numeric"}, {"x": [1.0, None]}, missing_indicator=False)
    assert f.feature_names == ["x"]
    # missing at serving time still gets the training median, without an indicator column
    assert f.transform({"x": [None]}).tolist() == [[1.0]]


def test_standardize_only_for_onehot():
    data = {"x": [1.0, 2.0, 3.0, 4.0]}
    std = math.sqrt(1.25)
    linear = fit({"x": "numeric"}, data, encoding="onehot")
    np.testing.assert_allclose(linear.transform({"x": [1.0, 2.5]})[:, 0], [-1.5 / std, 0.0])
    trees = fit({"x": "numeric"}, data, encoding="codes")
    assert trees.transform({"x": [1.0]})[0, 0] == 1.0
    off = fit({"x": "numeric"}, data, encoding="onehot", columns={"x": {"standardize": False}})
    assert off.transform({"x": [1.0]})[0, 0] == 1.0


def test_constant_column_scales_by_one():
    f = fit({"x": "numeric"}, {"x": [5.0, 5.0]}, encoding="onehot")
    assert f.transform({"x": [6.0]})[0, 0] == 1.0


def test_cyclical_adds_sin_and_cos():
    f = fit({"hr": "numeric"}, {"hr": [0.0, 6.0, 12.0]}, columns={"hr": {"cyclical": 24}})
    assert f.feature_names == ["hr", "hr__sin", "hr__cos"]
    out = f.transform({"hr": [0, 6, 18]})
    np.testing.assert_allclose(out[:, 1], [0.0, 1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(out[:, 2], [1.0, 0.0, 0.0], atol=1e-12)
    huge = fit({"x": "numeric"}, {"x": [1.0]}, columns={"x": {"cyclical": 0.5}})
    assert np.isfinite(huge.transform({"x": [1.7e308, -1.7e308]})).all()


# --- boolean ---------------------------------------------------------------------------------


def test_to_bool_accepts_words_numbers_and_bools():
    got = to_bool(["yes", "No", True, 0, None, "TRUE", "maybe", 1.0, "f"])
    np.testing.assert_array_equal(got, [1, 0, 1, 0, NAN, 1, NAN, 1, 0])


def test_boolean_mode_imputation_and_indicator():
    f = fit({"b": "boolean"}, {"b": ["yes", "no", "yes", None]})
    assert f.feature_names == ["b", "b__missing"]
    np.testing.assert_array_equal(f.transform({"b": [None, False, "y"]}), [[1, 1], [0, 0], [1, 0]])
    g = fit({"b": "boolean"}, {"b": np.array([False, False, True])})
    assert g.feature_names == ["b"]
    assert g.transform({"b": ["nonsense"]}).tolist() == [[0.0]]


# --- categorical -----------------------------------------------------------------------------


def test_category_key_compares_as_strings():
    assert category_key(1) == category_key("1") == category_key(1.0) == category_key(np.int8(1))
    assert category_key(2.5) == "2.5"
    assert category_key(np.float32(0.1)) == category_key(0.1) == "0.1"
    assert category_key(True) == category_key(np.True_) == "True"
    for missing in (None, NAN, "", np.datetime64("NaT"), np.inf):
        assert category_key(missing) is None


def test_vocabulary_min_frequency_rare_and_missing_buckets():
    train = ["a"] * 5 + ["b"] * 3 + ["c"] + [None, "", NAN]
    f = fit({"c": "categorical"}, {"c": train}, min_frequency=2)
    assert f.transforms[0].vocabulary == ["a", "b"]
    assert f.categorical_indices == [0]
    out = f.transform({"c": ["a", "b", "c", "never-seen", None, "", NAN]})
    # 0 = missing, 1 = rare or unseen, then the vocabulary by frequency
    assert out[:, 0].tolist() == [2, 3, 1, 1, 0, 0, 0]


def test_vocabulary_max_categories_ties_broken_by_value():
    train = ["b", "b", "a", "a", "c", "c", "c", "d"]
    f = fit({"c": "categorical"}, {"c": train}, min_frequency=1, max_categories=2)
    assert f.transforms[0].vocabulary == ["c", "a"]
    assert f.transform({"c": ["b", "d"]})[:, 0].tolist() == [1, 1]


def test_numbers_and_their_strings_are_one_category():
    f = fit({"c": "categorical"}, {"c": [1, "1", 1.0, 2]}, min_frequency=1)
    assert f.transforms[0].vocabulary == ["1", "2"]
    offline = f.transform({"c": np.array([1.0, 2.0, NAN])})
    online = f.transform({"c": ["1", 2, None]})
    np.testing.assert_array_equal(offline, online)
    assert offline[:, 0].tolist() == [2, 3, 0]


def test_onehot_columns_and_values():
    f = fit({"c": "categorical"}, {"c": ["a", "a", "b"]}, encoding="onehot", min_frequency=1)
    assert f.feature_names == ["c=__missing__", "c=__rare__", "c=a", "c=b"]
    assert f.categorical_indices == []
    out = f.transform({"c": ["b", "zzz", None, "a"]})
    np.testing.assert_array_equal(out, [[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]])


def test_factorize_fast_paths_agree_with_lists():
    pd = pytest.importorskip("pandas")
    values = ["x", None, "y", "x", ""]
    for column in (pd.Categorical(values), np.array(values, dtype=object), values):
        got = factorize(column)
        keys = [got.keys[c] if c >= 0 else None for c in got.codes.tolist()]
        assert keys == ["x", None, "y", "x", None]
    ints = factorize(np.array([7, 3, 7, 100_000]))  # wide range: sorted path
    assert [ints.keys[c] for c in ints.codes] == ["7", "3", "7", "100000"]


def test_cross_joins_member_values():
    data = {"a": ["x", "x", "y", None], "b": [1, 1, 2, 2]}
    f = fit({"a": "categorical", "b": "numeric"}, data, min_frequency=1, crosses=[["a", "b"]])
    assert f.feature_names == ["a", "b", "a__x__b"]
    assert f.transforms[-1].vocabulary == ["x|1", "y|2"]
    assert f.categorical_indices == [0, 2]
    out = f.transform({"a": ["x", "y", "x", None], "b": [1.0, 2, 2, 1]})
    assert out[:, 2].tolist() == [2, 3, 1, 0]  # x|2 unseen → rare; missing member → missing


def test_three_way_cross_and_its_own_options():
    data = {"a": ["x", "x", "y"], "b": [True, True, False], "c": [1, 1, 1]}
    f = fit(
        {"a": "categorical", "b": "boolean", "c": "numeric"},
        data,
        crosses=[["a", "b", "c"]],
        columns={"a__x__b__x__c": {"min_frequency": 2}},
    )
    assert f.transforms[-1].vocabulary == ["x|True|1"]
    assert f.transform(data)[:, -1].tolist() == [2, 2, 1]


# --- datetime --------------------------------------------------------------------------------


def test_datetime_parts_of_known_dates():
    parts = ["year", "month", "day", "dayofweek", "dayofyear", "hour", "minute"]
    times = np.array(
        ["2011-01-01T00:00", "2011-12-31T23:59", "2012-03-01T13:45", "1969-12-31T23:30"],
        dtype="datetime64[ns]",
    )
    f = fit({"t": "datetime"}, {"t": times}, datetime_parts=parts)
    out = f.transform({"t": times})
    col = {name: out[:, i].tolist() for i, name in enumerate(f.feature_names)}
    assert col["t__year"] == [2011, 2011, 2012, 1969]
    assert col["t__month"] == [1, 12, 3, 12]
    assert col["t__day"] == [1, 31, 1, 31]
    assert col["t__dayofweek"] == [5, 5, 3, 2]  # Saturday, Saturday, Thursday, Wednesday
    assert col["t__dayofyear"] == [1, 365, 61, 365]
    assert col["t__hour"] == [0, 23, 13, 23]
    assert col["t__minute"] == [0, 59, 45, 30]
    assert col["t__month_sin"][0] == pytest.approx(0.5)
    assert col["t__hour_cos"][0] == pytest.approx(1.0)
    assert col["t__dayofweek_sin"][0] == pytest.approx(math.sin(2 * math.pi * 5 / 7))


def test_datetime_missing_gets_part_medians_and_indicator():
    train = ["2011-01-01T00:00", None, "2011-01-03T10:00", "2011-01-04T20:00"]
    f = fit({"t": "datetime"}, {"t": train}, datetime_parts=["day", "hour"])
    assert f.feature_names == ["t__day", "t__hour", "t__hour_sin", "t__hour_cos", "t__missing"]
    out = f.transform({"t": [None, "not a date", "2011-01-01T02:00:00+02:00"]})
    assert out[:2, [0, 1, 4]].tolist() == [[3, 10, 1], [3, 10, 1]]
    assert out[2, [0, 1, 4]].tolist() == [1, 0, 0]  # the offset is converted to UTC


def test_to_datetime_inputs():
    got = to_datetime(["2011-01-01", "", None, 5, "now", np.datetime64("2011-01-02")])
    assert np.isnat(got).tolist() == [False, True, True, True, True, False]
    assert np.isnat(to_datetime(np.array(["2011-01-01", "bad"]))).tolist() == [False, True]


def test_per_column_parts_override():
    f = fit({"t": "datetime"}, {"t": ["2011-01-01"]}, columns={"t": {"parts": ["year"]}})
    assert f.feature_names == ["t__year"]


# --- coercion --------------------------------------------------------------------------------


def test_to_float_handles_every_input_kind():
    np.testing.assert_array_equal(to_float(np.array([1, 2], dtype=np.int8)), [1.0, 2.0])
    np.testing.assert_array_equal(to_float(np.array(["1.5", "x", ""])), [1.5, NAN, NAN])
    np.testing.assert_array_equal(to_float([None, "2", np.inf]), [NAN, 2.0, NAN])


def test_two_dimensional_input_is_refused():
    f = fit({"x": "numeric"}, {"x": [1.0]})
    with pytest.raises(FeatureError, match="one-dimensional"):
        f.transform({"x": np.zeros((2, 2))})

"""Reference profiles and PSI drift distances."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlsd.data.profile import profile, psi, psi_categorical, psi_numeric
from mlsd.errors import DataError


def test_numeric_by_hand():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, np.nan]})
    col = profile(df, {"x": "numeric"}, bins=2)["columns"]["x"]
    assert col["type"] == "numeric"
    assert (col["count"], col["missing"], col["missing_rate"]) == (4, 1, 0.2)
    assert col["mean"] == 2.5 and col["min"] == 1.0 and col["max"] == 4.0
    assert col["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert col["quantiles"]["0.5"] == 2.5 and col["quantiles"]["0.25"] == 1.75
    # two bins: the median is the one cut point; (-inf, 2.5) and [2.5, +inf)
    assert col["histogram"] == {"edges": [2.5], "counts": [2, 2]}


def test_numeric_discrete_collapses_edges_and_keeps_new_values_countable():
    df = pd.DataFrame({"x": [0.0] * 70 + [1.0] * 30})
    col = profile(df, {"x": "numeric"})["columns"]["x"]
    hist = col["histogram"]
    assert hist["edges"] == sorted(set(hist["edges"]))  # duplicates collapsed
    assert sum(hist["counts"]) == 100 and len(hist["counts"]) == len(hist["edges"]) + 1
    assert hist["counts"][0] == 0 and hist["counts"][-1] == 30  # zeros sit on the first edge
    # values far outside the reference range land in the open outer bins
    assert psi_numeric(col, np.array([-5.0] * 50 + [7.0] * 50)) > 1


def test_numeric_edge_cases_are_json_safe():
    df = pd.DataFrame(
        {
            "empty": [np.nan] * 4,
            "const": [3.0] * 4,
            "inf": [1.0, np.inf, 2.0, np.nan],
            "ints": pd.array([1, None, 3, 4], dtype="Int64"),
            "strs": ["1", "x", "3", None],
        }
    )
    types = dict.fromkeys(df.columns, "numeric")
    cols = profile(df, types)["columns"]
    assert cols["empty"]["mean"] is None and cols["empty"]["histogram"]["counts"] == [0]
    assert cols["const"]["std"] == 0.0 and cols["const"]["histogram"] == {
        "edges": [3.0],
        "counts": [0, 4],
    }
    assert cols["inf"]["infinite"] == 1 and cols["inf"]["max"] == 2.0
    assert sum(cols["inf"]["histogram"]["counts"]) == 3  # +inf counted in the top bin
    assert cols["ints"]["count"] == 3 and cols["ints"]["mean"] == pytest.approx(8 / 3)
    assert cols["strs"]["count"] == 2
    json.loads(json.dumps(profile(df, types), allow_nan=False))


def test_boolean_datetime_text_identifier_by_hand():
    df = pd.DataFrame(
        {
            "b": [True, False, True, None],
            "w": ["yes", "no", "no", None],
            "d": pd.to_datetime(
                ["2024-01-02", None, "2023-12-31 10:00", "2024-01-01"], format="ISO8601"
            ),
            "t": ["ab", "abcd", None, "ab"],
            "id": pd.Series(["u1", "u22", "u333", "u4444"], dtype="category"),
        }
    )
    cols = profile(
        df, {"b": "boolean", "w": "boolean", "d": "datetime", "t": "text", "id": "identifier"}
    )["columns"]
    assert cols["b"] == {
        "type": "boolean",
        "count": 3,
        "missing": 1,
        "missing_rate": 0.25,
        "true_rate": pytest.approx(2 / 3),
    }
    assert cols["w"]["true_rate"] == pytest.approx(1 / 3)
    assert cols["d"]["min"] == "2023-12-31T10:00:00" and cols["d"]["max"] == "2024-01-02T00:00:00"
    assert cols["d"]["missing_rate"] == 0.25
    assert cols["t"]["n_unique"] == 2 and cols["t"]["mean_length"] == pytest.approx(8 / 3)
    assert "counts" not in cols["t"]  # free text keeps no values
    assert cols["id"]["n_unique"] == 4 and cols["id"]["mean_length"] == 3.5


def test_categorical_top_k_other_and_category_dtype():
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] + [None]
    for series in (pd.Series(values, dtype=object), pd.Series(values, dtype="category")):
        col = profile(pd.DataFrame({"c": series}), {"c": "categorical"}, top_k=2)["columns"]["c"]
        assert col["counts"] == {"a": 5, "b": 3, "__other__": 3}
        assert (col["n_unique"], col["missing"]) == (4, 1)
    # unused categories of a category dtype are not values
    cat = pd.Series(pd.Categorical(["x", "x"], categories=["x", "never"]))
    col = profile(pd.DataFrame({"c": cat}), {"c": "categorical"})["columns"]["c"]
    assert col["n_unique"] == 1 and col["counts"] == {"x": 2, "__other__": 0}
    # integral floats and ints count as the same category
    floats = profile(pd.DataFrame({"c": [1.0, 2.0, 1.0]}), {"c": "categorical"})["columns"]["c"]
    assert floats["counts"] == {"1": 2, "2": 1, "__other__": 0}
    assert psi_categorical(floats, [1, 2, 1] * 10) == pytest.approx(0.0)


def test_whole_profile_json_round_trip():
    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "cat": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "flag": rng.random(n) < 0.3,
            "when": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"),
            "note": [f"note number {i}" for i in range(n)],
        }
    )
    types = {
        "num": "numeric",
        "cat": "categorical",
        "flag": "boolean",
        "when": "datetime",
        "note": "text",
    }
    prof = profile(df, types)
    assert prof["n_rows"] == n and list(prof["columns"]) == list(types)
    text = json.dumps(prof, allow_nan=False, sort_keys=True)
    assert json.loads(text) == prof
    assert prof["columns"]["when"]["min"] == "2024-01-01T00:00:00+00:00"


def test_profile_errors():
    df = pd.DataFrame({"x": [1, 2]})
    with pytest.raises(DataError, match=r"'nope'.*not in the data"):
        profile(df, {"nope": "numeric"})
    with pytest.raises(DataError, match="unknown type — given 'float'"):
        profile(df, {"x": "float"})


def test_psi_basics():
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5)
    )
    assert np.isfinite(psi(np.array([1, 0]), np.array([0, 1])))  # empty bins: eps floor
    assert psi(np.array([1, 1]), np.array([0, 0])) == 0.0
    with pytest.raises(ValueError, match="same bins"):
        psi(np.array([1, 2]), np.array([1, 2, 3]))


def test_psi_numeric_same_vs_shifted():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=10_000)})
    col = profile(ref, {"x": "numeric"})["columns"]["x"]
    assert psi_numeric(col, ref["x"].to_numpy()) == pytest.approx(0.0, abs=1e-9)
    same = psi_numeric(col, rng.normal(size=10_000))
    shifted = psi_numeric(col, rng.normal(loc=0.5, size=10_000))
    assert same < 0.01
    assert shifted > 0.1
    # missing values are left out of the comparison
    with_nan = np.concatenate([ref["x"].to_numpy(), [np.nan] * 100])
    assert psi_numeric(col, with_nan) == pytest.approx(0.0, abs=1e-9)


def test_psi_categorical_new_categories_and_missing():
    rng = np.random.default_rng(2)
    ref = pd.Series(rng.choice(["a", "b", "c"], size=5000, p=[0.6, 0.3, 0.1]))
    col = profile(pd.DataFrame({"c": ref}), {"c": "categorical"})["columns"]["c"]
    assert psi_categorical(col, ref) == pytest.approx(0.0, abs=1e-9)
    same = psi_categorical(col, rng.choice(["a", "b", "c"], size=5000, p=[0.6, 0.3, 0.1]))
    assert same < 0.01
    new = ref.copy()
    new[:1000] = "brand-new"  # 20% of rows now hold a category never seen in training
    assert psi_categorical(col, new) > same + 0.1
    holes = ref.copy().astype(object)
    holes[:1000] = None
    assert psi_categorical(col, holes) > same + 0.1
    assert psi_categorical(col, pd.Series(new, dtype="category")) == pytest.approx(
        psi_categorical(col, new)
    )

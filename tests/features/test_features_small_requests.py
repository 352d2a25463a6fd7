"""Small online requests take a grouped numeric path; it must equal the column path."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.features import Featurizer


@pytest.mark.parametrize("encoding", ["codes", "onehot"])
@pytest.mark.parametrize("rows", [1, 5, 64, 65])
def test_grouped_path_is_bit_identical_to_the_column_path(encoding, rows):
    rng = np.random.default_rng(rows)
    n = 500
    train = {f"x{i}": rng.normal(size=n) * 10**i for i in range(6)}
    train["x0"][::9] = np.nan  # a missing indicator for x0
    train["hr"] = rng.integers(0, 24, n).astype(float)
    train["c"] = rng.choice(["a", "b", "c"], n).astype(object)
    columns = {**{f"x{i}": "numeric" for i in range(6)}, "hr": "numeric", "c": "categorical"}
    from mlsd.spec import FeaturesSpec

    options = FeaturesSpec.model_validate({"columns": {"hr": {"cyclical": 24}}})
    fitted = Featurizer(columns, options, encoding=encoding).fit(train)
    request = {
        name: [
            None
            if (name == "x0" and j % 3 == 0)
            else (
                "oops"
                if (name == "x1" and j == 1)
                else float(rng.normal())
                if name != "c"
                else str(rng.choice(["a", "b", "z"]))
            )
            for j in range(rows)
        ]
        for name in columns
    }
    as_arrays = {
        name: (
            np.array([np.nan if v is None or v == "oops" else v for v in vals])
            if name != "c"
            else np.array(vals, dtype=object)
        )
        for name, vals in request.items()
    }
    online, offline = fitted.transform(request), fitted.transform(as_arrays)
    assert online.shape == (rows, len(fitted.feature_names))
    assert np.array_equal(online, offline, equal_nan=True)
    assert not np.isnan(online).any()


@pytest.mark.parametrize("rows", [1, 3, 64])
def test_grouped_path_reads_odd_values_as_the_column_path_does(rows):
    """Booleans join the group; text, ±inf, huge ints and bools in numeric columns take
    the exact per-value fallback and still match the column path bit for bit."""
    from mlsd.spec import FeaturesSpec

    rng = np.random.default_rng(rows)
    n = 300
    train = {
        "x": rng.normal(size=n),
        "y": rng.normal(size=n) * 1e3,
        "flag": rng.choice([True, False], n).astype(object),
    }
    train["flag"][::7] = None  # missing -> a missing indicator
    columns = {"x": "numeric", "y": "numeric", "flag": "boolean"}
    fitted = Featurizer(columns, FeaturesSpec(), encoding="codes").fit(train)
    odd_x = [1.5, None, float("inf"), "2.5", True, 10**400, -3]
    odd_flag = [True, False, None, "yes", "no", 1, 0.0, 7, "maybe"]
    plain = {
        "x": [float(v) for v in rng.normal(size=rows)],
        "y": [int(v) for v in rng.integers(-5, 5, rows)],
        "flag": [bool(v) for v in rng.integers(0, 2, rows)],
    }
    odd = {
        "x": [odd_x[j % len(odd_x)] for j in range(rows)],
        "y": plain["y"],
        "flag": [odd_flag[j % len(odd_flag)] for j in range(rows)],
    }
    for request in (plain, odd):
        as_objects = {k: np.array(v, dtype=object) for k, v in request.items()}
        online, offline = fitted.transform(request), fitted.transform(as_objects)
        assert np.array_equal(online, offline, equal_nan=True), request


@pytest.mark.parametrize("standardize", [False, True])
def test_one_row_path_of_an_all_numeric_featurizer_is_bit_identical(standardize):
    """A featurizer of plain numbers only scores a one-row request without the block; any
    value it cannot prove finite (None, NaN, inf, text, bools, huge ints) goes the block way.
    Either way the features equal the column path's bit for bit."""
    from mlsd.spec import FeaturesSpec

    rng = np.random.default_rng(7)
    n = 400
    train = {f"x{i}": rng.normal(size=n) * 10**i for i in range(5)}
    train["x2"][::5] = np.nan  # a missing indicator between the value rows
    columns = {name: "numeric" for name in train}
    options = FeaturesSpec.model_validate(
        {"columns": {name: {"standardize": standardize} for name in train}}
    )
    fitted = Featurizer(columns, options, encoding="codes").fit(train)
    assert fitted._one_row
    odd = [None, float("nan"), float("inf"), "2.5", True, 10**400, -3, 7]
    for trial in range(40):
        row = {name: [float(rng.normal() * 10**i)] for i, name in enumerate(train)}
        if trial % 2:
            row[f"x{trial % 5}"] = [odd[trial % len(odd)]]
        as_objects = {k: np.array(v, dtype=object) for k, v in row.items()}
        online, offline = fitted.transform(row), fitted.transform(as_objects)
        assert online.shape == (1, len(fitted.feature_names))
        assert np.array_equal(online, offline, equal_nan=True), row

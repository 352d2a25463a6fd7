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

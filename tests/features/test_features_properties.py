"""Property: fit on one random frame, save, load, transform another — same output, no NaN,
and every row transformed alone (as an online request) equals its row in the batch."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.features import Featurizer, load, save
from mlsd.spec import FeaturesSpec

TYPES = {"num": "numeric", "cat": "categorical", "flag": "boolean"}
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())
categories = st.one_of(st.none(), st.sampled_from(["a", "b", "", "c"]), st.text(max_size=3))
flags = st.one_of(st.booleans(), st.none())


@st.composite
def frames(draw: st.DrawFn) -> dict[str, list]:
    """Columns of equal length as Python lists (None marks missing values)."""
    rows = draw(st.integers(min_value=1, max_value=20))
    return {
        "num": draw(st.lists(numbers, min_size=rows, max_size=rows)),
        "cat": draw(st.lists(categories, min_size=rows, max_size=rows)),
        "flag": draw(st.lists(flags, min_size=rows, max_size=rows)),
    }


def offline(frame: dict[str, list], categorical: bool) -> dict:
    """The same frame as the offline code would pass it: numpy arrays or a pandas Categorical."""
    num = np.array([math.nan if v is None else v for v in frame["num"]], dtype=np.float64)
    cat = pd.Categorical(frame["cat"]) if categorical else np.array(frame["cat"], dtype=object)
    return {"num": num, "cat": cat, "flag": np.array(frame["flag"], dtype=object)}


@settings(max_examples=100, deadline=None)
@given(
    train=frames(),
    test=frames(),
    encoding=st.sampled_from(["codes", "onehot"]),
    min_frequency=st.integers(min_value=1, max_value=3),
    categorical=st.booleans(),
)
def test_saved_featurizer_transforms_identically(train, test, encoding, min_frequency, categorical):
    options = FeaturesSpec(
        min_frequency=min_frequency,
        columns={"num": {"cyclical": 7}},
        crosses=[["cat", "num"], ["cat", "flag", "num"]],
    )
    fitted = Featurizer(TYPES, options, encoding=encoding).fit(offline(train, categorical))
    with tempfile.TemporaryDirectory() as folder:
        path = save(fitted, Path(folder) / "featurizer.json")
        loaded = load(path)
        assert save(loaded, Path(folder) / "again.json").read_bytes() == path.read_bytes()
    batch = offline(test, categorical)
    expected = fitted.transform(batch)
    assert np.array_equal(loaded.transform(batch), expected, equal_nan=True)
    assert not np.isnan(expected).any()
    for row in range(len(test["num"])):
        request = {name: [values[row]] for name, values in test.items()}
        assert np.array_equal(loaded.transform(request)[0], expected[row], equal_nan=True)

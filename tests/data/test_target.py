"""Labels as models see them, and how the positive class is chosen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.data.target import encode_target, positive_class
from mlsd.errors import DataError
from mlsd.spec import parse_spec


def spec(task: str, extra: str = ""):
    return parse_spec(
        f"name: t\nproblem: {{task: {task}, target: y{extra}}}\ndata: {{source: d}}\n"
    )


def test_regression_keeps_values_and_missing():
    y, classes = encode_target(pd.DataFrame({"y": [1.5, None, 3.0]}), spec("regression"))
    assert classes == [] and np.isnan(y[1]) and y[2] == 3.0


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["No", "Yes", "No"], "Yes"),
        ([0, 1, 0], 1),
        ([True, False, False], True),
        (["cat", "dog", "cat", "cat"], "dog"),  # no positive word: the rarer class
    ],
)
def test_binary_positive_is_last(values, positive):
    y, classes = encode_target(pd.DataFrame({"y": values}), spec("binary"))
    assert classes[-1] == positive
    assert y.tolist() == [1.0 if v == positive else 0.0 for v in values]


def test_declared_positive_class_wins_and_must_exist():
    s = spec("binary", ", positive_class: cat")
    y, classes = encode_target(pd.DataFrame({"y": ["cat", "dog", "dog"]}), s)
    assert classes == ["dog", "cat"] and y.tolist() == [1.0, 0.0, 0.0]
    assert positive_class(spec("binary", ", positive_class: 1"), [0.0, 1.0]) == 1.0
    with pytest.raises(DataError, match="not a value"):
        positive_class(spec("binary", ", positive_class: bird"), ["cat", "dog"])


def test_multiclass_indices_follow_sorted_classes():
    frame = pd.DataFrame({"y": pd.Categorical(["b", "a", None, "c", "a"])})
    y, classes = encode_target(frame, spec("multiclass"))
    assert classes == ["a", "b", "c"]
    assert y[[0, 1, 3, 4]].tolist() == [1.0, 0.0, 2.0, 0.0] and np.isnan(y[2])

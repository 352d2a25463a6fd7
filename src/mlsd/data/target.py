"""The label column as models see it: numbers for regression, class indices otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.spec import SystemSpec
from mlsd.tasks import get_task
from mlsd.values import category_key

_POSITIVE_WORDS = ("1", "1.0", "true", "yes", "y", "positive", "pos")


def class_value(value: Any) -> Any:
    """A label as a class: a Python scalar, a whole-number float as an int (a CSV column of
    0/1/2 is read as floats once it has a missing value, or once the schema types it as
    numbers), so the class is answered, named and logged as ``0``, never ``0.0``. Strings
    and booleans stay as they are; other floats stay floats."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def classes_of(values: pd.Series) -> list[Any]:
    """Distinct non-missing labels (see :func:`class_value`), sorted by their text for a
    stable order."""
    found: dict[str, Any] = {}  # by text, as labels are matched (True and 1 stay apart)
    for value in values.dropna().unique():
        found.setdefault(str(class_value(value)), class_value(value))
    return sorted(found.values(), key=str)


def positive_class(spec: SystemSpec, classes: list[Any]) -> Any:
    """The binary task's positive label: the spec's, else 1/true/yes, else the rarer class."""
    declared = spec.problem.positive_class
    if declared is not None:
        for value in classes:
            if _same_class(value, declared):
                return value
        raise DataError(
            f"problem.positive_class {declared!r} is not a value of "
            f"'{spec.problem.target}' (values: {', '.join(map(str, classes[:10]))})",
            hint="set problem.positive_class to one of those values",
        )
    for word in _POSITIVE_WORDS:
        for value in classes:
            if str(value).strip().lower() == word:
                return value
    return None


def encode_target(frame: pd.DataFrame, spec: SystemSpec) -> tuple[np.ndarray, list[Any]]:
    """Label vector and class list. Regression: floats and []. Binary: 0/1 with the
    positive class last in ``classes``. Multiclass: indices into ``classes``. Missing → NaN.
    """
    series = frame[spec.problem.target]
    task = get_task(spec.problem.task)
    if not task.classification:
        return series.to_numpy(dtype=float, na_value=np.nan), []
    classes = classes_of(series)
    if task.thresholded and len(classes) == 2:
        positive = positive_class(spec, classes)
        if positive is None:  # the rarer class is the one worth finding
            counts = series.value_counts()
            positive = min(classes, key=lambda c: (counts.get(c, 0), str(c)))
        classes = [c for c in classes if c != positive] + [positive]
    index = {str(c): float(i) for i, c in enumerate(classes)}
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([index[str(class_value(u))] for u in uniques] + [np.nan], dtype=float)
    return lookup[codes], classes  # code -1 (missing) reads the NaN at the end


def _same_class(value: Any, declared: Any) -> bool:
    """Whether a spec's ``positive_class`` names the class ``value``: 1, 1.0 and "1" alike."""
    if str(value) == str(declared) or category_key(value) == category_key(declared):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(str(declared)) == value
        except ValueError:
            return False
    return False

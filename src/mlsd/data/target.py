"""The label column as models see it: numbers for regression, class indices otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.spec import SystemSpec
from mlsd.tasks import get_task

_POSITIVE_WORDS = ("1", "1.0", "true", "yes", "y", "positive", "pos")


def classes_of(values: pd.Series) -> list[Any]:
    """Distinct non-missing labels, sorted by their text for a stable order."""
    uniques = values.dropna().unique()
    return sorted((v.item() if isinstance(v, np.generic) else v for v in uniques), key=str)


def positive_class(spec: SystemSpec, classes: list[Any]) -> Any:
    """The binary task's positive label: the spec's, else 1/true/yes, else the rarer class."""
    declared = spec.problem.positive_class
    if declared is not None:
        for value in classes:
            if str(value) == str(declared) or (
                isinstance(value, float) and str(declared) == str(int(value))
            ):
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
    y = series.astype(str).map(index).astype(float).where(series.notna())
    return y.to_numpy(dtype=float, na_value=np.nan), classes

"""Regression: predict a number."""

from __future__ import annotations

from mlsd.tasks.base import NUMBER, OutputField, Task


class Regression(Task):
    """A numeric target; the model answers one value per row."""

    name = "regression"
    description = "predict a number"
    prediction = "value"
    metrics = ("rmse", "mae", "r2", "adjusted_r2", "mape", "medae")
    default_metric = "rmse"
    leakage_metric = "r2"
    outputs = (OutputField("value", NUMBER),)

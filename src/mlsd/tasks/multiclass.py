"""Multiclass classification: a probability per class, the label the most probable one."""

from __future__ import annotations

import numpy as np

from mlsd.tasks.base import LABEL, PER_CLASS, ClassificationTask, OutputField, softmax

_AVERAGED = tuple(
    f"{kind}_{average}"
    for kind in ("precision", "recall", "f1")
    for average in ("macro", "micro", "weighted")
)


class Multiclass(ClassificationTask):
    """Three or more classes; the model answers the most probable ``label`` and the
    ``probabilities`` of every class."""

    name = "multiclass"
    description = "predict which of several classes"
    prediction = "probabilities"
    metrics = ("accuracy", "balanced_accuracy", "log_loss", "brier", *_AVERAGED, "roc_auc_ovr")
    default_metric = "log_loss"
    leakage_metric = "accuracy"
    outputs = (OutputField("label", LABEL), OutputField("probabilities", PER_CLASS))

    def n_scores(self, n_classes: int) -> int:
        return n_classes

    def from_margin(self, z: np.ndarray) -> np.ndarray:
        return softmax(z)

    def decide(self, pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return pred.argmax(axis=1)

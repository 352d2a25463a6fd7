"""Binary classification: a score per row, and a label at a decision threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsd.tasks.base import LABEL, NUMBER, ClassificationTask, OutputField, sigmoid


class Binary(ClassificationTask):
    """Two classes, the positive one last; the model answers P(positive) as ``score`` and the
    label the threshold gives."""

    name = "binary"
    description = "predict which of two classes"
    thresholded = True
    prediction = "score"
    metrics = (
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "specificity",
        "fpr",
        "fnr",
        "f1",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
    )
    default_metric = "roc_auc"
    leakage_metric = "roc_auc"
    outputs = (OutputField("score", NUMBER), OutputField("label", LABEL))

    def n_labels(self, n_classes: int) -> int:
        return 2

    def from_margin(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z[:, 0])

    def decide(self, pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return (pred >= threshold).astype(np.int8)

    def _class_ids(self, classes: Sequence[Any]) -> dict[str | None, int]:
        ids = super()._class_ids(classes)
        if len(ids) == 2:  # 1/0, true/false and yes/no all name the two classes
            for word, cls in (("true", 1), ("false", 0), ("yes", 1), ("no", 0)):
                ids.setdefault(word, cls)
        return ids

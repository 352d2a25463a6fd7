"""What a task kind is: the facts that differ between binary, multiclass, regression and
ranking, declared once per kind so the rest of mlsd asks the task instead of comparing names.

A task is stateless (one instance per kind, see :data:`mlsd.tasks.TASKS`); what belongs to one
trained model (its classes, its threshold) is passed in. numpy only: the server imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlsd.values import category_key

# The kinds of output field a prediction answers with.
NUMBER = "number"  # one float per row
LABEL = "label"  # one class per row (the model's classes, chosen by the task's decision)
PER_CLASS = "per_class"  # one float per class per row, named by the class


@dataclass(frozen=True)
class OutputField:
    """One field of a served prediction: its name in the JSON answer, the batch columns and
    the V2 output tensors, and its kind (:data:`NUMBER`, :data:`LABEL` or :data:`PER_CLASS`)."""

    name: str
    kind: str


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |z|."""
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    ez = np.exp(z[~positive])
    out[~positive] = ez / (1.0 + ez)
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so exp never overflows."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class Task:
    """One kind of learning problem. Subclasses set the class attributes and override the
    methods whose behaviour differs; code elsewhere reads them, never the task's name."""

    name: ClassVar[str]
    description: ClassVar[str]
    # the target is one of a set of classes (class weights, calibration, stratified splits)
    classification: ClassVar[bool] = False
    # a single score turned into a label by a decision threshold: the threshold rule and its
    # cost curve, a positive class, ROC/PR curves, confidence-based performance estimation
    thresholded: ClassVar[bool] = False
    # rows are scored and judged within groups (problem.group): ranking metrics, group
    # splits, one list per request
    grouped: ClassVar[bool] = False
    # what a model predicts: "value" (a number per row), "score" (P(positive) per row),
    # "probabilities" (a row of class probabilities) or "relevance" (a score to sort by)
    prediction: ClassVar[str]
    # metric names reported by default, in order; cutoff families take @k (ndcg@3)
    metrics: ClassVar[tuple[str, ...]]
    cutoff_metrics: ClassVar[tuple[str, ...]] = ()
    default_metric: ClassVar[str]
    # what one feature alone is scored with when looking for leakage
    leakage_metric: ClassVar[str]
    # the fields of a served prediction, in answer order; the first is the one watched for
    # drift (a number is compared as numeric, a label as categorical)
    outputs: ClassVar[tuple[OutputField, ...]]

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    @property
    def default_split(self) -> str:
        """How rows are split when the spec names no split and no time column."""
        if self.grouped:
            return "group"
        return "stratified" if self.classification else "random"

    @property
    def watched_output(self) -> OutputField:
        """The output whose distribution monitoring compares with the reference."""
        return self.outputs[0]

    @property
    def per_class(self) -> bool:
        """A prediction is a row of class probabilities (a matrix), not one number per row."""
        return any(f.kind == PER_CLASS for f in self.outputs)

    def n_labels(self, n_classes: int) -> int:
        """How many classes a label takes (0 when the target is not a class)."""
        return n_classes if self.classification else 0

    def n_scores(self, n_classes: int) -> int:
        """Columns of a prediction: 1 (a vector) or one per class (a matrix)."""
        return 1

    def from_margin(self, z: np.ndarray) -> np.ndarray:
        """A prediction in this task's shape from raw margins ``z`` of shape (n, n_scores)."""
        return z[:, 0]

    def decide(self, pred: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
        """The class index each row is given (None when the task has no classes)."""
        return None

    def output_values(self, pred: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
        """The arrays behind :attr:`outputs`, in order: floats for numbers and per-class
        fields, class indices for labels."""
        labels = self.decide(pred, threshold)
        return [labels if f.kind == LABEL else pred for f in self.outputs]

    def truth(self, labels: Sequence[Any], classes: Sequence[Any] | None) -> np.ndarray:
        """Observed labels (feedback, a table column) as the metrics want them: floats, or
        class ids 0..k-1 in the order of ``classes``. Missing or unknown labels are NaN."""
        out = np.full(len(labels), np.nan)
        for i, v in enumerate(labels):
            with contextlib.suppress(TypeError, ValueError):
                out[i] = float(v)
        return out


class ClassificationTask(Task):
    """The target is one of a set of classes."""

    classification = True

    def truth(self, labels: Sequence[Any], classes: Sequence[Any] | None) -> np.ndarray:
        ids = self._class_ids(classes or [])
        out = np.full(len(labels), np.nan)
        for i, v in enumerate(labels):
            key = category_key(v)
            if key is not None:
                got = ids.get(key, ids.get(key.lower()))
                if got is not None:
                    out[i] = got
        return out

    def _class_ids(self, classes: Sequence[Any]) -> dict[str | None, int]:
        return {category_key(c): i for i, c in enumerate(classes)}

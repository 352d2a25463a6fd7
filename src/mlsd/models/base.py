"""What every candidate model offers: fit on a feature matrix, predict, save and load as
plain files (JSON, LightGBM text), never pickle.

Predictions have one shape per task: regression and binary give a vector (for binary, the
probability of the positive class, which is class index 1), multiclass gives an
``(n, n_classes)`` matrix of class probabilities whose rows sum to 1.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlsd.errors import MlsdError
from mlsd.tasks import Task, get_task
from mlsd.workspace import atomic_write_bytes

MODEL_FILE = "model.json"  # every saved model has it: family, task and parameters


class ModelError(MlsdError):
    """A model cannot be fitted, saved or loaded as asked."""

    headline = "model error"


@dataclass(frozen=True)
class TaskInfo:
    """The learning task as models see it."""

    kind: str  # a name in mlsd.tasks.TASKS
    n_classes: int = 0  # 2 for binary, k for multiclass, 0 for regression

    @property
    def definition(self) -> Task:
        """The task kind's class: what differs by kind (outputs, metrics, decisions)."""
        return get_task(self.kind)

    @property
    def is_classification(self) -> bool:
        """True when the target is one of a set of classes."""
        return self.definition.classification

    @property
    def n_scores(self) -> int:
        """Columns of a prediction: 1 (a vector) or one per class (a matrix)."""
        return self.definition.n_scores(self.n_classes)

    def to_json(self) -> dict:
        """Plain JSON form."""
        return {"kind": self.kind, "n_classes": self.n_classes}


@dataclass
class FitData:
    """Everything a candidate may use to fit: train and valid matrices, labels, weights."""

    X: np.ndarray
    y: np.ndarray
    X_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    categorical: list[int] = field(default_factory=list)  # integer-code columns (trees)
    # grouped tasks (ranking): the group of each row, the rows of a group contiguous
    groups: np.ndarray | None = None
    groups_valid: np.ndarray | None = None
    # cross-validation: (fit rows, held-out rows) of X per fold; X_valid is then unused
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None

    def fold(self, fit: np.ndarray, held_out: np.ndarray) -> FitData:
        """The data of one fold: its rows of X to fit on, its held-out rows as validation."""
        weight = None if self.sample_weight is None else self.sample_weight[fit]
        return FitData(
            X=self.X[fit],
            y=self.y[fit],
            X_valid=self.X[held_out],
            y_valid=self.y[held_out],
            sample_weight=weight,
            feature_names=self.feature_names,
            categorical=self.categorical,
        )

    def without_validation(self) -> FitData:
        """Every row to fit on and none to stop on: for a refit with settings chosen."""
        return replace(self, X_valid=None, y_valid=None, groups_valid=None, folds=None)


class Model(ABC):
    """A fitted-or-not candidate. Subclasses set ``family`` and implement the four verbs."""

    family: ClassVar[str]
    encoding: ClassVar[str] = "codes"  # which featurizer encoding it wants: codes | onehot

    def __init__(self, task: TaskInfo, params: dict[str, Any] | None = None, seed: int = 0):
        self.task = task
        self.params = dict(params or {})
        self.seed = seed

    @abstractmethod
    def fit(self, data: FitData) -> Model:
        """Learn from ``data``; returns self."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in the task's shape (see the module docstring)."""

    @abstractmethod
    def save(self, folder: Path) -> list[str]:
        """Write the fitted model into ``folder`` (``model.json`` plus any native file);
        returns the file names written."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Model:
        """Read a model written by :meth:`save`."""

    def describe(self) -> dict[str, Any]:
        """Family, parameters and anything the leaderboard should show (e.g. iterations)."""
        return {"family": self.family, "params": self.params}

    def refit_params(self) -> dict[str, Any]:
        """The parameters to fit this model again on more rows without a split to stop on
        (boosted trees add the number of rounds early stopping chose)."""
        return dict(self.params)

    def _write_header(self, folder: Path, **extra: Any) -> None:
        header = {
            "family": self.family,
            "task": self.task.to_json(),
            "params": self.params,
            "seed": self.seed,
            **extra,
        }
        # numpy scalars (tuned parameters) are written as the plain numbers they hold
        text = json.dumps(
            header, indent=1, sort_keys=True, allow_nan=False, default=lambda value: value.item()
        )
        atomic_write_bytes(folder / MODEL_FILE, (text + "\n").encode())


def check_labels(y: Any, task: TaskInfo) -> np.ndarray:
    """Labels as float64, refused when missing, or (classification) not class indices."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) == 0:
        raise ModelError("no training rows", hint="check the training split")
    if not np.isfinite(y).all():
        raise ModelError("the labels hold missing values", hint="drop rows without a label")
    if task.definition.grouped and (y < 0).any():
        raise ModelError(
            f"relevance grades must be >= 0, got {y.min():g}",
            hint="shift or re-grade the target so that 0 means not relevant",
        )
    if task.is_classification:
        k = task.definition.n_labels(task.n_classes)
        if k < 2 or not np.isin(y, np.arange(k)).all():
            raise ModelError(
                f"{task.kind} labels must be 0..{max(k, 2) - 1}, got {np.unique(y)[:10].tolist()}",
                hint="encode the target with mlsd's target encoder",
            )
    return y


def group_sizes(groups: Any) -> np.ndarray:
    """The row counts of consecutive groups (what LightGBM's ranking objectives take);
    refused when a group's rows are not contiguous."""
    groups = np.asarray(groups)
    if not len(groups):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    if len(np.unique(groups)) != len(starts):
        raise ModelError(
            "the rows of a group are not contiguous", hint="sort the rows by their group first"
        )
    return np.diff(np.r_[starts, len(groups)])


def read_header(folder: Path, family: str | None = None) -> dict[str, Any]:
    """The ``model.json`` of a saved model; with ``family``, refused if it is another's."""
    path = Path(folder) / MODEL_FILE
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path} does not exist", hint="point at a saved model folder") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}", hint="re-train the model") from exc
    if family is not None and header.get("family") != family:
        raise ModelError(
            f"{folder} holds a {header.get('family')!r} model, not a {family} one",
            hint="load it with mlsd.models.families.load_model",
        )
    return header

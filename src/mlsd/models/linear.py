"""The linear candidate: ridge regression, or L2 logistic regression for classes.

scikit-learn fits it; the fitted state is only an intercept vector and a coefficient matrix,
saved as ``coefficients.json``. Predicting is numpy alone (``X @ W + b``, then the task's
``from_margin``: identity, sigmoid or softmax), the same code before and after saving, so a
loaded model gives bit-identical predictions and the serving path never imports scikit-learn.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.model_params import LINEAR
from mlsd.models.base import FitData, Model, ModelError, TaskInfo, check_labels, read_header

COEF_FILE = "coefficients.json"
SMALL_CELLS = 5_000_000  # below this many matrix cells BLAS runs on one thread
FORMAT = "mlsd.linear"
VERSION = 1
MAX_ITER = 5000  # lbfgs on standardized one-hot inputs converges well before this
TOL = 1e-6


class LinearModel(Model):
    """Ridge (``alpha``) for regression; logistic regression (``C``, ``class_weight``) for
    binary and multiclass tasks. Wants standardized one-hot features."""

    family = LINEAR.name
    encoding = "onehot"

    def __init__(self, task: TaskInfo, params: dict[str, Any] | None = None, seed: int = 0):
        super().__init__(task, params, seed)
        self.resolved = LINEAR.validate(self.params, task.kind, error=ModelError)
        self.coef_: np.ndarray | None = None  # (n_features, n_outputs)
        self.intercept_: np.ndarray | None = None  # (n_outputs,)
        self.n_iter_: int | None = None
        self.feature_names: list[str] = []

    # --- fitting -------------------------------------------------------------------------

    def _estimator(self) -> Any:
        """The scikit-learn estimator these parameters describe (imported only to fit)."""
        if not self.task.is_classification:
            from sklearn.linear_model import Ridge

            return Ridge(alpha=self.resolved["alpha"])
        from sklearn.linear_model import LogisticRegression

        # l1_ratio=0 is the L2 penalty; multinomial is lbfgs's default for several classes.
        return LogisticRegression(
            C=self.resolved["C"],
            l1_ratio=0.0,
            solver="lbfgs",
            max_iter=MAX_ITER,
            tol=TOL,
            class_weight=self.resolved["class_weight"],
            random_state=self.seed,
        )

    def fit(self, data: FitData) -> LinearModel:
        """Fit with scikit-learn, then keep only the coefficients (as plain float64)."""
        X = _matrix(data.X)
        y = np.asarray(data.y, dtype=np.float64)
        if self.task.is_classification:
            _check_labels(y, self.task)
        estimator = self._estimator()
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        # Small tables: one BLAS thread. Several threads contend for 2 cores with LightGBM's
        # OpenMP pool and made a 4k x 134 logistic fit ~10x slower than single-threaded.
        threads = 1 if X.size < SMALL_CELLS else None
        with warnings.catch_warnings(), threadpool_limits(limits=threads, user_api="blas"):
            # a model short of convergence still predicts; describe() reports n_iter
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X, y, sample_weight=data.sample_weight)
        coef, intercept = _full_coefficients(estimator, self.task, X.shape[1])
        # Go through the JSON form so in-memory and loaded models hold the very same numbers.
        state = _state(coef, intercept, self.task, list(data.feature_names))
        self._set_state(state)
        n_iter = getattr(estimator, "n_iter_", None)
        self.n_iter_ = int(np.max(n_iter)) if n_iter is not None else None
        return self

    def _set_state(self, state: dict[str, Any]) -> None:
        self.coef_ = np.asarray(state["coef"], dtype=np.float64).reshape(
            state["n_features"], state["n_outputs"]
        )
        self.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        self.feature_names = list(state.get("feature_names") or [])

    # --- predicting ----------------------------------------------------------------------

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw scores ``X @ W + b``: shape (n, 1) or (n, n_classes)."""
        if self.coef_ is None or self.intercept_ is None:
            raise ModelError("the linear model is not fitted", hint="call fit() or load()")
        X = _matrix(X)
        if X.shape[1] != self.coef_.shape[0]:
            raise ModelError(
                f"the linear model expects {self.coef_.shape[0]} features, got {X.shape[1]}",
                hint="transform the inputs with the featurizer saved beside this model",
            )
        # einsum without BLAS sums each row in a fixed order, so a row's score does not depend
        # on how many rows share the call (BLAS blocks differently): batch equals online
        return np.einsum("ij,jk->ik", X, self.coef_, optimize=False) + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regression values, P(positive) for binary, class probabilities for multiclass."""
        return self.task.definition.from_margin(self.decision_function(X))

    # --- files ---------------------------------------------------------------------------

    def save(self, folder: Path) -> list[str]:
        """Write ``coefficients.json`` and ``model.json``."""
        if self.coef_ is None or self.intercept_ is None:
            raise ModelError("cannot save an unfitted linear model", hint="call fit() first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = _state(self.coef_, self.intercept_, self.task, self.feature_names)
        text = json.dumps(state, indent=None, allow_nan=False)
        (folder / COEF_FILE).write_text(text + "\n", encoding="utf-8")
        self._write_header(folder, n_iter=self.n_iter_, resolved=self.resolved)
        return [COEF_FILE, "model.json"]

    @classmethod
    def load(cls, folder: Path) -> LinearModel:
        """Read a model written by :meth:`save` (numpy only)."""
        folder = Path(folder)
        header = read_header(folder, cls.family)
        task = TaskInfo(**header["task"])
        model = cls(task, header.get("params"), int(header.get("seed", 0)))
        path = folder / COEF_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            model._set_state(state)
        except FileNotFoundError as exc:
            raise ModelError(f"{path} does not exist", hint="re-save the model") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path} is damaged: {exc}", hint="re-train the model") from exc
        model.n_iter_ = header.get("n_iter")
        return model

    def describe(self) -> dict[str, Any]:
        """Family, resolved parameters, feature count and solver iterations."""
        n_features = None if self.coef_ is None else int(self.coef_.shape[0])
        return {
            "family": self.family,
            "params": dict(self.resolved),
            "n_features": n_features,
            "n_iter": self.n_iter_,
        }


# --- helpers -------------------------------------------------------------------------------


def _matrix(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ModelError(f"features must be a 2-d matrix, got shape {X.shape}", hint="reshape")
    if not np.isfinite(X).all():
        raise ModelError(
            "the linear model got missing or infinite feature values",
            hint="use the featurizer's onehot encoding, which imputes and standardizes",
        )
    return X


def _check_labels(y: np.ndarray, task: TaskInfo) -> None:
    classes = np.unique(check_labels(y, task))
    if len(classes) < 2:
        raise ModelError(
            f"the training labels hold a single class ({classes.tolist()})",
            hint="a classifier needs at least two classes in the training split",
        )


def _full_coefficients(estimator: Any, task: TaskInfo, n_features: int):
    """(W, b) with W of shape (n_features, n_outputs). For multiclass, a class absent from
    training gets zero weights and an intercept far below the others (probability ≈ 0)."""
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    if task.n_scores == 1:
        return coef.reshape(1, n_features).T.copy(), intercept.reshape(1)
    classes = np.asarray(estimator.classes_).astype(int)
    full_coef = np.zeros((task.n_classes, n_features))
    full_intercept = np.full(task.n_classes, intercept.min() - 20.0)
    if len(classes) == 2:  # sklearn keeps one row for two classes: split it symmetrically
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        full_intercept[:] = intercept.min() - 20.0
    full_coef[classes] = coef
    full_intercept[classes] = intercept
    return full_coef.T.copy(), full_intercept


def _state(coef: np.ndarray, intercept: np.ndarray, task: TaskInfo, names: list[str]) -> dict:
    """Plain-JSON fitted state; JSON floats round-trip float64 exactly."""
    n_features, n_outputs = coef.shape
    return {
        "format": FORMAT,
        "version": VERSION,
        "task": task.to_json(),
        "n_features": int(n_features),
        "n_outputs": int(n_outputs),
        "n_classes": int(task.n_classes),
        "feature_names": list(names),
        "intercept": [float(v) for v in intercept],
        "coef": [[float(v) for v in row] for row in coef],
    }

"""The gradient-boosted trees candidate: LightGBM's native API, saved as LightGBM text.

Training is deterministic (``deterministic``, ``force_row_wise``, the model's seed and a
thread count fixed by the table size), so the same data, parameters and seed give a
byte-identical ``model.txt``. lightgbm is imported inside :meth:`GBDTModel.fit` only: predict
and load go through :mod:`mlsd.models.lgbm_runtime`, LightGBM's C library called directly, so
loading and serving a model imports neither the lightgbm Python package nor the pandas,
scikit-learn and scipy it pulls in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlsd.model_params import LIGHTGBM
from mlsd.models.base import (
    FitData,
    Model,
    ModelError,
    TaskInfo,
    check_labels,
    group_sizes,
    read_header,
)
from mlsd.models.lgbm_runtime import Booster
from mlsd.tasks import BINARY, MULTICLASS, RANKING, REGRESSION

MODEL_TXT = "model.txt"
NUM_THREADS = 2  # thread count for large tables (a fixed number: results may depend on it)
# Below this many rows one thread is faster: OpenMP's start-up and, worse, its spin-waiting
# when another process holds a core (50 s instead of 0.1 s measured on 2 cores) cost more
# than the split finding gains.
THREADED_ROWS = 100_000
MAX_ROUNDS = 2000  # with a validation split, early stopping picks the number of trees
ROUNDS_WITHOUT_VALID = 200  # no split to stop on: about LightGBM's default shrinkage in total

# Parameters of the fit itself; the rest of the family's table goes to the booster.
FIT_PARAMS = frozenset({"class_weight", "num_boost_round", "early_stopping_rounds"})
OBJECTIVES = {
    REGRESSION.name: ("regression", "l2"),
    BINARY.name: ("binary", "binary_logloss"),
    MULTICLASS.name: ("multiclass", "multi_logloss"),
    RANKING.name: (None, "ndcg"),  # the objective is a parameter (lambdarank, rank_xendcg)
}
EVAL_AT = 10  # ranking: early stopping watches ndcg@10 on the validation groups
MAX_GRADE = 30  # LightGBM's default label_gain has 31 grades
VALID_NAME = "valid"


class GBDTModel(Model):
    """LightGBM boosted trees on integer-coded features (categorical codes stay categorical)."""

    family = LIGHTGBM.name
    declaration = LIGHTGBM
    encoding = "codes"
    boosting: ClassVar[dict[str, Any]] = {}  # how trees grow, beyond the declared parameters

    def __init__(self, task: TaskInfo, params: dict[str, Any] | None = None, seed: int = 0):
        super().__init__(task, params, seed)
        resolved = self.declaration.validate(self.params, task.kind, error=ModelError)
        self.booster_params = {k: v for k, v in resolved.items() if k not in FIT_PARAMS}
        self.fit_params = {k: v for k, v in resolved.items() if k in FIT_PARAMS}
        self.booster_: Booster | None = None  # the runtime booster every prediction uses
        self.best_iteration: int | None = None
        self.n_features: int | None = None
        self.feature_names: list[str] = []

    def lightgbm_params(self, n_rows: int = 0) -> dict[str, Any]:
        """The full parameter dict handed to ``lightgbm.train`` for ``n_rows`` rows."""
        objective, metric = OBJECTIVES[self.task.kind]
        params = {
            **self.booster_params,
            **self.boosting,
            "objective": objective or self.booster_params["objective"],
            "metric": metric,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": _threads(n_rows),
            "verbose": -1,
        }
        if self.task.n_scores > 1:
            params["num_class"] = self.task.n_classes
        if self.task.definition.grouped:
            params["eval_at"] = [EVAL_AT]
        return params

    def fit(self, data: FitData, *, callbacks: Sequence[Callable] | None = None) -> GBDTModel:
        """Train with early stopping on ``data.X_valid`` when given. ``callbacks`` are extra
        LightGBM callbacks (tuning passes its pruning callback here)."""
        import lightgbm as lgb

        y = check_labels(data.y, self.task)
        class_weight = self.fit_params.get("class_weight")
        weight = _weights(y, data.sample_weight, self.task, class_weight)
        categorical = sorted(int(i) for i in data.categorical)
        grouped = self.task.definition.grouped
        if grouped:
            _check_grades(y)
        train = lgb.Dataset(
            np.asarray(data.X, dtype=np.float64),
            label=y,
            weight=weight,
            group=group_sizes(data.groups) if grouped else None,
            categorical_feature=categorical or "auto",
            free_raw_data=True,
            params={"verbose": -1},
        )
        all_callbacks = list(callbacks or [])
        valid_sets, valid_names = [], []
        has_valid = data.X_valid is not None and data.y_valid is not None and len(data.y_valid)
        if has_valid:
            y_valid = check_labels(data.y_valid, self.task)
            # weigh validation rows like training rows so early stopping tracks the same loss
            valid_weight = _weights(y_valid, None, self.task, class_weight)
            valid = lgb.Dataset(
                np.asarray(data.X_valid, dtype=np.float64),
                label=y_valid,
                weight=valid_weight,
                group=group_sizes(data.groups_valid) if grouped else None,
                reference=train,
            )
            valid_sets, valid_names = [valid], [VALID_NAME]
            patience = self.fit_params.get("early_stopping_rounds")
            if patience:
                all_callbacks.append(
                    lgb.early_stopping(int(patience), first_metric_only=True, verbose=False)
                )
        rounds = self.fit_params["num_boost_round"] or (
            MAX_ROUNDS if has_valid else ROUNDS_WITHOUT_VALID
        )
        try:
            booster = lgb.train(
                self.lightgbm_params(len(y)),
                train,
                num_boost_round=int(rounds),
                valid_sets=valid_sets,
                valid_names=valid_names,
                callbacks=all_callbacks,
            )
        except lgb.basic.LightGBMError as exc:
            raise ModelError(
                f"lightgbm could not train: {exc}", hint="check the parameters"
            ) from exc
        best = booster.best_iteration if booster.best_iteration > 0 else None
        self.best_iteration = int(best or booster.current_iteration())
        # Predict through the saved text form with the runtime a loaded model uses, so the
        # fitted and the loaded model predict bit-identically.
        self.booster_ = Booster.from_string(self.model_string(booster))
        self.n_features = int(np.shape(data.X)[1])
        self.feature_names = list(data.feature_names)
        return self

    def model_string(self, booster: Any = None) -> str:
        """LightGBM's text model, cut at the best iteration: of ``booster`` (a training
        ``lightgbm.Booster``) when given, else the text the fitted or loaded model holds."""
        if booster is not None:
            return booster.model_to_string(num_iteration=self.best_iteration)
        return self._fitted().model_to_string()

    def _fitted(self) -> Booster:
        if self.booster_ is None:
            raise ModelError("the lightgbm model is not fitted", hint="call fit() or load()")
        return self.booster_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regression values, P(positive) for binary, class probabilities for multiclass."""
        booster = self._fitted()
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != booster.num_features:
            raise ModelError(
                f"the lightgbm model expects {booster.num_features} features, got shape {X.shape}",
                hint="transform the inputs with the featurizer saved beside this model",
            )
        out = booster.predict(X, num_threads=_threads(len(X)))
        k = self.task.n_scores
        return out.reshape(len(X), k) if k > 1 else out.reshape(len(X))

    def save(self, folder: Path) -> list[str]:
        """Write ``model.txt`` (LightGBM text) and ``model.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_TXT).write_text(self.model_string(), encoding="utf-8")
        self._write_header(
            folder,
            best_iteration=self.best_iteration,
            n_features=self.n_features,
            feature_names=self.feature_names,
        )
        return [MODEL_TXT, "model.json"]

    @classmethod
    def load(cls, folder: Path) -> GBDTModel:
        """Read a model written by :meth:`save` (without importing the lightgbm package)."""
        folder = Path(folder)
        header = read_header(folder, cls.family)
        model = cls(TaskInfo(**header["task"]), header.get("params"), int(header.get("seed", 0)))
        path = folder / MODEL_TXT
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ModelError(f"{path} does not exist", hint="re-save the model") from exc
        try:
            booster = Booster.from_string(text)
        except ModelError as exc:
            raise ModelError(
                f"{path} is damaged: {exc.message}", hint="re-train the model"
            ) from exc
        model.booster_ = booster
        model.best_iteration = header.get("best_iteration") or booster.current_iteration()
        model.n_features = header.get("n_features")
        model.feature_names = list(header.get("feature_names") or [])
        return model

    def refit_params(self) -> dict[str, Any]:
        """The parameters with the rounds early stopping chose, for a refit without a
        validation split."""
        return {**self.params, "num_boost_round": int(self.best_iteration or 1)}

    def describe(self) -> dict[str, Any]:
        """Family, parameters in effect and the number of trees kept (best_iteration)."""
        return {
            "family": self.family,
            "params": {**self.booster_params, **self.fit_params},
            "best_iteration": self.best_iteration,
            "n_features": self.n_features,
        }


# --- helpers -------------------------------------------------------------------------------


def _check_grades(y: np.ndarray) -> None:
    """LightGBM's ranking objectives take whole relevance grades 0..30."""
    if not np.array_equal(y, np.round(y)) or y.max() > MAX_GRADE:
        raise ModelError(
            f"ranking relevance must be whole grades 0..{MAX_GRADE} for LightGBM, got values "
            f"such as {y[(y != np.round(y)) | (y > MAX_GRADE)][:3].tolist()}",
            hint="grade the target (e.g. round it, or bin a continuous score into 0-4)",
        )


def _threads(n_rows: int) -> int:
    return NUM_THREADS if n_rows >= THREADED_ROWS else 1


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights n / (k · n_class), as scikit-learn's ``class_weight="balanced"``
    (k counts the classes present)."""
    counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(n_classes)
    per_class[present] = len(y) / (present.sum() * counts[present])
    return per_class[y.astype(np.int64)]


def _weights(
    y: np.ndarray, sample_weight: np.ndarray | None, task: TaskInfo, class_weight: str | None
) -> np.ndarray | None:
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if class_weight == "balanced":
        balanced = balanced_weights(y, task.definition.n_labels(task.n_classes))
        weight = balanced if weight is None else weight * balanced
    return weight

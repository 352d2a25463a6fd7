"""The models ``mlsd train`` compares: baselines, every candidate family x class weight tuned
on valid or cross-validated over train + valid (:mod:`mlsd.models.selection`), the choice
among them on those predictions, and a weighted blend of the top candidates.

Nothing here reads the test split: it is scored once, by the caller, for the chosen model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlsd.evaluation.metrics import Metric, compute, metrics_for
from mlsd.features import Featurizer, FittedFeaturizer, frame_inputs
from mlsd.models.base import FitData, Model, TaskInfo
from mlsd.models.gate import guardrail_failures
from mlsd.models.leaderboard import SPLITS, Entry
from mlsd.models.selection import HOLDOUT, Selection, fold_indices
from mlsd.spec import SystemSpec

if TYPE_CHECKING:
    from mlsd.models.tuning import TrialPool


@dataclass(frozen=True)
class TrainingData:
    """The labelled rows of one training run, by split, and what they are judged by."""

    parts: dict[str, pd.DataFrame]  # split -> rows
    ys: dict[str, np.ndarray]  # split -> encoded labels
    columns: dict[str, str]  # feature name -> type, in data order
    task: TaskInfo
    metric: Metric  # the primary metric: candidates are tuned and chosen on it
    classes: list  # the target's classes, positive last for binary; [] without classes
    # grouped tasks (ranking): each split's group ids, the rows of a group contiguous
    groups: dict[str, np.ndarray] | None = None
    # how candidates are judged: on valid, or cross-validated over train + valid
    selection: Selection = field(default_factory=lambda: Selection(HOLDOUT))

    def groups_of(self, split: str) -> np.ndarray | None:
        """The group of each of ``split``'s rows (None when the task is not grouped)."""
        return None if self.groups is None else self.groups[split]

    def inputs(self, split: str) -> dict[str, Any]:
        """The feature columns of ``split`` as a featurizer reads them."""
        return frame_inputs(self.parts[split], self.columns)

    @property
    def fit_rows(self) -> pd.DataFrame:
        """Train and valid together: what cross-validation folds and the final refit use."""
        return pd.concat([self.parts["train"], self.parts["valid"]])

    @property
    def y_fit(self) -> np.ndarray:
        """The labels of :attr:`fit_rows`."""
        return np.concatenate([self.ys["train"], self.ys["valid"]])

    @property
    def y_selection(self) -> np.ndarray:
        """The labels candidates are judged on: valid's, or (cross-validated) all of
        train + valid, each predicted out of fold."""
        return self.y_fit if self.selection.cv else self.ys["valid"]

    def score_selection(
        self, pred: np.ndarray, n_features: int, threshold: float = 0.5
    ) -> dict[str, float | None]:
        """Every metric of the task for the selection predictions (:attr:`y_selection`)."""
        return compute(
            self.task.kind,
            self.y_selection,
            pred,
            names=metrics_for(self.task.kind),
            n_features=n_features,
            threshold=threshold,
            groups=None if self.selection.cv else self.groups_of("valid"),
        )

    def score(
        self, split: str, pred: np.ndarray, n_features: int, threshold: float = 0.5
    ) -> dict[str, float | None]:
        """Every metric of the task for predictions ``pred`` of ``split``'s rows."""
        return compute(
            self.task.kind,
            self.ys[split],
            pred,
            names=metrics_for(self.task.kind),
            n_features=n_features,
            threshold=threshold,
            groups=self.groups_of(split),
        )


@dataclass
class Candidate:
    """A fitted candidate: its leaderboard row, its model and the featurizer it reads."""

    entry: Entry
    model: Model
    featurizer: FittedFeaturizer
    # its predictions of the selection rows (TrainingData.y_selection), none fitted on them
    valid_pred: np.ndarray
    data: FitData | None = None  # the matrices it was fitted on (None for an average)

    def matrix(self, frame: pd.DataFrame, columns: dict[str, str]) -> np.ndarray:
        """``frame``'s rows as this candidate's featurizer encodes them."""
        return self.featurizer.transform(frame_inputs(frame, columns))

    def predict(self, frame: pd.DataFrame, columns: dict[str, str]) -> np.ndarray:
        """The model's raw predictions for ``frame``'s rows."""
        return self.model.predict(self.matrix(frame, columns))


@dataclass
class EnsembleTrial:
    """The average of the top candidates, tried against the chosen one on valid."""

    chosen: Candidate  # the average when kept, else the candidate it was tried against
    decision: dict[str, Any]  # JSON: members, scores, kept and why (evaluation["ensemble"])
    entry: Entry | None = None  # the average's leaderboard row, when there was one to build


def fit_baselines(spec: SystemSpec, data: TrainingData) -> list[Entry]:
    """The baselines of the task, fitted on train and scored on every split."""
    features = list(data.columns)
    if data.groups is not None:  # a ranking heuristic may order by any column but the target
        features = [c for c in data.parts["train"].columns if c != spec.problem.target]
    entries = []
    for baseline in _baselines(spec, data):
        start = time.perf_counter()
        train = data.parts["train"][features]
        if data.groups is not None:
            baseline.fit(train, data.ys["train"], data.groups["train"])
        else:
            baseline.fit(train, data.ys["train"])
        fit_s = time.perf_counter() - start
        scores, per_row = {}, 0.0
        for split in SPLITS:
            pred, per_row = _timed_predict(baseline.predict, data.parts[split][features])
            scores[split] = data.score(split, pred, len(data.columns))
        entries.append(
            Entry(
                name=f"baseline:{baseline.name}",
                kind="baseline",
                family=baseline.name,
                details=baseline.describe(),
                scores=scores,
                fit_s=fit_s,
                predict_us_per_row=per_row,
            )
        )
    return entries


def _baselines(spec: SystemSpec, data: TrainingData) -> list:
    heuristic = spec.models.baselines.heuristic
    if data.groups is not None:
        from mlsd.models.ranking_baselines import ranking_baselines

        columns = [c for c in data.parts["train"].columns if c != spec.problem.target]
        return ranking_baselines(
            heuristic, columns, list(data.columns), data.metric, seed=spec.seed
        )
    from mlsd.models.baselines import make_baselines

    statistic = "median" if data.metric.name in ("mae", "medae") else "mean"
    return make_baselines(data.task, heuristic, seed=spec.seed, statistic=statistic)


def fit_candidates(
    spec: SystemSpec,
    data: TrainingData,
    budget_s: float | None = None,
    pool: TrialPool | None = None,
) -> list[Candidate]:
    """Every family x class-weight variant, tuned on valid; each is one leaderboard row.

    ``budget_s`` (default ``models.tuning.budget_s``) is the whole search's: each variant
    gets an equal share of what is left, so time a quick variant does not use goes to the
    ones after it. ``pool`` fits the trials of each search several at once (a Ray
    cluster's, :class:`mlsd.engine.ray_tuning.RayTrials`)."""
    from mlsd.models.families import FAMILIES
    from mlsd.models.tuning import tune

    task, metric, cv = data.task, data.metric, data.selection.cv
    featurizers: dict[str, FittedFeaturizer] = {}
    matrices: dict[str, dict[str, np.ndarray]] = {}
    fitted = []
    weights = _class_weight_choices(spec, task, data.ys["train"])
    left = len(spec.models.candidates) * len(weights)  # variants still to tune
    budget = spec.models.tuning.budget_s if budget_s is None else budget_s
    started = time.perf_counter()
    folds = fold_indices(data.y_fit, task, data.selection, spec.seed) if cv else None

    def score(pred):
        groups = None if cv else data.groups_of("valid")
        return compute(task.kind, data.y_selection, pred, names=[metric.name], groups=groups)[
            metric.name
        ]

    for family in spec.models.candidates:
        encoding = FAMILIES[family].encoding
        if encoding not in featurizers:  # fitted on the rows the models are fitted on
            rows = frame_inputs(data.fit_rows, data.columns) if cv else data.inputs("train")
            fz = Featurizer(data.columns, spec.features, encoding=encoding).fit(rows)
            featurizers[encoding] = fz
            matrices[encoding] = {s: fz.transform(data.inputs(s)) for s in ("train", "valid")}
        fz, X = featurizers[encoding], matrices[encoding]
        fit_data = FitData(
            X=X["train"],
            y=data.ys["train"],
            X_valid=X["valid"],
            y_valid=data.ys["valid"],
            feature_names=fz.feature_names,
            categorical=fz.categorical_indices,
            groups=data.groups_of("train"),
            groups_valid=data.groups_of("valid"),
        )
        tune_data = fit_data
        if cv:  # every row of train + valid, each predicted once per repeat out of fold
            tune_data = FitData(
                X=np.concatenate([X["train"], X["valid"]]),
                y=data.y_fit,
                feature_names=fz.feature_names,
                categorical=fz.categorical_indices,
                folds=folds,
            )
        for weight in weights:
            # nothing left (or budget 0): the defaults only
            share = max(budget - (time.perf_counter() - started), 0.0) / left
            left -= 1
            result = tune(
                family,
                task,
                tune_data,
                score=score,
                direction=metric.direction,
                budget_s=share,
                max_trials=spec.models.tuning.max_trials,
                seed=spec.seed,
                param_choices={"class_weight": [weight]},
                fixed=spec.models.params.get(family, {}),
                pool=pool,
            )
            model = result.model
            scores, per_row = _score_without_test(data, model, X["train"], result.valid_pred)
            details = {**model.describe(), "trials": result.n_trials, "pruned": result.n_pruned}
            entry = Entry(
                name=family + ("+balanced" if weight == "balanced" else ""),
                kind="candidate",
                family=family,
                details=details,
                scores=scores,
                fit_s=result.elapsed_s,
                predict_us_per_row=per_row,
                size_bytes=_size(model),
            )
            fitted.append(Candidate(entry, model, fz, result.valid_pred, fit_data))
    return fitted


def select(spec: SystemSpec, metric: Metric, fitted: list[Candidate]) -> Candidate:
    """The best candidate on valid among those within the guardrails on valid (if any are)."""
    allowed = [c for c in fitted if not guardrail_failures(spec, c.entry.scores["valid"], "valid")]
    return max(allowed or fitted, key=lambda c: c.entry.rank(metric, "valid"))


def try_ensemble(
    spec: SystemSpec, data: TrainingData, fitted: list[Candidate], best: Candidate
) -> EnsembleTrial:
    """A weighted average of the top candidates of every family, weighted by greedy
    selection on the selection predictions (:mod:`mlsd.models.ensemble`); it replaces the
    chosen model only when its gain on the selection rows is at least
    ``evaluation.ensemble.margin`` and its paired bootstrap's 90% lower bound is above 0
    (and it stays within the guardrails)."""
    from mlsd.features.stacked import stack
    from mlsd.models.ensemble import gain_interval, greedy_weights, weighted

    policy, metric, task = spec.evaluation.ensemble, data.metric, data.task
    others = sorted(
        (c for c in fitted if c is not best),
        key=lambda c: c.entry.rank(metric, "valid"),
        reverse=True,
    )
    ranked = [best, *others][: policy.top]
    best_valid = best.entry.scores["valid"][metric.name]
    decision: dict[str, Any] = {
        "method": "weighted",
        "tried": [c.entry.name for c in ranked],
        "margin": policy.margin,
        "best_single": best.entry.name,
        "best_single_valid": best_valid,
    }
    if task.definition.grouped or len(ranked) < 2:
        why = (
            "ranking scores of different models are on different scales"
            if task.definition.grouped
            else "there is no other candidate to average with"
        )
        decision.update(kept=False, reason=why)
        return EnsembleTrial(best, decision)
    y = data.y_selection
    higher = metric.direction == "max"

    def on(rows: np.ndarray, pred: np.ndarray) -> float:
        value = compute(task.kind, y[rows], pred[rows], names=[metric.name])[metric.name]
        return np.nan if value is None else float(value)

    everything = np.arange(len(y))
    shares = greedy_weights([c.valid_pred for c in ranked], lambda p: on(everything, p), higher)
    members = [(c, w) for c, w in zip(ranked, shares, strict=True) if w > 0]
    decision["weights"] = {c.entry.name: round(float(w), 4) for c, w in members}
    if len(members) < 2:
        decision.update(kept=False, reason=f"no blend of them beats {best.entry.name} alone")
        return EnsembleTrial(best, decision)
    featurizer = stack([c.featurizer for c, _ in members])
    spans = [_span(featurizer, c.featurizer) for c, _ in members]
    names = [c.entry.name for c, _ in members]
    model = weighted([c.model for c, _ in members], names, [w for _, w in members], spans, task)
    pred = sum(w * np.asarray(c.valid_pred, dtype=np.float64) for c, w in members)
    X_train = featurizer.transform(data.inputs("train"))
    scores, per_row = _score_without_test(data, model, X_train, pred)
    entry = Entry(
        name="ensemble",
        kind="candidate",
        family="ensemble",
        details={"family": "ensemble", "params": model.params},
        scores=scores,
        fit_s=0.0,
        predict_us_per_row=per_row,
        size_bytes=_size(model),
    )
    valid = scores["valid"][metric.name]
    gain, low = gain_interval(
        y, pred, best.valid_pred, lambda _y, p, rows: on(rows, p), higher, seed=spec.seed
    )
    breaks = guardrail_failures(spec, scores["valid"], "valid")
    kept = gain >= policy.margin and gain > 0 and low > 0 and not breaks
    decision.update(valid=valid, gain=gain, gain_low=low, members=names)
    if kept:
        reason = (
            f"{metric.name} {valid:.4g} on valid beats {best.entry.name}'s {best_valid:.4g} "
            f"(gain {gain:.4g}, 90% lower bound {low:.4g})"
        )
    elif breaks:
        reason = "; ".join(breaks)
    else:
        reason = (
            f"{metric.name} {valid:.4g} on valid against {best.entry.name}'s {best_valid:.4g}: "
            f"gain {gain:.4g}, 90% lower bound {low:.4g}, margin {policy.margin:g}: within noise"
        )
    decision.update(kept=kept, reason=reason)
    chosen = Candidate(entry, model, featurizer, pred) if kept else best
    return EnsembleTrial(chosen, decision, entry)


def _span(featurizer: Any, part: FittedFeaturizer) -> tuple[int, int]:
    """The columns ``part`` fills in ``featurizer`` (all of them when it is the part)."""
    if featurizer is part:
        return (0, len(part.feature_names))
    return featurizer.spans[featurizer.parts.index(part)]


def _class_weight_choices(spec: SystemSpec, task: TaskInfo, y: np.ndarray) -> list:
    if not task.is_classification or spec.models.class_weight == "none":
        return [None]
    if spec.models.class_weight == "balanced":
        return ["balanced"]
    share = np.bincount(y.astype(int), minlength=task.n_classes).min() / len(y)
    return [None, "balanced"] if share < spec.data.checks.min_class_share else [None]


def _score_without_test(
    data: TrainingData, model: Model, X_train: np.ndarray, valid_pred: np.ndarray
) -> tuple[dict[str, Any], float]:
    """Scores on train and on the selection rows (``valid_pred``: valid, or out of fold);
    test stays unscored until the choice is made. And the prediction time per row."""
    pred, per_row = _timed_predict(model.predict, X_train)
    scores: dict[str, Any] = {
        "train": data.score("train", pred, X_train.shape[1]),
        "valid": data.score_selection(valid_pred, X_train.shape[1]),
        "test": None,  # scored once, at the end, for the chosen model only
    }
    return scores, per_row


def _timed_predict(predict: Callable, X) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    pred = predict(X)
    return pred, (time.perf_counter() - start) / max(len(X), 1) * 1e6


def _size(model: Model) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())

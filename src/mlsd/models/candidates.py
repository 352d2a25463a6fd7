"""The models ``mlsd train`` compares: baselines, every candidate family x class weight tuned
on valid, the choice among them on valid, and the average of the top candidates.

Nothing here reads the test split: it is scored once, by the caller, for the chosen model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd.evaluation.metrics import Metric, compute, metrics_for
from mlsd.features import Featurizer, FittedFeaturizer, frame_inputs
from mlsd.models.base import FitData, Model, TaskInfo
from mlsd.models.gate import beats, guardrail_failures
from mlsd.models.leaderboard import SPLITS, Entry
from mlsd.spec import SystemSpec


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

    def groups_of(self, split: str) -> np.ndarray | None:
        """The group of each of ``split``'s rows (None when the task is not grouped)."""
        return None if self.groups is None else self.groups[split]

    def inputs(self, split: str) -> dict[str, Any]:
        """The feature columns of ``split`` as a featurizer reads them."""
        return frame_inputs(self.parts[split], self.columns)

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


def fit_candidates(spec: SystemSpec, data: TrainingData) -> list[Candidate]:
    """Every family x class-weight variant, tuned on valid; each is one leaderboard row.

    ``models.tuning.budget_s`` is the whole search's: each variant gets an equal share of
    what is left, so time a quick variant does not use goes to the ones after it."""
    from mlsd.models.families import FAMILIES
    from mlsd.models.tuning import tune

    task, metric = data.task, data.metric
    featurizers: dict[str, FittedFeaturizer] = {}
    matrices: dict[str, dict[str, np.ndarray]] = {}
    fitted = []
    weights = _class_weight_choices(spec, task, data.ys["train"])
    left = len(spec.models.candidates) * len(weights)  # variants still to tune
    budget, started = spec.models.tuning.budget_s, time.perf_counter()

    def score(pred):
        valid = compute(
            task.kind,
            data.ys["valid"],
            pred,
            names=[metric.name],
            groups=data.groups_of("valid"),
        )
        return valid[metric.name]

    for family in spec.models.candidates:
        encoding = FAMILIES[family].encoding
        if encoding not in featurizers:  # fitted on the training split only
            featurizers[encoding] = Featurizer(data.columns, spec.features, encoding=encoding).fit(
                data.inputs("train")
            )
            matrices[encoding] = {
                s: featurizers[encoding].transform(data.inputs(s)) for s in ("train", "valid")
            }
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
        for weight in weights:
            # nothing left (or budget 0): the defaults only
            share = max(budget - (time.perf_counter() - started), 0.0) / left
            left -= 1
            result = tune(
                family,
                task,
                fit_data,
                score=score,
                direction=metric.direction,
                budget_s=share,
                max_trials=spec.models.tuning.max_trials,
                seed=spec.seed,
                param_choices={"class_weight": [weight]},
                fixed=spec.models.params.get(family, {}),
            )
            model = result.model
            scores, per_row = _score_without_test(data, model, X)
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
            fitted.append(Candidate(entry, model, fz, fit_data))
    return fitted


def select(spec: SystemSpec, metric: Metric, fitted: list[Candidate]) -> Candidate:
    """The best candidate on valid among those within the guardrails on valid (if any are)."""
    allowed = [c for c in fitted if not guardrail_failures(spec, c.entry.scores["valid"], "valid")]
    return max(allowed or fitted, key=lambda c: c.entry.rank(metric, "valid"))


def try_ensemble(
    spec: SystemSpec, data: TrainingData, fitted: list[Candidate], best: Candidate
) -> EnsembleTrial:
    """Average the top candidates that share the chosen model's featurizer; the average
    replaces the chosen model only when it beats it on valid by ``evaluation.ensemble.margin``
    (and stays within the guardrails on valid)."""
    from mlsd.models.ensemble import average

    policy, metric = spec.evaluation.ensemble, data.metric
    # a package has one featurizer: the members share the chosen one's, best first
    same = [c for c in fitted if c.featurizer is best.featurizer and c is not best]
    same.sort(key=lambda c: c.entry.rank(metric, "valid"), reverse=True)
    members = [best, *same][: policy.top]
    names = [m.entry.name for m in members]
    best_valid = best.entry.scores["valid"][metric.name]
    decision: dict[str, Any] = {
        "method": "average",
        "members": names,
        "margin": policy.margin,
        "best_single": best.entry.name,
        "best_single_valid": best_valid,
    }
    if len(members) < 2:
        decision.update(
            kept=False,
            reason=f"no other candidate shares {best.entry.name}'s featurizer (a package has "
            "one; linear and LightGBM encode features differently)",
        )
        return EnsembleTrial(best, decision)
    model = average([m.model for m in members], names, data.task)
    matrices = {s: best.matrix(data.parts[s], data.columns) for s in ("train", "valid")}
    scores, per_row = _score_without_test(data, model, matrices)
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
    breaks = guardrail_failures(spec, scores["valid"], "valid")
    kept = beats(metric, valid, best_valid, policy.margin) and not breaks
    if kept:
        reason = f"{metric.name} {valid:.4g} on valid beats {best.entry.name}'s {best_valid:.4g}"
    elif breaks:
        reason = "; ".join(breaks)
    else:
        reason = (
            f"{metric.name} {valid:.4g} on valid does not beat {best.entry.name}'s "
            f"{best_valid:.4g} by the margin {policy.margin:g}"
        )
    decision.update(valid=valid, kept=kept, reason=reason)
    chosen = Candidate(entry, model, best.featurizer) if kept else best
    return EnsembleTrial(chosen, decision, entry)


def _class_weight_choices(spec: SystemSpec, task: TaskInfo, y: np.ndarray) -> list:
    if not task.is_classification or spec.models.class_weight == "none":
        return [None]
    if spec.models.class_weight == "balanced":
        return ["balanced"]
    share = np.bincount(y.astype(int), minlength=task.n_classes).min() / len(y)
    return [None, "balanced"] if share < spec.data.checks.min_class_share else [None]


def _score_without_test(
    data: TrainingData, model: Model, matrices: dict[str, np.ndarray]
) -> tuple[dict[str, Any], float]:
    """Scores on train and valid (test stays unscored until the choice is made) and the
    prediction time per row on valid."""
    scores: dict[str, Any] = {}
    per_row = 0.0
    for split, X in matrices.items():
        pred, per_row = _timed_predict(model.predict, X)
        scores[split] = data.score(split, pred, X.shape[1])
    scores["test"] = None  # scored once, at the end, for the chosen model only
    return scores, per_row


def _timed_predict(predict: Callable, X) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    pred = predict(X)
    return pred, (time.perf_counter() - start) / max(len(X), 1) * 1e6


def _size(model: Model) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())

"""``mlsd train``: from a validated spec to a registered model, measured against baselines.

The order is the honest one: baselines first; candidates fitted on train and tuned and
selected on valid only; the test split scored once, at the end, for the chosen model and
the baselines; the chosen model registered only when it beats the best baseline by the
spec's margin and passes every guardrail.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsd.columns import select_features
from mlsd.data.profile import predictions_profile, profile
from mlsd.data.snapshot import Dataset, load_dataset, split_dataset
from mlsd.data.split import TEST, TRAIN, VALID
from mlsd.data.target import encode_target
from mlsd.data.validate import ValidationReport, validate_dataset
from mlsd.errors import MlsdError
from mlsd.evaluation.metrics import compute, default_primary, get_metric, metrics_for
from mlsd.features import Featurizer, FittedFeaturizer, frame_inputs
from mlsd.models.base import FitData, Model, TaskInfo
from mlsd.spec import SystemSpec
from mlsd.stages import Stages
from mlsd.workspace import Workspace, write_json

HOLDOUT_ROWS = 200  # test rows kept in the package and replayed whenever it is loaded
SPLITS = ("train", "valid", "test")


class TrainError(MlsdError):
    """Training cannot start or cannot produce a registrable model."""

    headline = "training failed"
    exit_code = 1


@dataclass
class Entry:
    """One row of the leaderboard: a baseline or a candidate with its scores and costs."""

    name: str
    kind: str  # baseline | candidate
    family: str
    details: dict[str, Any]
    scores: dict[str, dict[str, float | None] | None]  # split -> metric -> value
    fit_s: float = 0.0
    predict_us_per_row: float = 0.0
    size_bytes: int | None = None
    chosen: bool = False

    def to_dict(self) -> dict:
        """JSON form, as in the leaderboard."""
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "details": self.details,
            "fit_s": round(self.fit_s, 3),
            "predict_us_per_row": round(self.predict_us_per_row, 3),
            "size_bytes": self.size_bytes,
            "chosen": self.chosen,
            **self.scores,
        }


@dataclass
class TrainResult:
    """What one ``mlsd train`` did and found."""

    system: str
    task: str
    primary_metric: str
    direction: str
    leaderboard: list[Entry]
    chosen: str
    registered: bool
    reasons: list[str] = field(default_factory=list)  # why it was not registered
    run_id: str | None = None
    model_version: int | None = None
    alias: str | None = None
    package: str | None = None
    snapshot: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    # offline evaluation of the chosen model: calibration, threshold, behavioural tests,
    # ensemble decision, and where the report was written (see mlsd.evaluation)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def entry(self, name: str) -> Entry:
        """The leaderboard row called ``name``."""
        return next(e for e in self.leaderboard if e.name == name)

    def summary_lines(self) -> list[str]:
        """The leaderboard and the verdict, as a person reads them."""
        primary = self.primary_metric
        better = "higher" if self.direction == "max" else "lower"
        lines = [
            f"trained {self.system}: {self.task}, primary metric {primary} ({better} is "
            f"better), snapshot {self.snapshot}",
            f"  {'model':<22}{'train':>10}{'valid':>10}{'test':>10}{'fit s':>9}"
            f"{'µs/row':>9}{'size':>10}",
        ]
        for e in self.leaderboard:
            score = {s: (e.scores.get(s) or {}).get(primary) for s in SPLITS}
            size = f"{e.size_bytes / 1024:.0f} KiB" if e.size_bytes else "-"
            lines.append(
                f"{'*' if e.chosen else ' '} {e.name:<22}{_fmt(score['train']):>10}"
                f"{_fmt(score['valid']):>10}{_fmt(score['test']):>10}{e.fit_s:>9.2f}"
                f"{e.predict_us_per_row:>9.1f}{size:>10}"
            )
        lines.append("  (* chosen on valid; test is scored once, for it and the baselines)")
        lines += self._evaluation_lines()
        if self.registered:
            lines.append(f"registered version {self.model_version} as {self.alias}: {self.package}")
        else:
            lines += ["NOT registered:", *(f"  - {r}" for r in self.reasons)]
        if self.evaluation.get("report"):
            lines.append(f"evaluation report: {self.evaluation['report']['html']}")
        lines.append(f"MLflow run {self.run_id}")
        return lines

    def _evaluation_lines(self) -> list[str]:
        """Ensemble, calibration, threshold and behavioural tests, one line each."""
        ev, lines = self.evaluation, []
        if ev.get("ensemble"):
            kept = "kept" if ev["ensemble"]["kept"] else "not kept"
            lines.append(f"ensemble: {kept} ({ev['ensemble']['reason']})")
        if ev.get("calibration", {}).get("kept"):
            lines.append(
                f"calibration: {ev['calibration']['kept']} ({ev['calibration']['reason']})"
            )
        if ev.get("threshold"):
            t = ev["threshold"]
            lines.append(
                f"decision threshold {t['threshold']:g} ({t['rule']} rule): expected cost "
                f"{t['expected_cost']:.4g} per row on valid, {t['cost_at_0_5']:.4g} at 0.5"
            )
        tests = ev.get("behavioral") or []
        if tests:
            failed = [t for t in tests if not t["passed"]]
            lines.append(f"behavioural tests: {len(tests) - len(failed)} of {len(tests)} passed")
            lines += [
                f"  - failed{' (blocking)' if t['blocking'] else ''}: {t['name']}, "
                f"{t.get('n_failed', 0)} of {t['n']} rows"
                for t in failed
            ]
        return lines

    def _evaluation_summary(self) -> dict[str, Any]:
        """The decisions taken on valid, without curves and bins (those are in the report)."""
        ev = self.evaluation
        out: dict[str, Any] = {}
        if ev.get("threshold"):
            out["threshold"] = {k: v for k, v in ev["threshold"].items() if k != "curve"}
        if ev.get("calibration"):
            out["calibration"] = {
                k: ev["calibration"].get(k) for k in ("kept", "reason", "log_loss")
            }
        if ev.get("ensemble"):
            out["ensemble"] = ev["ensemble"]
        if ev.get("behavioral"):
            out["behavioral"] = ev["behavioral"]
        if ev.get("report"):
            out["report"] = ev["report"]
        return out

    def to_dict(self) -> dict:
        """The ``--json`` object of ``mlsd train``."""
        chosen = self.entry(self.chosen)
        return {
            "system": self.system,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "alias": self.alias,
            "package": self.package,
            "task": self.task,
            "primary_metric": self.primary_metric,
            "direction": self.direction,
            "chosen": self.chosen,
            "registered": self.registered,
            "reasons": self.reasons,
            "snapshot": self.snapshot,
            "test": chosen.scores.get("test"),
            "baselines": {
                e.name: e.scores.get("test") for e in self.leaderboard if e.kind == "baseline"
            },
            "leaderboard": [e.to_dict() for e in self.leaderboard],
            "evaluation": self._evaluation_summary(),
            "timings": self.timings,
            "peak_memory_mb": self.peak_memory_mb,
        }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def task_info(spec: SystemSpec, classes: list) -> TaskInfo:
    """The TaskInfo of the spec's problem (ranking is not trained by this path yet)."""
    kind = spec.problem.task
    if kind == "ranking":
        raise TrainError(
            "ranking tasks are not trained by `mlsd train` yet",
            hint="use task regression on the relevance label for now",
        )
    return TaskInfo(kind=kind, n_classes=len(classes) if kind != "regression" else 0)


def primary_metric(spec: SystemSpec) -> str:
    """The spec's primary metric (the spec loader has checked that it fits the task)."""
    return get_metric(
        spec.metrics.primary or default_primary(spec.problem.task), spec.problem.task
    ).name


def _scores(task: TaskInfo, y: np.ndarray, pred: np.ndarray, n_features: int) -> dict:
    return compute(task.kind, y, pred, names=metrics_for(task.kind), n_features=n_features)


def _size(model: Model) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def _timed_predict(predict, X) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    pred = predict(X)
    return pred, (time.perf_counter() - start) / max(len(X), 1) * 1e6


def beats(metric, a: float, b: float, margin: float) -> bool:
    """``a`` beats ``b`` by at least ``margin`` in the metric's direction (strictly if 0)."""
    if a is None or b is None:
        return False
    gain = (a - b) if metric.direction == "max" else (b - a)
    return gain > margin if margin == 0 else gain >= margin


def _class_weight_choices(spec: SystemSpec, task: TaskInfo, y: np.ndarray) -> list:
    if not task.is_classification or spec.models.class_weight == "none":
        return [None]
    if spec.models.class_weight == "balanced":
        return ["balanced"]
    share = np.bincount(y.astype(int), minlength=task.n_classes).min() / len(y)
    return [None, "balanced"] if share < spec.data.checks.min_class_share else [None]


def _signature(
    spec: SystemSpec,
    dataset: Dataset,
    featurizer: FittedFeaturizer,
    train: pd.DataFrame,
    task: TaskInfo,
    classes: list,
    threshold: float,
) -> dict:
    inputs = []
    for name, kind in featurizer.input_columns.items():
        col = dataset.schema.columns[name]
        item: dict[str, Any] = {
            "name": name,
            "type": kind,
            "nullable": bool(train[name].isna().any()),
        }
        declared = spec.data.columns.get(name)
        if kind == "numeric":
            item["min"] = declared.min if declared and declared.min is not None else col.min
            item["max"] = declared.max if declared and declared.max is not None else col.max
        if kind in ("categorical", "boolean") and col.domain is not None:
            item["domain"] = declared.domain if declared and declared.domain else col.domain
        inputs.append(item)
    output: dict[str, Any] = {"task": task.kind}
    if task.is_classification:
        output["classes"] = [c.item() if isinstance(c, np.generic) else c for c in classes]
    if task.kind == "binary":
        output["positive_class"] = output["classes"][1]
        output["threshold"] = threshold
    return {
        "inputs": inputs,
        "output": output,
        "id_columns": [c for c in [spec.problem.id, *spec.problem.time] if c],
    }


def _holdout(frame: pd.DataFrame, rows: np.ndarray, columns: list[str], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(rows, size=min(HOLDOUT_ROWS, len(rows)), replace=False))
    out = {}
    for name in columns:
        series = frame[name].iloc[pick]
        if isinstance(series.dtype, pd.CategoricalDtype):
            out[name] = [None if v is None or v != v else str(v) for v in series.astype(object)]
        else:
            out[name] = series.to_numpy()
    return out


def train(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    progress: bool | None = None,
    data: pa.Table | None = None,
) -> TrainResult:
    """Validate, split, fit baselines and candidates, select, test once, gate, register.

    ``data`` (an Arrow table with the source's columns) replaces the spec's source: what
    ``mlsd retrain`` passes after assembling fresh rows; everything else is the same.
    """
    workspace = workspace or Workspace.for_spec(spec)
    stages = Stages(14, label=f"train {spec.name}", show=progress)
    try:
        return _train(spec, workspace, stages, data)
    finally:
        stages.close()


def _train(
    spec: SystemSpec, workspace: Workspace, stages: Stages, data: pa.Table | None = None
) -> TrainResult:
    primary = primary_metric(spec)
    metric = get_metric(primary)
    dataset = load_dataset(spec, workspace, stages, table=data)
    report = validate_dataset(spec, dataset, stages)
    write_json(workspace.reports / "validation.json", report.to_dict())
    _require_valid(report)
    labels, _ = split_dataset(dataset, spec)
    frame = dataset.frame
    y_all, classes = encode_target(frame, spec)
    task = task_info(spec, classes)
    known = ~np.isnan(y_all)
    rows = {
        name: np.flatnonzero(known & (labels == code))
        for name, code in zip(SPLITS, (TRAIN, VALID, TEST), strict=True)
    }
    if not len(rows["valid"]):
        raise TrainError(
            "the split has no validation rows; candidates are chosen on them",
            hint="set data.split.valid above 0",
        )
    parts = {name: frame.iloc[r] for name, r in rows.items()}
    ys = {name: y_all[r] for name, r in rows.items()}
    columns = select_features(spec, dataset.schema.types)  # name -> type, in data order
    if spec.evaluation.tests:  # a misnamed column fails now, not after the fitting
        from mlsd.evaluation.behavioral import check

        check(spec.evaluation.tests, columns, frame)
    leaderboard: list[Entry] = []

    with stages("baselines"):
        leaderboard += _fit_baselines(spec, task, primary, parts, ys, columns)
    with stages("candidates"):
        fitted = _fit_candidates(spec, task, metric, parts, ys, columns)
    leaderboard += [f["entry"] for f in fitted]

    # selection on valid only; then the test split, once, for the chosen model
    best = _select(spec, metric, fitted)
    blend = None
    if spec.evaluation.ensemble.enabled:
        with stages("ensemble"):
            best, blend = _try_ensemble(spec, task, metric, fitted, best, parts, ys, columns)
        if blend.get("entry"):
            leaderboard.append(blend.pop("entry"))
    with stages("evaluate"):  # calibration, threshold, behavioural tests: on valid only
        evaluation = _evaluate(spec, task, best, parts, ys, columns)
    if blend is not None:
        evaluation["ensemble"] = blend
    best["entry"].chosen = True
    with stages("test"):
        X_test = best["featurizer"].transform(frame_inputs(parts["test"], columns))
        pred = _calibrated(best, best["model"].predict(X_test))
        best["entry"].scores["test"] = compute(
            task.kind,
            ys["test"],
            pred,
            names=metrics_for(task.kind),
            n_features=X_test.shape[1],
            threshold=best.get("threshold", 0.5),
        )
    result = TrainResult(
        system=spec.name,
        task=task.kind,
        primary_metric=primary,
        direction=metric.direction,
        leaderboard=leaderboard,
        chosen=best["entry"].name,
        registered=False,
        snapshot=dataset.snapshot_id,
        timings=stages.timings,
        peak_memory_mb=stages.peak_memory_mb,
        evaluation=evaluation,
    )
    result.reasons = _gate(spec, metric, result) + _blocking_failures(evaluation)
    write_json(workspace.reports / "leaderboard.json", result.to_dict()["leaderboard"])

    package = None
    if not result.reasons:  # only a model that passed the gate becomes a package
        with stages("package"):
            package = _package(
                spec, workspace, dataset, task, classes, best, parts, columns, result
            )
    with stages("report"):  # evaluation.json + .html, logged to the run below
        from mlsd.evaluation.report import for_training

        for_training(spec, workspace, result, best, parts, ys, columns, task, classes)
    with stages("register"):
        _register(spec, workspace, result, package)
    return result


def _require_valid(report: ValidationReport) -> None:
    blocking = [a for a in report.anomalies if a.blocking]
    if blocking:
        listed = "; ".join(f"{a.check} on {a.column or 'the data'}" for a in blocking[:5])
        raise TrainError(
            f"data validation found {len(blocking)} blocking anomalies ({listed})",
            hint="run `mlsd validate` for the details and fixes",
        )


def _sort_key(metric, value: float | None) -> float:
    if value is None:
        return -np.inf
    return value if metric.direction == "max" else -value


def _fit_baselines(spec, task, primary, parts, ys, columns) -> list[Entry]:
    from mlsd.models.baselines import make_baselines

    statistic = "median" if primary in ("mae", "medae") else "mean"
    entries = []
    for baseline in make_baselines(
        task, spec.models.baselines.heuristic, seed=spec.seed, statistic=statistic
    ):
        start = time.perf_counter()
        baseline.fit(parts["train"][list(columns)], ys["train"])
        fit_s = time.perf_counter() - start
        scores, per_row = {}, 0.0
        for split in SPLITS:
            pred, per_row = _timed_predict(baseline.predict, parts[split][list(columns)])
            scores[split] = _scores(task, ys[split], pred, len(columns))
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


def _fit_candidates(spec, task, metric, parts, ys, columns) -> list[dict]:
    """Every family x class-weight variant, tuned on valid; each is one leaderboard row.

    ``models.tuning.budget_s`` is the whole search's: each variant gets an equal share of
    what is left, so time a quick variant does not use goes to the ones after it."""
    from mlsd.models.families import FAMILIES
    from mlsd.models.tuning import tune

    featurizers: dict[str, FittedFeaturizer] = {}
    matrices: dict[str, dict[str, np.ndarray]] = {}
    fitted = []
    weights = _class_weight_choices(spec, task, ys["train"])
    left = len(spec.models.candidates) * len(weights)  # variants still to tune
    budget, started = spec.models.tuning.budget_s, time.perf_counter()

    def score(pred):
        return compute(task.kind, ys["valid"], pred, names=[metric.name])[metric.name]

    for family in spec.models.candidates:
        encoding = FAMILIES[family].encoding
        if encoding not in featurizers:  # fitted on the training split only
            featurizers[encoding] = Featurizer(columns, spec.features, encoding=encoding).fit(
                frame_inputs(parts["train"], columns)
            )
            matrices[encoding] = {
                s: featurizers[encoding].transform(frame_inputs(parts[s], columns))
                for s in ("train", "valid")
            }
        fz, X = featurizers[encoding], matrices[encoding]
        data = FitData(
            X=X["train"],
            y=ys["train"],
            X_valid=X["valid"],
            y_valid=ys["valid"],
            feature_names=fz.feature_names,
            categorical=fz.categorical_indices,
        )
        for weight in weights:
            # nothing left (or budget 0): the defaults only
            share = max(budget - (time.perf_counter() - started), 0.0) / left
            left -= 1
            result = tune(
                family,
                task,
                data,
                score=score,
                direction=metric.direction,
                budget_s=share,
                max_trials=spec.models.tuning.max_trials,
                seed=spec.seed,
                param_choices={"class_weight": [weight]},
            )
            model = result.model
            scores: dict[str, Any] = {}
            per_row = 0.0
            for split in ("train", "valid"):
                pred, per_row = _timed_predict(model.predict, X[split])
                scores[split] = _scores(task, ys[split], pred, X[split].shape[1])
            scores["test"] = None  # scored once, at the end, for the chosen model only
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
            fitted.append({"entry": entry, "model": model, "featurizer": fz, "data": data})
    return fitted


def guardrail_failures(spec: SystemSpec, scores: dict[str, float | None], split: str) -> list:
    """Each guardrail of the spec that ``scores`` break, as a sentence."""
    failures = []
    for name, bound in spec.metrics.guardrails.items():
        value = scores.get(get_metric(name).name)
        if value is None:
            failures.append(f"guardrail {name} could not be computed on {split}")
        elif bound.min is not None and value < bound.min:
            failures.append(f"guardrail {name} >= {bound.min:g} failed: {value:.4g} on {split}")
        elif bound.max is not None and value > bound.max:
            failures.append(f"guardrail {name} <= {bound.max:g} failed: {value:.4g} on {split}")
    return failures


def _select(spec: SystemSpec, metric, fitted: list[dict]) -> dict:
    """The best candidate on valid among those within the guardrails on valid (if any are)."""
    allowed = [
        f for f in fitted if not guardrail_failures(spec, f["entry"].scores["valid"], "valid")
    ]
    return max(
        allowed or fitted, key=lambda f: _sort_key(metric, f["entry"].scores["valid"][metric.name])
    )


def _try_ensemble(spec, task, metric, fitted, best, parts, ys, columns) -> tuple[dict, dict]:
    """Average the top candidates that share the chosen model's featurizer; the average
    replaces the chosen model only when it beats it on valid by ``evaluation.ensemble.margin``
    (and stays within the guardrails on valid). Returns the chosen model and the decision."""
    from mlsd.models.ensemble import average, members_for

    policy = spec.evaluation.ensemble
    members = members_for(
        fitted,
        best,
        policy.top,
        key=lambda f: _sort_key(metric, f["entry"].scores["valid"][metric.name]),
    )
    names = [f["entry"].name for f in members]
    best_valid = best["entry"].scores["valid"][metric.name]
    report: dict[str, Any] = {
        "method": "average",
        "members": names,
        "margin": policy.margin,
        "best_single": best["entry"].name,
        "best_single_valid": best_valid,
    }
    if len(members) < 2:
        report.update(
            kept=False,
            reason=f"no other candidate shares {best['entry'].name}'s featurizer (a package has "
            "one; linear and LightGBM encode features differently)",
        )
        return best, report
    model = average([f["model"] for f in members], names, task)
    fz = best["featurizer"]
    scores: dict[str, Any] = {}
    per_row = 0.0
    for split in ("train", "valid"):
        X = fz.transform(frame_inputs(parts[split], columns))
        pred, per_row = _timed_predict(model.predict, X)
        scores[split] = _scores(task, ys[split], pred, X.shape[1])
    scores["test"] = None
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
        reason = f"{metric.name} {valid:.4g} on valid beats {best['entry'].name}'s {best_valid:.4g}"
    elif breaks:
        reason = "; ".join(breaks)
    else:
        reason = (
            f"{metric.name} {valid:.4g} on valid does not beat {best['entry'].name}'s "
            f"{best_valid:.4g} by the margin {policy.margin:g}"
        )
    report.update(valid=valid, kept=kept, reason=reason, entry=entry)
    if kept:
        return {"entry": entry, "model": model, "featurizer": fz}, report
    return best, report


def _gate(spec: SystemSpec, metric, result: TrainResult) -> list[str]:
    """Reasons the chosen model may not be registered (empty when it may)."""
    chosen = result.entry(result.chosen).scores["test"]
    reasons = []
    baselines = [e for e in result.leaderboard if e.kind == "baseline"]
    best = max(baselines, key=lambda e: _sort_key(metric, e.scores["test"][metric.name]))
    margin = spec.models.gate.beat_baselines_by
    if not beats(metric, chosen[metric.name], best.scores["test"][metric.name], margin):
        reasons.append(
            f"{result.chosen} scores {metric.name} {chosen[metric.name]:.4g} on test, which does "
            f"not beat the best baseline ({best.name}: {best.scores['test'][metric.name]:.4g}) "
            f"by the required margin {margin:g}"
        )
    return reasons + guardrail_failures(spec, chosen, "test")


def _calibrated(best: dict, pred: np.ndarray) -> np.ndarray:
    calibrator = best.get("calibrator")
    return pred if calibrator is None else calibrator.apply(pred)


def _evaluate(spec: SystemSpec, task: TaskInfo, best: dict, parts, ys, columns) -> dict:
    """Calibrate the chosen model, choose its decision threshold, run the behavioural tests:
    all on the validation split. Sets ``best["calibrator"]`` and ``best["threshold"]`` (what
    the package applies) and returns the JSON-ready results for ``TrainResult.evaluation``."""
    from mlsd.evaluation import behavioral, calibration, thresholds

    out: dict[str, Any] = {}
    fz, model = best["featurizer"], best["model"]
    raw = np.asarray(model.predict(fz.transform(frame_inputs(parts["valid"], columns))))
    y = ys["valid"]
    if task.kind == "binary":
        calibrator, report = calibration.choose(y, raw, spec.evaluation.calibration, seed=spec.seed)
        best["calibrator"] = calibrator
        p = _calibrated(best, raw)
        policy = spec.evaluation.threshold
        chosen = thresholds.choose(
            y,
            p,
            costs=spec.problem.costs,
            rule=policy.rule,
            target=policy.target,
            value=policy.value,
        )
        best["threshold"] = chosen["threshold"]
        out["calibration"] = {
            **report,
            "reliability_before": calibration.reliability(y, raw),
            "reliability": calibration.reliability(y, p),
            "confidence": calibration.confidence(y, p, chosen["threshold"]),
        }
        out["threshold"] = chosen
    elif task.kind == "multiclass":
        out["calibration"] = {
            "kept": "none",
            "reason": "multiclass probabilities are not calibrated (binary tasks only)",
            "reliability": calibration.reliability(y, raw),
            "confidence": calibration.confidence(y, raw),
        }
    if spec.evaluation.tests:

        def predict(frame: pd.DataFrame) -> np.ndarray:
            return _calibrated(best, model.predict(fz.transform(frame_inputs(frame, columns))))

        out["behavioral"] = behavioral.run(
            spec.evaluation.tests, predict, parts["valid"], columns, task.kind, seed=spec.seed
        )
    return out


def _blocking_failures(evaluation: dict) -> list[str]:
    """A reason for each blocking behavioural test that failed."""
    return [
        f"blocking behavioural test {t['name']!r} ({t['kind']}) failed on "
        f"{t.get('n_failed', 0)} of {t['n']} validation rows"
        + (f" ({t['note']})" if t.get("note") else "")
        + (
            f"; mean change {t['mean_change']:.4g} where {t['direction']} was declared"
            if t["kind"] == "directional" and "mean_change" in t
            else ""
        )
        for t in evaluation.get("behavioral", [])
        if t["blocking"] and not t["passed"]
    ]


def spec_hash(spec: SystemSpec) -> str:
    """sha256 of the spec's content (stable across key order and formatting)."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _package(spec, workspace, dataset, task, classes, best, parts, columns, result) -> Path:
    from mlsd.models import package

    threshold = best.get("threshold", 0.5)  # chosen on valid by the spec's threshold rule
    fz: FittedFeaturizer = best["featurizer"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = workspace.folder("packages") / f"{spec.name}-{stamp}-{spec_hash(spec)[:8]}"
    suffix = 1
    while folder.exists():
        folder = folder.with_name(f"{folder.name.rsplit('~', 1)[0]}~{suffix}")
        suffix += 1
    chosen = result.entry(result.chosen)
    signature = _signature(spec, dataset, fz, parts["train"], task, classes, threshold)
    return package.build(
        folder,
        model=best["model"],
        featurizer=fz,
        signature=signature,
        metrics={"primary": result.primary_metric, **{s: chosen.scores[s] for s in SPLITS}},
        profile={
            **profile(parts["train"][list(columns)], columns),
            # outputs on valid (rows the model was not fitted on): prediction drift's reference
            "predictions": predictions_profile(
                _calibrated(
                    best, best["model"].predict(fz.transform(frame_inputs(parts["valid"], columns)))
                ),
                task.kind,
                classes,
                threshold,
            ),
        },
        holdout=_holdout(parts["test"], np.arange(len(parts["test"])), list(columns), spec.seed),
        calibration=best.get("calibrator"),
        meta={
            "system": spec.name,
            "task": task.kind,
            "target": spec.problem.target,
            "classes": signature["output"].get("classes"),
            "threshold": threshold,
            "calibration": best["calibrator"].method if best.get("calibrator") else None,
            "family": chosen.family,
            "snapshot": dataset.snapshot_id,
            "spec_hash": spec_hash(spec),
            "primary_metric": result.primary_metric,
        },
    )


def _decision_params(evaluation: dict) -> dict[str, Any]:
    """The decisions taken on valid, as MLflow run parameters."""
    params: dict[str, Any] = {}
    if "threshold" in evaluation:
        params["decision.threshold"] = evaluation["threshold"]["threshold"]
        params["decision.rule"] = evaluation["threshold"]["rule"]
    if "calibration" in evaluation:
        params["calibration"] = evaluation["calibration"]["kept"]
    if "ensemble" in evaluation:
        params["ensemble.kept"] = evaluation["ensemble"]["kept"]
    if evaluation.get("behavioral"):
        params["behavioral.failed"] = (
            ",".join(t["name"] for t in evaluation["behavioral"] if not t["passed"]) or "none"
        )
    return params


def _register(spec, workspace, result: TrainResult, package_path: Path | None) -> None:
    """Log the run to MLflow; register the package as a version when the gate passed."""
    from mlsd.events import EventLog
    from mlsd.models.registry import Registry

    events = EventLog(workspace.root / "events.sqlite")
    registry = Registry(workspace, spec.name, spec.models.tracking_uri, events=events)
    chosen = result.entry(result.chosen)
    metrics = {
        f"{split}.{name}": value
        for split in SPLITS
        for name, value in (chosen.scores[split] or {}).items()
    }
    for entry in result.leaderboard:
        if entry.kind == "baseline":
            metrics.update(
                {
                    f"{entry.name.replace(':', '.')}.test.{k}": v
                    for k, v in entry.scores["test"].items()
                }
            )
    leaderboard = json.dumps(result.to_dict()["leaderboard"], indent=1, default=str)
    result.run_id = registry.log_run(
        params={
            "chosen": result.chosen,
            "primary_metric": result.primary_metric,
            **{f"model.{k}": v for k, v in chosen.details.get("params", {}).items()},
            **_decision_params(result.evaluation),
        },
        metrics=metrics,
        tags={
            "snapshot": result.snapshot,
            "spec_hash": spec_hash(spec),
            "registered": str(not result.reasons),
        },
        artifacts={
            "validation.json": workspace.reports / "validation.json",
            **{Path(f).name: Path(f) for f in result.evaluation.get("report", {}).values()},
        },
        text={
            "system.yaml": spec.path.read_text() if spec.path else "",
            "leaderboard.json": leaderboard,
            "stages.json": json.dumps(
                {"timings": result.timings, "peak_memory_mb": result.peak_memory_mb}
            ),
        },
    )
    if package_path is None:
        events.append(
            "not_registered",
            "; ".join(result.reasons),
            system=spec.name,
            evidence={"run_id": result.run_id, "chosen": result.chosen, "reasons": result.reasons},
        )
        return
    registered = registry.register(package_path, result.run_id)
    result.package = str(package_path)
    result.registered = True
    result.model_version = registered["version"]
    result.alias = registered["alias"]

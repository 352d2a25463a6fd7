"""The evaluation report: "how can I know that our ML models are any good?"

Every ``mlsd train`` and ``mlsd evaluate`` writes one, ``evaluation.json`` for machines (the
keys are stable and documented in the README) and ``evaluation.html`` for people (inline SVG
figures, no JS, opens offline), under ``workspace.reports``. Both paths feed the same builder
with "a model that predicts from raw columns, plus labelled frames": training passes the chosen
model and its splits, ``mlsd evaluate`` a loaded package and the new labelled data.

A ranking model (a grouped task) is judged per query group: its report adds the key
``ranking`` (metrics at several cutoffs against a random order, the per-group distribution,
the most misranked groups with their items), slices groups by group-level columns, and has no
calibration nor decision threshold (``decisions`` says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlsd.evaluation import ranking
from mlsd.evaluation.metrics import MetricError, _curve, compute, confusion_matrix, get_metric
from mlsd.features import frame_inputs
from mlsd.tasks import Task, get_task
from mlsd.workspace import atomic_write_bytes, write_json

if TYPE_CHECKING:  # training's own objects; importing them at run time would be a cycle
    from mlsd.models.candidates import Candidate, TrainingData
    from mlsd.models.decisions import Evaluation
    from mlsd.models.train import TrainResult

SCHEMA_VERSION = 1
JSON_NAME = "evaluation.json"
HTML_NAME = "evaluation.html"
ERRORS_SHOWN = 10  # most confident errors listed
CURVE_POINTS = 101  # points kept of each curve in the JSON
OVERFIT = 0.10  # train better than valid by more than this share of valid: over-fitting
UNDERFIT = 0.02  # valid better than the best baseline by less than this share: under-fitting
TOP_KEYS = (
    "schema_version",
    "system",
    "created_at",
    "source",
    "model",
    "task",
    "primary_metric",
    "direction",
    "split",
    "rows",
    "metrics",
    "leaderboard",
    "fit",
    "slices",
    "calibration",
    "decisions",
    "behavioral",
    "importance",
    "errors",
    "learning_curve",
    "curves",
    "timings",
    "files",
)
GROUPED_KEYS = (ranking.SECTION,)  # added to TOP_KEYS in the report of a grouped task (ranking)
MISRANKED_SHOWN = 5  # most misranked groups listed
MISRANKED_ITEMS = 10  # items shown of each


@dataclass
class Subject:
    """The model under evaluation.

    ``predict(columns)`` maps raw input columns (name -> array) to outputs in the task's
    shape, exactly as the package answers (calibration included); ``model`` and
    ``featurizer`` are its parts, used for the importance views.
    """

    name: str
    family: str
    task: str
    predict: Callable[[Mapping[str, Any]], np.ndarray]
    model: Any
    featurizer: Any
    threshold: float = 0.5
    classes: list | None = None
    version: int | None = None
    package: str | None = None

    @property
    def kind(self) -> Task:
        """The task's class: what differs by kind."""
        return get_task(self.task)


@dataclass
class Labelled:
    """Rows with labels: the raw frame (every column, for slices) and the encoded target;
    ``groups``: each row's query group (grouped tasks: ranking)."""

    frame: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray | None = None


@dataclass
class ReportInputs:
    """Everything the builder reads. ``split`` names the rows the report judges (``test``
    after training, ``data`` for new labelled data); ``valid`` serves permutation importance."""

    system: str
    subject: Subject
    primary: str
    data: Labelled
    split: str
    source: str
    columns: dict[str, str]  # the model's input columns and their types
    valid: Labelled | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    recorded: dict[str, Any] = field(default_factory=dict)  # the model's scores at training
    evaluation: dict[str, Any] = field(default_factory=dict)  # E1's results (train path)
    learning: dict[str, Any] | None = None
    spec: Any = None  # SystemSpec: slices, costs, tests, seed
    seed: int = 0
    # ranking: other models' predictions on the judged rows (e.g. baselines), name -> scores,
    # drawn beside the subject in the metric-at-k table and chart
    compare: dict[str, np.ndarray] = field(default_factory=dict)


def build(inputs: ReportInputs) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The report dict (every key of ``TOP_KEYS``) and the arrays its figures need."""
    from mlsd.evaluation import importance, slices

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    s, task = inputs.subject, inputs.subject.task
    metric = get_metric(inputs.primary)
    spec = inputs.spec
    data = inputs.data
    grouped = s.kind.grouped
    groups = _groups_of(data, spec) if grouped else None
    pred = np.asarray(s.predict(frame_inputs(data.frame, inputs.columns)))
    n_features = len(s.featurizer.feature_names)
    scores = compute(
        task, data.y, pred, threshold=s.threshold, n_features=n_features, groups=groups
    )
    lap("predict_s")
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "system": inputs.system,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": inputs.source,
        "model": {
            "name": s.name,
            "family": s.family,
            "version": s.version,
            "package": s.package,
            "threshold": s.threshold if s.kind.thresholded else None,
            "classes": s.classes,
        },
        "task": task,
        "primary_metric": metric.name,
        "direction": metric.direction,
        "split": inputs.split,
        "rows": len(data.y),
        "metrics": scores,
    }
    report["leaderboard"] = _leaderboard(inputs, scores)
    report["fit"] = _fit(inputs, metric, scores)
    lap("leaderboard_s")
    ev = getattr(spec, "evaluation", None)
    options = {
        "spec_entries": list(ev.slices) if ev else [],
        "auto": ev.auto_slices if ev else True,
        "min_support": ev.min_support if ev else 30,
        "min_share": ev.min_support_share if ev else 0.01,
        "k": ev.max_slices if ev else 10,
        "seed": inputs.seed,
    }
    if grouped:
        report[ranking.SECTION] = _ranking(inputs, pred, groups, metric.name)
        lap("ranking_s")
        report["slices"] = slices.by_group(
            data.frame,
            data.y,
            pred,
            groups,
            metric=_group_metric(metric.name),
            columns=_group_slice_columns(inputs),
            **options,
        )
    else:
        report["slices"] = slices.analyse(
            data.frame,
            data.y,
            pred,
            task=task,
            primary=metric.name,
            columns=list(inputs.columns),
            threshold=s.threshold,
            **options,
        )
    lap("slices_s")
    report["calibration"] = _calibration(inputs, pred)
    report["decisions"] = (
        {"applies": False, "text": ranking.NOT_APPLICABLE} if grouped else _decisions(inputs, pred)
    )
    lap("decisions_s")
    report["behavioral"] = _behavioral(inputs)
    lap("behavioral_s")
    imp_rows = inputs.valid if inputs.valid is not None else data
    if grouped and imp_rows is not data and imp_rows.groups is None:
        imp_rows = data  # valid rows without their groups cannot be ranked
    X_imp = s.featurizer.transform(frame_inputs(imp_rows.frame, inputs.columns))
    report["importance"] = importance.analyse(
        s.model,
        s.featurizer,
        X_imp,
        imp_rows.y,
        task=task,
        metric=metric.name,
        threshold=s.threshold,
        seed=inputs.seed,
        groups=(groups if imp_rows is data else imp_rows.groups) if grouped else None,
    )
    report["importance"]["split"] = "valid" if imp_rows is not data else inputs.split
    lap("importance_s")
    if grouped:
        report[ranking.SECTION]["most_misranked"] = ranking.most_misranked(
            data.frame,
            data.y,
            pred,
            groups,
            _group_metric(metric.name),
            n=MISRANKED_SHOWN,
            items=MISRANKED_ITEMS,
            columns=_shown_columns(inputs, report["importance"]),
        )
        report["errors"] = _ranking_errors(report[ranking.SECTION])
    else:
        report["errors"] = _errors(inputs, pred, report["importance"])
    report["learning_curve"] = inputs.learning or {
        "points": [],
        "verdict": "not_run",
        "text": "the learning curve is drawn at training time (it refits the model on "
        "shares of the training rows); see the training report",
    }
    report["curves"] = _curves(task, data.y, pred)
    lap("curves_s")
    report["timings"] = timings
    report["files"] = {}
    return report, {"y": np.asarray(data.y), "pred": pred}


# --------------------------------------------------------------------------- sections


def _group_column(spec: Any) -> str | None:
    return getattr(getattr(spec, "problem", None), "group", None)


def _groups_of(data: Labelled, spec: Any) -> np.ndarray | None:
    """The judged rows' query groups: given with the rows, else the spec's group column."""
    if data.groups is not None:
        return np.asarray(data.groups)
    column = _group_column(spec)
    if column and column in data.frame.columns:
        return data.frame[column].to_numpy()
    return None  # one query: every row ranked together


def _group_slice_columns(inputs: ReportInputs) -> list[str]:
    """Columns that may slice groups: the model's inputs, then the frame's other columns
    (a query's country need not be an input), never the target nor the group id."""
    problem = getattr(inputs.spec, "problem", None)
    skip = {getattr(problem, "target", None), getattr(problem, "group", None)}
    names = [*inputs.columns, *(c for c in inputs.data.frame.columns if c not in inputs.columns)]
    return [c for c in names if c not in skip]


def _group_metric(primary: str) -> str:
    """The per-group metric of a ranking report: the primary one (all ranking metrics are
    means over groups)."""
    return primary if get_metric(primary).needs == "relevance" else "ndcg@10"


def _ranking(
    inputs: ReportInputs, pred: np.ndarray, groups: np.ndarray | None, primary: str
) -> dict[str, Any]:
    """Metrics at several cutoffs (the subject, the models to compare, a random order), and the
    per-group distribution of the primary metric."""
    y = inputs.data.y
    models = {inputs.subject.name: pred, **inputs.compare}
    at_k = {}
    for name, scores in models.items():
        at_k[name] = ranking.metric_at_k(y, np.asarray(scores, dtype=np.float64), groups)
    # every order equally likely: what a model that knows nothing scores (ties are averaged)
    at_k["random order"] = ranking.metric_at_k(y, np.zeros(len(y)), groups)
    return {
        "model": inputs.subject.name,
        "metric_at_k": at_k,
        "per_group": ranking.per_group(y, pred, groups, _group_metric(primary)),
        "most_misranked": [],
        "not_applicable": ranking.NOT_APPLICABLE,
    }


def _shown_columns(inputs: ReportInputs, imp: dict) -> list[str]:
    order = [r["feature"] for r in (_importance_order(imp) or [])]
    return [c for c in order if c in inputs.columns][:5] or list(inputs.columns)[:5]


def _ranking_errors(section: dict) -> dict[str, Any]:
    """The errors of a ranking model are misranked groups: listed under ``ranking``."""
    per_group = section["per_group"]
    worst = section["most_misranked"]
    imperfect = None
    if per_group["share_perfect"] is not None:
        imperfect = round(per_group["scored_groups"] * (1 - per_group["share_perfect"]))
    return {
        "what": f"the {len(worst)} groups ranked worst by {per_group['metric']}: see "
        "ranking.most_misranked",
        "n_wrong": imperfect,
        "shown_columns": list(worst[0]["ranked"][0]["features"]) if worst else [],
        "rows": [],
    }


def _primary_of(scores: Mapping[str, Any] | None, name: str) -> float | None:
    return None if not scores else scores.get(name)


def _leaderboard(inputs: ReportInputs, scores: dict) -> list[dict[str, Any]]:
    """Each model's primary metric per split and its train-valid gap (positive: train better)."""
    name = inputs.primary
    sign = 1.0 if get_metric(name).direction == "max" else -1.0
    rows = []
    source = inputs.leaderboard or [
        {
            "name": inputs.subject.name,
            "kind": "candidate",
            "family": inputs.subject.family,
            "chosen": True,
            **{k: inputs.recorded.get(k) for k in ("train", "valid", "test")},
        }
    ]
    for e in source:
        row = {
            "name": e["name"],
            "kind": e.get("kind"),
            "family": e.get("family"),
            "chosen": bool(e.get("chosen")),
            **{split: _primary_of(e.get(split), name) for split in ("train", "valid", "test")},
        }
        if inputs.split not in ("train", "valid", "test"):
            row[inputs.split] = scores.get(name) if row["chosen"] else None
        gap = None
        if row["train"] is not None and row["valid"] is not None:
            gap = sign * (row["train"] - row["valid"])
        row["train_valid_gap"] = gap
        rows.append(row)
    return rows


def _fit(inputs: ReportInputs, metric: Any, scores: dict) -> dict[str, Any]:
    """Over- or under-fitting, in words, from the chosen model's train/valid gap and its lead
    over the best baseline; after training, also how the data scores compare."""
    rows = _leaderboard(inputs, scores)
    chosen = next((r for r in rows if r["chosen"]), None)
    out: dict[str, Any] = {"verdict": "unknown", "text": "no train and valid scores recorded"}
    if chosen is None or chosen["train"] is None or chosen["valid"] is None:
        return out
    sign = 1.0 if metric.direction == "max" else -1.0
    train, valid = chosen["train"], chosen["valid"]
    gap = sign * (train - valid)
    relative = gap / max(abs(valid), 1e-12)
    baselines = [r for r in rows if r["kind"] == "baseline" and r["valid"] is not None]
    best_base = max(baselines, key=lambda r: sign * r["valid"]) if baselines else None
    lift = None if best_base is None else sign * (valid - best_base["valid"])
    lift_rel = None if lift is None else lift / max(abs(best_base["valid"]), 1e-12)
    out = {
        "train": train,
        "valid": valid,
        "gap": gap,
        "relative_gap": relative,
        "best_baseline": best_base["name"] if best_base else None,
        "lift_over_baseline": lift,
        "relative_lift": lift_rel,
    }
    what = f"{metric.name}: train {train:.4g}, valid {valid:.4g}"
    if relative > OVERFIT:
        out["verdict"] = "overfitting"
        out["text"] = (
            f"over-fitting: the model is {relative:.0%} better on train than on valid ({what}); "
            "more regularisation, fewer features or more data should narrow the gap"
        )
    elif lift_rel is not None and lift_rel < UNDERFIT:
        out["verdict"] = "underfitting"
        out["text"] = (
            f"under-fitting: valid is within {UNDERFIT:.0%} of the best baseline "
            f"({best_base['name']}: {best_base['valid']:.4g}; {what}); the model has learned "
            "little: richer features or a more flexible model are needed"
        )
    else:
        out["verdict"] = "ok"
        beat = (
            f", {lift_rel:.0%} better than {best_base['name']} on valid"
            if lift_rel is not None
            else ""
        )
        out["text"] = f"no strong sign of over- or under-fitting ({what}{beat})"
    recorded = _primary_of(inputs.recorded.get("test"), metric.name)
    if inputs.split not in ("train", "valid", "test") and recorded is not None:
        now = scores.get(metric.name)
        if now is not None:
            change = sign * (now - recorded)
            out["recorded_test"] = recorded
            out["change_vs_test"] = change
            out["text"] += (
                f". On this data {metric.name} is {now:.4g} against {recorded:.4g} on the test "
                f"split at training ({'better' if change >= 0 else 'worse'})"
            )
    return out


def _calibration(inputs: ReportInputs, pred: np.ndarray) -> dict[str, Any] | None:
    """Reliability and confidence of the probabilities on the judged rows (classification)."""
    from mlsd.evaluation import calibration

    if not inputs.subject.kind.classification:
        return None
    y = inputs.data.y
    out: dict[str, Any] = {
        "split": inputs.split,
        **calibration.reliability(y, pred),
        "confidence": calibration.confidence(y, pred, inputs.subject.threshold),
    }
    chosen = inputs.evaluation.get("calibration") or {}
    # how the calibrator was chosen on valid (train path only)
    out["method"] = chosen.get("kept") or chosen.get("method")
    out["on_valid"] = {k: v for k, v in chosen.items() if k not in ("reliability_before",)}
    if "reliability_before" in chosen:
        out["ece_valid_before"] = chosen["reliability_before"].get("ece")
    return out


def _decisions(inputs: ReportInputs, pred: np.ndarray) -> dict[str, Any]:
    """Binary: the threshold in use, its cost and the cost curve; multiclass: the confusion
    matrix; regression: residuals and error by target range."""
    kind, y = inputs.subject.kind, inputs.data.y
    if not kind.classification:
        return _regression_decisions(y, pred)
    k = kind.n_labels(pred.shape[1] if pred.ndim == 2 else 2)
    labels = kind.decide(pred, inputs.subject.threshold)
    out: dict[str, Any] = {
        "confusion_matrix": confusion_matrix(y, labels.astype(np.float64), k).tolist(),
        "classes": inputs.subject.classes,
    }
    if not kind.thresholded:
        return out
    from mlsd.evaluation import thresholds

    costs = getattr(getattr(inputs.spec, "problem", None), "costs", None)
    curve = thresholds.cost_curve(
        y,
        pred,
        costs.false_positive if costs else 1.0,
        costs.false_negative if costs else 1.0,
    )
    t = np.asarray(curve["thresholds"])
    cost = np.asarray(curve["expected_cost"])
    used = inputs.subject.threshold
    at = compute(kind.name, y, pred, names=["precision", "recall"], threshold=used)
    fp = int(((pred >= used) & (y == 0)).sum())
    fn = int(((pred < used) & (y == 1)).sum())
    fp_cost = costs.false_positive if costs else 1.0
    fn_cost = costs.false_negative if costs else 1.0
    best = int(np.argmin(cost))
    chosen = inputs.evaluation.get("threshold") or {}
    out.update(
        {
            "threshold": used,
            "rule": chosen.get("rule"),
            "costs": {"false_positive": fp_cost, "false_negative": fn_cost},
            "expected_cost": (fp_cost * fp + fn_cost * fn) / len(y),
            "expected_cost_at_0.5": float(
                (
                    fp_cost * ((pred >= 0.5) & (y == 0)).sum()
                    + fn_cost * ((pred < 0.5) & (y == 1)).sum()
                )
                / len(y)
            ),
            "precision": at["precision"],
            "recall": at["recall"],
            "best_threshold_here": float(t[best]),
            "best_expected_cost_here": float(cost[best]),
            "cost_curve": curve,
        }
    )
    return out


def _regression_decisions(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    residual = y - pred
    q = np.unique(np.quantile(y, np.linspace(0, 1, 6)))
    codes = np.clip(np.searchsorted(q[1:-1], y, side="right"), 0, max(len(q) - 2, 0))
    by_range = []
    for i in range(max(len(q) - 1, 1)):
        rows = codes == i
        if not rows.any():
            continue
        r = residual[rows]
        by_range.append(
            {
                "range": [float(q[i]), float(q[i + 1])] if len(q) > 1 else [float(q[0])] * 2,
                "rows": int(rows.sum()),
                "mae": float(np.mean(np.abs(r))),
                "rmse": float(np.sqrt(np.mean(r**2))),
                "bias": float(np.mean(-r)),  # positive: predictions too high
            }
        )
    return {
        "residuals": {
            "mean": float(residual.mean()),
            "std": float(residual.std()),
            "quantiles": {
                str(p): float(v)
                for p, v in zip(
                    (0.05, 0.25, 0.5, 0.75, 0.95),
                    np.quantile(residual, [0.05, 0.25, 0.5, 0.75, 0.95]),
                    strict=True,
                )
            },
        },
        "error_by_target_range": by_range,
    }


def _behavioral(inputs: ReportInputs) -> dict[str, Any]:
    """The behavioural tests: training's results, or (``mlsd evaluate``) run on the data."""
    results = inputs.evaluation.get("behavioral")
    where = "valid"
    tests = list(getattr(getattr(inputs.spec, "evaluation", None), "tests", []) or [])
    if results is None and tests:
        from mlsd.evaluation import behavioral

        s = inputs.subject

        def predict(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(s.predict(frame_inputs(frame, inputs.columns)))

        results = behavioral.run(
            tests, predict, inputs.data.frame, inputs.columns, s.task, seed=inputs.seed
        )
        where = inputs.split
    results = results or []
    return {
        "split": where if results else None,
        "declared": len(results),
        "passed": sum(bool(t["passed"]) for t in results),
        "failed": sum(not t["passed"] for t in results),
        "tests": results,
    }


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _json_value(value.item())
    if pd.isna(value):
        return None
    return str(value)


def _errors(inputs: ReportInputs, pred: np.ndarray, imp: dict) -> dict[str, Any]:
    """The rows the model got most confidently wrong, with their inputs."""
    kind, y, s = inputs.subject.kind, inputs.data.y, inputs.subject
    if not kind.classification:
        wrong = np.arange(len(y))
        badness = np.abs(y - pred)
        what = f"largest absolute errors among {len(y):,} rows"
    elif kind.thresholded:
        label = pred >= s.threshold
        wrong = np.flatnonzero(label != (y == 1))
        badness = np.where(y == 1, 1 - pred, pred)[wrong]
        what = "wrong at the threshold, the most confident first"
    else:
        label = pred.argmax(axis=1)
        wrong = np.flatnonzero(label != y)
        badness = pred[wrong, label[wrong]]
        what = "wrong, the most confident first"
    top = wrong[np.argsort(-badness, kind="stable")[:ERRORS_SHOWN]]
    frame = inputs.data.frame
    order = [r["feature"] for r in (_importance_order(imp) or [])]
    shown = [c for c in order if c in inputs.columns][:8] or list(inputs.columns)[:8]
    rows = []
    for i in top:
        row: dict[str, Any] = {
            "row": int(i),
            "label": _label_name(s, y[i]),
            "prediction": _prediction(s, pred[i]),
            "inputs": {c: _json_value(frame[c].iloc[i]) for c in inputs.columns},
        }
        rows.append(row)
    return {"what": what, "n_wrong": len(wrong), "shown_columns": shown, "rows": rows}


def _importance_order(imp: dict) -> list[dict] | None:
    if imp.get("permutation"):
        return imp["permutation"]["drop"]
    if imp.get("shap"):
        return imp["shap"]["mean_abs"]
    return imp.get("gain")


def _label_name(s: Subject, value: float) -> Any:
    if not s.kind.classification:
        return float(value)
    if s.classes:
        return _json_value(s.classes[int(value)])
    return int(value)


def _prediction(s: Subject, value: Any) -> Any:
    if s.kind.per_class:
        k = int(np.argmax(value))
        return {"class": _label_name(s, k), "probability": float(value[k])}
    return float(value)


def _thin(values: np.ndarray, n: int = CURVE_POINTS) -> list[float]:
    if len(values) <= n:
        return [float(v) for v in values]
    return [float(v) for v in values[np.unique(np.linspace(0, len(values) - 1, n).astype(int))]]


def _curves(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall points (binary), thinned to ~100 points each."""
    if not get_task(task).thresholded:
        return {}
    tps, fps = _curve(np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64))
    pos, neg = tps[-1], fps[-1]
    if not pos or not neg:
        return {}
    tpr, fpr = np.r_[0.0, tps / pos], np.r_[0.0, fps / neg]
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / pos
    try:
        auc = compute(task, y, pred, names=["roc_auc", "pr_auc"])
    except MetricError:
        auc = {"roc_auc": None, "pr_auc": None}
    return {
        "roc": {"fpr": _thin(fpr), "tpr": _thin(tpr), "auc": auc["roc_auc"]},
        "pr": {
            "recall": _thin(recall),
            "precision": _thin(precision),
            "auc": auc["pr_auc"],
            "base_rate": float(pos / len(y)),
        },
    }


# --------------------------------------------------------------------------- files


def write(report: dict[str, Any], arrays: dict[str, np.ndarray], folder: Path) -> dict[str, str]:
    """Write ``evaluation.json`` and ``evaluation.html`` atomically into ``folder``; returns
    their paths (also recorded in ``report["files"]``)."""
    from mlsd.evaluation import plots

    start = time.perf_counter()
    folder = Path(folder)
    files = {"json": str(folder / JSON_NAME), "html": str(folder / HTML_NAME)}
    report["files"] = files
    page = plots.render(report, arrays)
    report["timings"]["render_s"] = round(time.perf_counter() - start, 3)
    atomic_write_bytes(folder / HTML_NAME, page.encode("utf-8"))
    write_json(folder / JSON_NAME, _jsonable(report))
    return files


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to numbers, NaN and infinities to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return _json_value(obj)


# --------------------------------------------------------------------------- entry points


def for_training(
    spec: Any,
    workspace: Any,
    result: TrainResult,
    chosen: Candidate,
    decisions: Evaluation,
    data: TrainingData,
    compare: Mapping[str, np.ndarray] | None = None,
    learning_s: float | None = None,
) -> dict[str, str]:
    """Build and write the report of a training run (judged on the test split): the chosen
    candidate with the decisions taken on valid. Returns the two file paths and records them
    in ``result.evaluation["report"]``. ``learning_s`` bounds the learning curve's refits
    (what the training budget has left for them; default the curve's own limit).

    Ranking: ``data.groups`` (split -> each row's group) scores the rows per group, and
    ``compare`` (name -> scores of the test rows, e.g. the baselines') joins the metric-at-k
    table and chart."""
    from mlsd.evaluation.learning import learning_curve
    from mlsd.models.families import FAMILIES

    fz, model, entry = chosen.featurizer, chosen.model, chosen.entry
    grouped = data.task.definition.grouped
    groups = getattr(data, "groups", None) or {}
    calibrated = getattr(decisions, "calibrated", None)
    threshold = getattr(decisions, "threshold", None)

    def predict(cols: Mapping[str, Any]) -> np.ndarray:
        raw = np.asarray(model.predict(fz.transform(cols)))
        return raw if calibrated is None else calibrated(raw)

    learning: dict[str, Any] = {
        "points": [],
        "verdict": "not_run",
        "text": "not drawn (evaluation.learning_curve is false)",
    }
    if spec.evaluation.learning_curve and grouped:
        learning = {
            "points": [],
            "verdict": "not_run",
            "text": "not drawn for ranking (refits on shares of the training rows would have "
            "to keep whole groups)",
        }
    elif spec.evaluation.learning_curve and entry.family not in FAMILIES:
        learning = {
            "points": [],
            "verdict": "not_run",
            "text": f"the chosen model is a {entry.family}: read the learning curve of its "
            "members by training them alone",
        }
    elif spec.evaluation.learning_curve:
        scores = {
            s: (entry.scores.get(s) or {}).get(result.primary_metric) for s in ("train", "valid")
        }
        learning = learning_curve(
            entry.family,
            model.params,
            data.task,
            chosen.data,  # the matrices the chosen candidate was fitted on
            metric=result.primary_metric,
            full=scores,
            seed=spec.seed,
            **({} if learning_s is None else {"budget_s": max(learning_s, 0.0)}),
        )
    inputs = ReportInputs(
        system=spec.name,
        subject=Subject(
            name=entry.name,
            family=entry.family,
            task=data.task.kind,
            predict=predict,
            model=model,
            featurizer=fz,
            threshold=0.5 if threshold is None else float(threshold),
            classes=[c.item() if isinstance(c, np.generic) else c for c in data.classes] or None,
        ),
        primary=result.primary_metric,
        data=Labelled(data.parts["test"], data.ys["test"], groups.get("test")),
        split="test",
        source=f"test split of snapshot {result.snapshot}",
        columns=dict(data.columns),
        valid=Labelled(data.parts["valid"], data.ys["valid"], groups.get("valid")),
        leaderboard=[e.to_dict() for e in result.leaderboard],
        evaluation=result.evaluation,
        learning=learning,
        spec=spec,
        seed=spec.seed,
        compare=dict(compare or {}),
    )
    report, arrays = build(inputs)
    files = write(report, arrays, workspace.reports)
    result.evaluation["report"] = files
    return files


def for_package(
    spec: Any,
    package: Any,
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    source: str,
    ref: str,
    folder: Path,
    groups: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Build and write the report of a packaged model on labelled rows (``mlsd evaluate``).
    Ranking: ``groups`` is each row's group (default: the ``problem.group`` column of
    ``frame``)."""
    meta = package.meta
    inputs = ReportInputs(
        system=spec.name,
        subject=Subject(
            name=str(ref),
            family=meta.get("family") or package.model.family,
            task=meta["task"],
            predict=package.predict_matrix,
            model=package.model,
            featurizer=package.featurizer,
            threshold=float(meta.get("threshold", 0.5)),
            classes=meta.get("classes"),
            package=str(package.folder),
        ),
        primary=meta.get("primary_metric") or "",
        data=Labelled(frame.reset_index(drop=True), y, groups),
        split="data",
        source=source,
        columns=dict(package.featurizer.input_columns),
        recorded={k: package.metrics.get(k) for k in ("train", "valid", "test")},
        spec=spec,
        seed=spec.seed,
    )
    report, arrays = build(inputs)
    return report, write(report, arrays, folder)

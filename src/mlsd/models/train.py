"""``mlsd train``: from a validated spec to a registered model, measured against baselines.

The order is the honest one: baselines first; candidates fitted on train and tuned and
selected on valid only; the test split scored once, at the end, for the chosen model and
the baselines; the chosen model registered only when it beats the best baseline by the
spec's margin and passes every guardrail.

One training of a system runs at a time in a workspace: a second ``mlsd train`` (or a
retrain) started meanwhile is refused with :class:`TrainRunningError` naming the first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsd.columns import select_features
from mlsd.data.snapshot import Dataset, load_dataset, split_dataset
from mlsd.data.split import TEST, TRAIN, VALID
from mlsd.data.target import encode_target
from mlsd.data.validate import ValidationReport, validate_dataset
from mlsd.errors import MlsdError
from mlsd.evaluation.metrics import Metric, default_primary, get_metric
from mlsd.models.base import TaskInfo
from mlsd.models.candidates import (
    TrainingData,
    fit_baselines,
    fit_candidates,
    select,
    try_ensemble,
)
from mlsd.models.decisions import evaluate
from mlsd.models.gate import gate_failures
from mlsd.models.leaderboard import SPLITS, Entry, table_lines
from mlsd.models.packaging import build_package, decision_params, spec_hash
from mlsd.models.registry import exclusive, name_holder
from mlsd.models.selection import choose_selection
from mlsd.spec import SystemSpec
from mlsd.stages import Stages
from mlsd.tasks import get_task
from mlsd.workspace import Workspace, write_json

if TYPE_CHECKING:
    from mlsd.models.tuning import TrialPool

# What follows the search (blend, calibration, test, package, report, registration) took
# 3.5-6.5 s on 2 cores on the twelve tables of benchmarks/bench_train.py with default
# parameters, and up to 7.3 s after a 30 s search (a new MLflow database alone about 2.5 s,
# a seven-class report's importance and charts 4 s): set aside from the budget.
FIXED_WORK_S = 8.0
FIXED_WORK_SHARE = 0.25  # but never more than this share of a small budget
# The learning curve refits the tuned model, so its cost grows with the search's: within a
# budget it gets what is left before the end, less this for the report and registry after it.
AFTER_LEARNING_S = 6.0


class TrainError(MlsdError):
    """Training cannot start or cannot produce a registrable model."""

    headline = "training failed"
    exit_code = 1


class TrainRunningError(MlsdError):
    """Another training of the same system holds the workspace's training lock."""

    headline = "training already running"
    exit_code = 2


@contextmanager
def training_lock(workspace: Workspace, system: str) -> Iterator[None]:
    """Hold ``system``'s training lock in ``workspace`` for the ``with`` block.

    Two trainings at once raced on the snapshot's split files and on which version becomes
    champion (and crashed in MLflow's migrations on a new workspace), so the second is
    refused. The lock is a ``flock``: a killed training never leaves it held."""
    path = workspace.folder("locks") / f"train-{system}.lock"
    fd = exclusive(path, wait=False)
    if fd is None:
        holder: dict = {}
        for _ in range(50):  # its holder writes it just after taking the lock
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder:
                break
            time.sleep(0.01)
        raise TrainRunningError(
            f"another training of {system!r} is running in {workspace.root} (pid "
            f"{holder.get('pid', '?')} on {holder.get('host', '?')}, since "
            f"{holder.get('started', '?')}); lock {path}",
            hint="wait for it to finish (mlsd models then lists what it registered), and "
            "run this one again if it is still wanted",
        )
    try:
        name_holder(fd)
        yield
    finally:
        os.close(fd)


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
    selection: dict[str, Any] = field(default_factory=dict)  # holdout or cv, and why

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
            *self._selection_lines(),
            *table_lines(self.leaderboard, primary),
            *self._evaluation_lines(),
        ]
        if self.registered:
            lines.append(f"registered version {self.model_version} as {self.alias}: {self.package}")
        else:
            lines += ["NOT registered:", *(f"  - {r}" for r in self.reasons)]
        if self.evaluation.get("report"):
            lines.append(f"evaluation report: {self.evaluation['report']['html']}")
        lines.append(f"MLflow run {self.run_id}")
        return lines

    def _selection_lines(self) -> list[str]:
        if not self.selection:
            return []
        sel = self.selection
        return [f"candidates judged on {sel['described']} ({sel['reason']})"]

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
            "selection": self.selection,
            "evaluation": self._evaluation_summary(),
            "timings": self.timings,
            "peak_memory_mb": self.peak_memory_mb,
        }


def task_info(spec: SystemSpec, classes: list) -> TaskInfo:
    """The TaskInfo of the spec's problem."""
    definition = get_task(spec.problem.task)
    return TaskInfo(kind=definition.name, n_classes=definition.n_labels(len(classes)))


def primary_metric(spec: SystemSpec) -> str:
    """The spec's primary metric (the spec loader has checked that it fits the task)."""
    return get_metric(
        spec.metrics.primary or default_primary(spec.problem.task), spec.problem.task
    ).name


def train(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    progress: bool | None = None,
    data: pa.Table | None = None,
    pool: TrialPool | None = None,
) -> TrainResult:
    """Validate, split, fit baselines and candidates, select, test once, gate, register.

    ``data`` (an Arrow table with the source's columns) replaces the spec's source: what
    ``mlsd retrain`` passes after assembling fresh rows; everything else is the same.
    ``pool`` fits each search's trials several at once (:mod:`mlsd.engine.ray_tuning`).
    """
    workspace = workspace or Workspace.for_spec(spec)
    with training_lock(workspace, spec.name):
        stages = Stages(14, label=f"train {spec.name}", show=progress)
        try:
            return _train(spec, workspace, stages, data, pool)
        finally:
            stages.close()


def _train(
    spec: SystemSpec,
    workspace: Workspace,
    stages: Stages,
    table: pa.Table | None = None,
    pool: TrialPool | None = None,
) -> TrainResult:
    started = time.perf_counter()
    metric = get_metric(primary_metric(spec))
    dataset = load_dataset(spec, workspace, stages, table=table)
    report = validate_dataset(spec, dataset, stages)
    write_json(workspace.reports / "validation.json", report.to_dict())
    _require_valid(report)
    data = _training_data(spec, dataset, metric)
    leaderboard: list[Entry] = []

    with stages("baselines"):
        leaderboard += fit_baselines(spec, data)
    with stages("candidates"):  # the budget is the whole run's: what loading took is spent,
        budget = spec.models.tuning.budget_s  # and what follows the search is set aside
        ends = started + budget if budget > 0 else None
        if budget > 0:
            after = min(FIXED_WORK_S, FIXED_WORK_SHARE * budget)
            budget = max(budget - (time.perf_counter() - started) - after, 0.01)
        fitted = fit_candidates(spec, data, budget, pool)
    leaderboard += [c.entry for c in fitted]

    # selection on valid only; then the test split, once, for the chosen model
    chosen = select(spec, metric, fitted)
    trial = None
    if spec.evaluation.ensemble.enabled:
        with stages("ensemble"):
            trial = try_ensemble(spec, data, fitted, chosen)
        chosen = trial.chosen
        if trial.entry:
            leaderboard.append(trial.entry)
    with stages("evaluate"):  # calibration, threshold, behavioural tests: on valid only
        evaluation = evaluate(spec, data, chosen)
    results = evaluation.to_dict()
    if trial is not None:
        results["ensemble"] = trial.decision
    chosen.entry.chosen = True
    with stages("test"):
        X_test = chosen.matrix(data.parts["test"], data.columns)
        pred = evaluation.calibrated(chosen.model.predict(X_test))
        chosen.entry.scores["test"] = data.score(
            "test", pred, X_test.shape[1], threshold=evaluation.threshold
        )
    result = TrainResult(
        system=spec.name,
        task=data.task.kind,
        primary_metric=metric.name,
        direction=metric.direction,
        leaderboard=leaderboard,
        chosen=chosen.entry.name,
        registered=False,
        snapshot=dataset.snapshot_id,
        timings=stages.timings,
        peak_memory_mb=stages.peak_memory_mb,
        evaluation=results,
        selection=data.selection.to_dict(),
    )
    result.reasons = gate_failures(spec, metric, leaderboard, chosen.entry, evaluation.behavioral)
    write_json(workspace.reports / "leaderboard.json", result.to_dict()["leaderboard"])

    package = None
    if not result.reasons:  # only a model that passed the gate becomes a package
        with stages("package"):
            package = build_package(spec, workspace, dataset, data, chosen, evaluation)
    with stages("report"):  # evaluation.json + .html, logged to the run below
        from mlsd.evaluation.report import for_training

        learning_s = None if ends is None else ends - time.perf_counter() - AFTER_LEARNING_S
        for_training(spec, workspace, result, chosen, evaluation, data, learning_s=learning_s)
    with stages("register"):
        _register(spec, workspace, result, package)
    return result


def _training_data(spec: SystemSpec, dataset: Dataset, metric: Metric) -> TrainingData:
    """The labelled rows by split (rows without a label are left out), and the features."""
    labels, _ = split_dataset(dataset, spec)
    frame = dataset.frame
    y_all, classes = encode_target(frame, spec)
    task = task_info(spec, classes)
    known = ~np.isnan(y_all)
    rows = {
        name: np.flatnonzero(known & (labels == code))
        for name, code in zip(SPLITS, (TRAIN, VALID, TEST), strict=True)
    }
    groups = None
    if task.definition.grouped:  # a group's rows together, groups in order of first row
        codes, _ = pd.factorize(frame[spec.problem.group], use_na_sentinel=False)
        rows = {name: r[np.argsort(codes[r], kind="stable")] for name, r in rows.items()}
        values = frame[spec.problem.group].to_numpy()
        groups = {name: values[r] for name, r in rows.items()}
    if not len(rows["valid"]):
        raise TrainError(
            "the split has no validation rows; candidates are chosen on them",
            hint="set data.split.valid above 0",
        )
    columns = select_features(spec, dataset.schema.types)  # name -> type, in data order
    if spec.evaluation.tests:  # a misnamed column fails now, not after the fitting
        from mlsd.evaluation.behavioral import check

        check(spec.evaluation.tests, columns, frame)
    ys = {name: y_all[r] for name, r in rows.items()}
    selection = choose_selection(
        spec.models.selection,
        spec.models.folds,
        spec.split_method,
        task,
        ys["train"],
        ys["valid"],
    )
    return TrainingData(
        parts={name: frame.iloc[r] for name, r in rows.items()},
        ys=ys,
        columns=columns,
        task=task,
        metric=metric,
        classes=classes,
        groups=groups,
        selection=selection,
    )


def _require_valid(report: ValidationReport) -> None:
    blocking = [a for a in report.anomalies if a.blocking]
    if blocking:
        listed = "; ".join(f"{a.check} on {a.column or 'the data'}" for a in blocking[:5])
        raise TrainError(
            f"data validation found {len(blocking)} blocking anomalies ({listed})",
            hint="run `mlsd validate` for the details and fixes",
        )


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
            **decision_params(result.evaluation),
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

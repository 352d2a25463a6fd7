"""The package of a training run's chosen model: its signature, holdout and reference profile,
beside the model, its featurizer and the decisions taken on valid; and those decisions as the
run's parameters."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data.profile import predictions_profile, profile
from mlsd.data.schema import domain_of
from mlsd.data.snapshot import Dataset
from mlsd.data.target import class_value
from mlsd.features import FittedFeaturizer
from mlsd.models.candidates import Candidate, TrainingData
from mlsd.models.decisions import Evaluation
from mlsd.models.leaderboard import SPLITS
from mlsd.spec import SystemSpec
from mlsd.workspace import Workspace

HOLDOUT_ROWS = 200  # test rows kept in the package and replayed whenever it is loaded


def spec_hash(spec: SystemSpec) -> str:
    """sha256 of the spec's content (stable across key order and formatting)."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def build_package(
    spec: SystemSpec,
    workspace: Workspace,
    dataset: Dataset,
    data: TrainingData,
    chosen: Candidate,
    evaluation: Evaluation,
) -> Path:
    """Write the chosen model's package under the workspace's ``packages`` folder."""
    from mlsd.models import package

    threshold = evaluation.threshold
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = workspace.folder("packages") / f"{spec.name}-{stamp}-{spec_hash(spec)[:8]}"
    suffix = 1
    while folder.exists():
        folder = folder.with_name(f"{folder.name.rsplit('~', 1)[0]}~{suffix}")
        suffix += 1
    # the training split's profile: monitoring's reference, and the signature's ranges
    reference = profile(data.parts["train"][list(data.columns)], data.columns)
    signature = _signature(spec, dataset, chosen.featurizer, data, threshold, reference)
    return package.build(
        folder,
        model=chosen.model,
        featurizer=chosen.featurizer,
        signature=signature,
        metrics={"primary": data.metric.name, **{s: chosen.entry.scores[s] for s in SPLITS}},
        profile={
            **reference,
            # the served model's outputs on rows it was not fitted on (test: it learnt from
            # train and valid): prediction drift's reference
            "predictions": predictions_profile(
                evaluation.calibrated(chosen.predict(data.parts["test"], data.columns)),
                data.task.kind,
                data.classes,
                threshold,
            ),
        },
        holdout=_holdout(data.parts["test"], list(data.columns), spec.seed),
        calibration=evaluation.calibrator,
        meta={
            "system": spec.name,
            "task": data.task.kind,
            "target": spec.problem.target,
            "classes": signature["output"].get("classes"),
            "threshold": threshold,
            "calibration": evaluation.calibrator.method if evaluation.calibrator else None,
            "family": chosen.entry.family,
            "snapshot": dataset.snapshot_id,
            "spec_hash": spec_hash(spec),
            "primary_metric": data.metric.name,
        },
    )


def decision_params(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The decisions taken on valid (``TrainResult.evaluation``), as MLflow run parameters."""
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


def _signature(
    spec: SystemSpec,
    dataset: Dataset,
    featurizer: FittedFeaturizer,
    data: TrainingData,
    threshold: float,
    reference: dict,
) -> dict:
    """Inputs with their types, and the ranges and domains of the training split (the
    ``reference`` profile's numbers, which monitoring reports as the training range), unless
    the spec declares them; the output's task and classes."""
    train = data.parts["train"]
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
            seen = reference["columns"].get(name, {})
            item["min"] = declared.min if declared and declared.min is not None else seen.get("min")
            item["max"] = declared.max if declared and declared.max is not None else seen.get("max")
        if kind in ("categorical", "boolean") and col.domain is not None:  # None: too many
            item["domain"] = (
                declared.domain if declared and declared.domain else domain_of(train[name])
            )
        inputs.append(item)
    task = data.task
    output: dict[str, Any] = {"task": task.kind}
    if task.is_classification:
        output["classes"] = [class_value(c) for c in data.classes]
    if task.definition.thresholded:
        output["positive_class"] = output["classes"][1]
        output["threshold"] = threshold
    return {
        "inputs": inputs,
        "output": output,
        "id_columns": list(
            dict.fromkeys(c for c in [spec.problem.id, spec.problem.group, *spec.problem.time] if c)
        ),
    }


def _holdout(frame: pd.DataFrame, columns: list[str], seed: int) -> dict:
    """Up to HOLDOUT_ROWS rows of ``frame``, drawn by ``seed``, in frame order."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(frame))
    pick = np.sort(rng.choice(rows, size=min(HOLDOUT_ROWS, len(rows)), replace=False))
    out = {}
    for name in columns:
        series = frame[name].iloc[pick]
        if isinstance(series.dtype, pd.CategoricalDtype):
            out[name] = [None if v is None or v != v else str(v) for v in series.astype(object)]
        else:
            out[name] = series.to_numpy()
    return out

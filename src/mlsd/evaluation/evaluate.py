"""``mlsd evaluate``: score a registered model (or a package folder) on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data.schema import coerce, infer_schema
from mlsd.data.snapshot import load_dataset, split_dataset
from mlsd.data.sources import read_source
from mlsd.data.split import TEST
from mlsd.errors import DataError
from mlsd.evaluation.metrics import compute, metrics_for
from mlsd.features import frame_inputs
from mlsd.spec import ColumnSpec, SourceSpec, SystemSpec
from mlsd.tasks import get_task
from mlsd.values import category_key
from mlsd.workspace import Workspace

REPORT_FOLDER = "evaluate"  # beside the training report, which it must not overwrite


def package_labels(series: pd.Series, meta: dict) -> np.ndarray:
    """The target as the package's model sees it (class index, or the value)."""
    if not get_task(meta["task"]).classification:
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    # matched as categories: 1, 1.0 and "1" are one class, whichever the package recorded
    # (packages before int classes hold 0.0/1.0) and however the data file types the column
    index = {category_key(c): float(i) for i, c in enumerate(meta["classes"])}
    keys = [category_key(v) for v in series.astype(object)]
    unknown = sorted({k for k in keys if k is not None and k not in index})
    if unknown:
        raise DataError(
            f"labels {unknown[:5]} are not classes the model knows ({meta['classes']})",
            hint="evaluate on data labelled like the training data",
        )
    return np.array([np.nan if k is None else index[k] for k in keys], dtype=float)


def _read_labelled(path: Path, package) -> pd.DataFrame:
    """Read a data file and type its columns as the package's signature says."""
    return typed_like(package, read_source(SourceSpec(path=str(path)), Path.cwd()))


def typed_like(package, table) -> pd.DataFrame:
    """An Arrow ``table`` as a frame whose columns are typed as ``package``'s signature says."""
    raw = table.to_pandas(strings_to_categorical=True)
    overrides = {
        i["name"]: ColumnSpec(type=i["type"])
        for i in package.signature["inputs"]
        if i["name"] in raw.columns
    }
    schema, _ = infer_schema(raw, overrides)
    return coerce(raw, schema)


def evaluate(
    spec: SystemSpec,
    ref: str = "champion",
    data: str | Path | None = None,
    workspace: Workspace | None = None,
    *,
    report: bool = True,
) -> dict[str, Any]:
    """Metrics of the model ``ref`` on ``data`` (default: the spec's test split) and, with
    ``report``, the evaluation report on those rows (``evaluation.json`` and ``.html`` in
    the workspace's ``reports/<system>/evaluate/``; their paths under ``"report"``), logged
    with the metrics as an MLflow run (``"run_id"``)."""
    from mlsd.models import package as packages
    from mlsd.models.registry import Registry

    workspace = workspace or Workspace.for_spec(spec)
    registry = Registry(workspace, spec.name, spec.models.tracking_uri)
    folder = registry.resolve(ref)
    package = packages.load(folder)
    meta = package.manifest["meta"]
    target = meta["target"]
    if data is None:
        dataset = load_dataset(spec, workspace)
        labels, _ = split_dataset(dataset, spec)
        frame = dataset.frame[labels == TEST]
        source = f"test split of snapshot {dataset.snapshot_id}"
    else:
        frame = _read_labelled(Path(data), package)
        source = str(data)
    if target not in frame.columns:
        raise DataError(
            f"{source} has no '{target}' column to score against",
            hint="evaluate on labelled data holding the target column",
        )
    missing = [c for c in package.featurizer.input_columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source} lacks the model's input columns {missing[:10]}",
            hint="evaluate on data with the same columns as the training data",
        )
    groups = None
    if get_task(meta["task"]).grouped:  # ranking metrics are means over the query groups
        column = spec.problem.group
        if column not in frame.columns:
            raise DataError(
                f"{source} has no {column!r} column (problem.group): ranking is judged per group",
                hint="evaluate on data holding each row's group",
            )
        groups = frame[column].to_numpy()
    y = package_labels(frame[target], meta)
    keep = ~np.isnan(y)
    frame = frame[keep]
    groups = None if groups is None else groups[keep]
    columns = frame_inputs(frame, package.featurizer.input_columns)
    pred = package.predict_matrix(columns)
    scores = compute(
        meta["task"],
        y[keep],
        pred,
        names=metrics_for(meta["task"]),
        threshold=meta.get("threshold", 0.5),
        n_features=len(package.featurizer.feature_names),
        groups=groups,
    )
    out = {
        "model": str(ref),
        "package": str(folder),
        "data": source,
        "rows": int(keep.sum()),
        "task": meta["task"],
        "primary_metric": meta.get("primary_metric"),
        "metrics": scores,
    }
    if report:
        from mlsd.evaluation.report import for_package

        _, out["report"] = for_package(
            spec,
            package,
            frame,
            y[keep],
            source=source,
            ref=str(ref),
            folder=workspace.reports / REPORT_FOLDER,
            groups=groups,
        )
        # one MLflow run per evaluation, so the UI lists it beside the training runs
        out["run_id"] = registry.log_run(
            params={"model": str(ref), "package": str(folder), "data": source},
            metrics={"data": scores},
            tags={"kind": "evaluate", "rows": str(out["rows"])},
            artifacts={Path(f).name: Path(f) for f in out["report"].values()},
            run_name=f"evaluate {ref}",
        )
    return out

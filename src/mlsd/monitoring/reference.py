"""What a model package recorded for monitoring, read as plain files (no model load): its
task, classes and threshold, its offline test scores, the input profile, and the
references of its outputs and of the training labels."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.tasks import LABEL, Task, get_task
from mlsd.workspace import Workspace

PREDICTION = "prediction"  # the name prediction drift reports its column under


@dataclass
class Reference:
    """What monitoring needs from a model package."""

    version: str
    folder: Path
    manifest: dict[str, Any]
    signature: dict[str, Any]
    metrics: dict[str, Any]
    profile: dict[str, Any]
    predictions: dict[str, Any] | None = None  # a profile column of the recorded outputs
    predictions_source: str | None = None
    target: dict[str, Any] | None = None  # a profile column of the training labels
    target_source: str | None = None

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def task(self) -> Task:
        """The task of the package's kind (its ``name`` is what the report shows)."""
        return get_task(self.meta.get("task") or self.signature["output"]["task"])

    @property
    def classes(self) -> list | None:
        return self.signature["output"].get("classes") or self.meta.get("classes")

    @property
    def threshold(self) -> float:
        return float(self.signature["output"].get("threshold", self.meta.get("threshold", 0.5)))

    @property
    def created_at(self) -> float | None:
        text = self.manifest.get("created_at")
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    def offline(self, metric: str) -> float | None:
        """The package's offline test score for ``metric``."""
        value = (self.metrics.get("test") or {}).get(metric)
        return float(value) if isinstance(value, int | float) else None


def _profile_column(values: np.ndarray, kind: str) -> dict[str, Any]:
    import pandas as pd

    from mlsd.data.profile import profile

    return profile(pd.DataFrame({PREDICTION: values}), {PREDICTION: kind})["columns"][PREDICTION]


def _recorded_outputs(folder: Path, classes: list | None) -> np.ndarray | None:
    """The outputs the package recorded for its holdout (test rows): the prediction
    reference when the profile holds none."""
    import pyarrow.parquet as pq

    from mlsd.models.package import EXPECTED, EXPECTED_PREFIX, HOLDOUT

    path = folder / HOLDOUT
    if not path.exists():
        return None
    table = pq.read_table(path)
    if EXPECTED in table.column_names:
        return table.column(EXPECTED).to_numpy()
    names = sorted(
        (c for c in table.column_names if c.startswith(EXPECTED_PREFIX)),
        key=lambda c: int(re.sub(r"\D", "", c) or 0),
    )
    if not names or not classes:
        return None
    matrix = np.column_stack([table.column(c).to_numpy() for c in names])
    return np.array([classes[i] for i in matrix.argmax(axis=1)], dtype=object)


def _single_column(entry: Any, name: str | None = None) -> dict | None:
    """A column profile from a profile entry that is one (``{"type": ...}``) or a profile
    (``{"columns": {name: {...}}}``: the column ``name``, else the first)."""
    if not isinstance(entry, dict):
        return None
    if "type" in entry:
        return entry
    columns = entry.get("columns")
    if isinstance(columns, dict) and columns:
        return columns.get(name) if name in columns else next(iter(columns.values()))
    return None


def load_reference(workspace: Workspace, system: str, version: str) -> Reference | None:
    """The package behind a logged ``model_version`` (a registered version number, or the
    name of a package folder served directly); None when it cannot be found."""
    from mlsd.models import aliases
    from mlsd.models.package import MANIFEST, METRICS, PROFILE, SIGNATURE

    published = aliases.read(workspace.root, system)
    folder = published["versions"].get(str(version))
    path = Path(folder) if folder else workspace.root / "packages" / str(version)
    if not (path / MANIFEST).is_file():
        return None

    def read(name: str) -> dict:
        file = path / name
        return json.loads(file.read_text()) if file.exists() else {}

    ref = Reference(
        version=str(version),
        folder=path,
        manifest=read(MANIFEST),
        signature=read(SIGNATURE),
        metrics=read(METRICS),
        profile=read(PROFILE),
    )
    watched = ref.task.watched_output
    recorded_profile = _single_column(ref.profile.get("predictions"), watched.name)
    if recorded_profile is not None:
        ref.predictions, ref.predictions_source = recorded_profile, "package profile"
    else:
        recorded = _recorded_outputs(path, ref.classes)
        if recorded is not None and len(recorded):
            kind = "categorical" if watched.kind == LABEL else "numeric"
            ref.predictions = _profile_column(recorded, kind)
            ref.predictions_source = "holdout outputs"
    target = ref.meta.get("target")
    target_profile = _single_column(ref.profile.get("target"))
    if target_profile is not None:
        ref.target, ref.target_source = target_profile, "package profile"
    elif target and ref.meta.get("snapshot"):
        snapshot = workspace.root / "snapshots" / str(ref.meta["snapshot"]) / "profile.json"
        if snapshot.exists():
            column = json.loads(snapshot.read_text()).get("columns", {}).get(target)
            if column and column.get("type") in ("numeric", "categorical", "boolean"):
                ref.target, ref.target_source = column, "training snapshot"
    return ref

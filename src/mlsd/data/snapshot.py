"""Content-addressed snapshots: the data a model saw, frozen, with its schema and profile.

``snapshots/<id>/`` holds ``data.parquet`` (the rows as read), ``schema.json``,
``profile.json`` (reference histograms and frequencies that monitoring reuses) and
``source.json``. The id is a hash of the content (column names, types and every value), so
the same data always lands in the same snapshot and a changed row makes a new one. The
folder is assembled under a temporary name and renamed into place, so a crash never leaves
a half-written snapshot. Splits are recorded beside it under ``splits/<key>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsd.data.profile import profile
from mlsd.data.schema import Schema, infer_schema
from mlsd.data.sources import read_source
from mlsd.data.split import split_rows, split_summary
from mlsd.spec import SystemSpec
from mlsd.stages import Stages
from mlsd.workspace import Workspace, write_json


@dataclass
class Dataset:
    """A loaded snapshot: typed rows, their schema, and where the snapshot lives."""

    frame: pd.DataFrame
    schema: Schema
    snapshot_id: str
    folder: Path
    row_hashes: np.ndarray  # one uint64 per row over every column: duplicates, identity

    @property
    def profile(self) -> dict:
        """The reference profile of the whole snapshot (``profile.json``)."""
        return json.loads((self.folder / "profile.json").read_text())


def content_hash(frame: pd.DataFrame, types: list[pa.DataType]) -> tuple[str, np.ndarray]:
    """sha256 of column names, source types and every value, independent of file format.

    Also returns the per-row hashes it is built from (equal rows hash equal).
    """
    digest = hashlib.sha256()
    for name, kind in zip(frame.columns, types, strict=True):
        digest.update(f"{name}\x00{kind}\x00".encode())
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(rows.tobytes())
    return digest.hexdigest(), rows


def _write_snapshot(
    folder: Path, table: pa.Table, schema: Schema, frame: pd.DataFrame, source: dict
) -> None:
    """Write every file of a snapshot under a temporary folder, then rename it into place."""
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        pq.write_table(table, tmp / "data.parquet", compression="zstd")
        write_json(tmp / "schema.json", schema.to_dict())
        write_json(tmp / "profile.json", profile(frame, schema.types))
        write_json(tmp / "source.json", source)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "source.json").exists():  # not a concurrent writer's copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_dataset(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    stages: Stages | None = None,
    *,
    table: pa.Table | None = None,
) -> Dataset:
    """Read the spec's source, type it, and freeze it as a snapshot in the workspace.

    ``stages`` (optional) records the time and memory of reading, typing and snapshotting.
    ``table`` replaces the spec's source (a retrain's assembled rows); it is typed and
    snapshotted the same way.
    """
    workspace = workspace or Workspace.for_spec(spec)
    stages = stages or Stages(show=False)
    given = table
    with stages("read"):
        if table is None:
            table = read_source(spec.data.source, spec.base_dir)
    with stages("schema"):
        raw = table.to_pandas(strings_to_categorical=True)
        digest, row_hashes = content_hash(raw, table.schema.types)
        snapshot_id = digest[:16]
        schema, frame = infer_schema(raw, spec.data.columns)
    with stages("snapshot"):
        folder = workspace.snapshots / snapshot_id
        if not (folder / "source.json").exists():
            source = {
                "source": spec.data.source.model_dump(exclude_none=True)
                if given is None
                else {"table": "assembled by mlsd retrain"},
                "n_rows": table.num_rows,
                "n_columns": table.num_columns,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write_snapshot(folder, table, schema, frame, source)
    return Dataset(
        frame=frame, schema=schema, snapshot_id=snapshot_id, folder=folder, row_hashes=row_hashes
    )


def split_key(spec: SystemSpec) -> str:
    """A short hash of everything that decides a split, naming its folder in the snapshot."""
    params = {
        "method": spec.split_method,
        "valid": spec.data.split.valid,
        "test": spec.data.split.test,
        "seed": spec.seed,
        "group": spec.split_group,
        "time": spec.problem.time,
        "target": spec.problem.target,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def split_dataset(dataset: Dataset, spec: SystemSpec) -> tuple[np.ndarray, dict]:
    """Split the rows as the spec says and record the split with the snapshot.

    Returns one label per row (0 train, 1 valid, 2 test) and the split summary. A split
    recorded earlier for the same parameters is reused, so it never changes under a model.
    """
    import pyarrow.parquet as pq

    folder = dataset.folder / "splits" / split_key(spec)
    if (folder / "summary.json").exists():
        labels = pq.read_table(folder / "labels.parquet")["split"].to_numpy()
        return labels.astype(np.int8), json.loads((folder / "summary.json").read_text())
    labels = split_rows(dataset.frame, spec)
    summary = split_summary(labels, dataset.frame, spec)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".labels.parquet.tmp"
    pq.write_table(pa.table({"split": pa.array(labels, pa.int8())}), tmp)
    os.replace(tmp, folder / "labels.parquet")
    write_json(folder / "summary.json", summary)  # written last: marks the split complete
    return labels, summary

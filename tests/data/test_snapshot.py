"""Snapshots: content-addressed, reused, complete or absent; splits recorded beside them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlsd.data.snapshot import load_dataset, split_dataset
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace


def make(tmp_path, rows: int = 200, seed: int = 0, split: str = "random"):
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "t": np.arange(rows),
            "x": rng.normal(size=rows),
            "c": rng.choice(["a", "b"], rows),
            "y": rng.normal(size=rows),
        }
    ).to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(
        f"name: s\nproblem: {{task: regression, target: y, time: [t]}}\n"
        f"data: {{source: d.csv, split: {{method: {split}}}}}\n"
    )
    spec._path = tmp_path / "system.yaml"
    return spec


def test_snapshot_is_content_addressed_and_reused(tmp_path):
    spec = make(tmp_path)
    ws = Workspace(tmp_path / "ws")
    first = load_dataset(spec, ws)
    files = sorted(p.name for p in first.folder.iterdir())
    assert files == ["data.parquet", "profile.json", "schema.json", "source.json"]
    assert pq.read_table(first.folder / "data.parquet").num_rows == 200
    assert json.loads((first.folder / "schema.json").read_text())["n_rows"] == 200
    assert first.profile["columns"]["x"]["type"] == "numeric"
    mtime = (first.folder / "data.parquet").stat().st_mtime_ns
    again = load_dataset(spec, ws)
    assert again.snapshot_id == first.snapshot_id
    assert (again.folder / "data.parquet").stat().st_mtime_ns == mtime  # not rewritten
    # the same rows in a Parquet file give the same snapshot: the id hashes content, not bytes
    pq.write_table(pq.read_table(first.folder / "data.parquet"), tmp_path / "d.parquet")
    spec.data.source.path = "d.parquet"
    assert load_dataset(spec, ws).snapshot_id == first.snapshot_id


def test_changed_row_makes_a_new_snapshot(tmp_path):
    spec = make(tmp_path)
    ws = Workspace(tmp_path / "ws")
    first = load_dataset(spec, ws).snapshot_id
    text = (tmp_path / "d.csv").read_text().replace("\n5,", "\n55,", 1)
    (tmp_path / "d.csv").write_text(text)
    assert load_dataset(spec, ws).snapshot_id != first
    assert not [p for p in ws.snapshots.iterdir() if p.name.startswith(".")]


def test_crash_while_writing_leaves_no_snapshot(tmp_path, monkeypatch):
    spec = make(tmp_path)
    ws = Workspace(tmp_path / "ws")

    def boom(*args, **kwargs):
        raise RuntimeError("disk died")

    monkeypatch.setattr("mlsd.data.snapshot.profile", boom)
    with pytest.raises(RuntimeError):
        load_dataset(spec, ws)
    assert list(ws.snapshots.iterdir()) == []


def test_split_is_recorded_and_reused(tmp_path):
    spec = make(tmp_path, split="time")
    ws = Workspace(tmp_path / "ws")
    data = load_dataset(spec, ws)
    labels, summary = split_dataset(data, spec)
    assert summary["method"] == "time"
    folders = list((data.folder / "splits").iterdir())
    assert len(folders) == 1
    assert {p.name for p in folders[0].iterdir()} == {"labels.parquet", "summary.json"}
    t = data.frame["t"].to_numpy()
    assert (
        t[labels == 0].max() < t[labels == 1].min() <= t[labels == 1].max() < t[labels == 2].min()
    )
    again, _ = split_dataset(data, spec)
    assert np.array_equal(labels, again)
    spec.seed = 7  # new parameters → a new recorded split beside the first
    split_dataset(data, spec)
    assert len(list((data.folder / "splits").iterdir())) == 2

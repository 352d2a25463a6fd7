"""The Python API mirrors the CLI."""

from __future__ import annotations

import mlsd


def test_load_validate_split(example, tmp_path, monkeypatch):
    monkeypatch.setenv("MLSD_HOME", str(tmp_path / "ws"))
    system = mlsd.load(example("bikeshare"))
    assert system.spec.name == "bike-demand"
    report = system.validate()
    assert report.passed and report.split["method"] == "time"
    labels, summary = system.split()
    assert summary["counts"]["train"] == int((labels == 0).sum())
    assert system.dataset.snapshot_id == report.snapshot
    assert (tmp_path / "ws" / "reports" / "bike-demand" / "validation.json").exists()

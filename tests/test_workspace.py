"""Workspace location rules and atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from mlsd.spec import parse_spec
from mlsd.workspace import Workspace, atomic_write_bytes, write_json

SPEC = "name: w\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"


def test_default_is_beside_the_spec(tmp_path):
    spec = parse_spec(SPEC)
    spec._path = tmp_path / "system.yaml"
    assert Workspace.for_spec(spec).root == (tmp_path / ".mlsd").resolve()


def test_spec_workspace_then_env_override(tmp_path, monkeypatch):
    spec = parse_spec(SPEC + "workspace: ../shared-ws\n")
    spec._path = tmp_path / "sys" / "system.yaml"
    assert Workspace.for_spec(spec).root == (tmp_path / "shared-ws").resolve()
    monkeypatch.setenv("MLSD_HOME", str(tmp_path / "home"))
    assert Workspace.for_spec(spec).root == (tmp_path / "home").resolve()


def test_folders_are_created_on_use(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.reports.is_dir() and ws.snapshots.is_dir()


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    write_json(target, {"a": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary left behind


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()

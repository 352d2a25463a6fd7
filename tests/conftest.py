"""Shared fixtures: the bundled examples, copied into a temporary folder per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _no_global_workspace(monkeypatch):
    """Tests choose their workspace; an MLSD_HOME from the developer's shell must not leak in."""
    monkeypatch.delenv("MLSD_HOME", raising=False)


@pytest.fixture
def example(tmp_path):
    """Copy an example folder (spec + data) to tmp and return the copy's path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".mlsd"))
        return target

    return copy

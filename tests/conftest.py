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


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module: 2 CPUs, a small object store, no dashboard;
    ``ray``. Skips where Ray is not installed."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()

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


@pytest.fixture
def small_disk():
    """Mount a real, small file system (tmpfs) at a folder: ``mount(folder, size_kb)``
    returns the folder; it is unmounted after the test. Skips where this process may not
    mount (it needs root or CAP_SYS_ADMIN)."""
    import subprocess

    mounted: list[Path] = []

    def mount(folder: Path, size_kb: int = 512) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small disk here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte with one file; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        block = b"\0" * 65536
        try:
            while True:
                out.write(block)
        except OSError:
            pass
        try:  # the last bytes, smaller than a block
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler

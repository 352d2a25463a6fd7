"""The retrain lock: exclusive, released on exit, taken over when its holder is dead or old."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from mlsd.loop.lock import LockedError, acquire, lock_path, release, retrain_lock
from mlsd.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws", "sys")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write(path, holder: dict, age_s: float = 0.0) -> None:
    path.write_text(json.dumps(holder))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))


def test_lock_is_exclusive_and_released(ws):
    with retrain_lock(ws) as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockedError, match=rf"another retrain is running \(pid {os.getpid()}"):
            acquire(ws)
    assert not path.exists()
    with retrain_lock(ws):  # free again
        pass


def test_lock_is_released_when_the_block_raises(ws):
    with pytest.raises(RuntimeError), retrain_lock(ws):
        raise RuntimeError("crash inside the retrain")
    assert not lock_path(ws).exists()


def test_systems_have_their_own_locks(ws):
    with retrain_lock(ws, "a"), retrain_lock(ws, "b"):
        assert lock_path(ws, "a") != lock_path(ws, "b")


def test_a_dead_holder_is_taken_over_with_a_warning(ws, caplog):
    path = lock_path(ws)
    dead = _dead_pid()
    _write(path, {"pid": dead, "host": socket.gethostname(), "started": "earlier"})
    with caplog.at_level(logging.WARNING, logger="mlsd.loop.lock"), retrain_lock(ws):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"process {dead} is no longer running" in caplog.text


def test_a_live_holder_on_another_host_is_respected_until_the_ttl(ws):
    path = lock_path(ws)
    _write(path, {"pid": 1, "host": "elsewhere", "started": "earlier"}, age_s=60)
    with pytest.raises(LockedError, match="elsewhere"):
        acquire(ws, ttl_s=3600)
    with retrain_lock(ws, ttl_s=30):  # older than the TTL: stale
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_half_written_lock_is_stale_only_after_a_grace_period(ws):
    path = lock_path(ws)
    path.write_text("")  # a writer between create and write
    with pytest.raises(LockedError):
        acquire(ws)
    path.write_text("{")  # ... or one that crashed there, a while ago
    os.utime(path, (time.time() - 10, time.time() - 10))
    release(acquire(ws))
    assert not path.exists()


def test_release_leaves_a_lock_taken_over_by_another(ws):
    path = acquire(ws)
    _write(path, {"pid": os.getpid() + 1, "host": socket.gethostname(), "started": "now"})
    release(path)
    assert path.exists()

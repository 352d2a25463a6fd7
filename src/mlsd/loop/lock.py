"""One retrain at a time per system: a lock file in the workspace that a crash cannot leave
held forever.

The lock is ``<workspace>/locks/retrain-<system>.lock``, created with ``O_CREAT | O_EXCL``
(atomic on local file systems) and holding ``{pid, host, started}``. A lock whose process is
dead on this host, or that is older than the TTL (a process on another host, or a pid that
was reused), is stale: it is taken over with a logged warning. Anything else means another
retrain is running, and the caller gets a clear error instead of a second, racing retrain.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.workspace import Workspace

TTL_S = 6 * 3600.0  # a retrain that has run this long is presumed dead
log = logging.getLogger(__name__)


class LockedError(MlsdError):
    """Another retrain of the same system holds the workspace lock."""

    headline = "retrain already running"
    exit_code = 2


def lock_path(workspace: Workspace, system: str | None = None) -> Path:
    """Where the retrain lock of ``system`` lives."""
    name = system or workspace.system or "default"
    return workspace.folder("locks") / f"retrain-{name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written by a crashed writer: judged by the file's age


def _stale(holder: dict[str, Any], path: Path, ttl_s: float) -> str | None:
    """Why the lock ``holder`` may be taken over, or None when it is live."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "it is gone"
    if age > ttl_s:
        return f"it is {age:.0f} s old (TTL {ttl_s:.0f} s)"
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int):
        return "it names no process" if age > 5 else None  # give a writer time to finish
    if host == socket.gethostname() and not _pid_alive(pid):
        return f"its process {pid} is no longer running"
    return None


def _create(path: Path, holder: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def acquire(workspace: Workspace, system: str | None = None, *, ttl_s: float = TTL_S) -> Path:
    """Take the retrain lock (taking over a stale one); raise LockedError when held."""
    path = lock_path(workspace, system)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for _ in range(3):  # a stale lock removed under us by another taker: try again
        if _create(path, holder):
            return path
        current = _read(path)
        if current is None:
            continue
        why = _stale(current, path, ttl_s)
        if why is None:
            raise LockedError(
                f"another retrain is running (pid {current.get('pid')} on "
                f"{current.get('host')}, since {current.get('started')}); lock {path}",
                hint="wait for it to finish; if that process is gone from another host, "
                f"delete {path}",
            )
        log.warning("taking over a stale retrain lock %s: %s (held by %s)", path, why, current)
        # rename first: of two takers only one wins the rename, the other retries the create
        grave = path.with_name(f"{path.name}.stale-{os.getpid()}")
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            continue
        grave.unlink(missing_ok=True)
    raise LockedError(
        f"could not take the retrain lock {path} (it kept changing hands)",
        hint="another retrain is starting at the same moment; try again",
    )


def release(path: Path) -> None:
    """Release a lock this process holds (a lock taken over by another is left alone)."""
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextmanager
def retrain_lock(
    workspace: Workspace, system: str | None = None, *, ttl_s: float = TTL_S
) -> Iterator[Path]:
    """Hold the retrain lock of ``system`` for the ``with`` block."""
    path = acquire(workspace, system, ttl_s=ttl_s)
    try:
        yield path
    finally:
        release(path)

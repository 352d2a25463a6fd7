"""Where a system's artifacts live: snapshots, reports, and later runs, packages and logs.

The workspace is ``.mlsd/`` beside ``system.yaml`` unless the spec's ``workspace:`` names
another folder; the ``MLSD_HOME`` environment variable overrides both (handy for tests
and containers). Every file is written atomically: to a temporary name in the same folder,
then renamed, so a crash never leaves half a file under its final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsd.errors import WorkspaceError

if TYPE_CHECKING:  # the atomic writers serve the numpy-only serving path: no pydantic import
    from mlsd.spec import SystemSpec


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable bytes for hashing)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


class Workspace:
    """The folder holding one system's snapshots, reports and (later) runs and packages."""

    def __init__(self, root: str | Path, system: str | None = None):
        self.root = Path(root).resolve()
        self.system = system  # several systems may share a workspace; reports stay apart

    @classmethod
    def for_spec(cls, spec: SystemSpec) -> Workspace:
        """The workspace of ``spec``: MLSD_HOME, else ``spec.workspace``, else ``.mlsd``."""
        if os.environ.get("MLSD_HOME"):
            return cls(os.environ["MLSD_HOME"], spec.name)
        if spec.workspace:
            return cls(spec.resolve(spec.workspace), spec.name)
        return cls(spec.base_dir / ".mlsd", spec.name)

    def folder(self, name: str) -> Path:
        """A sub-folder of the workspace, created on first use."""
        path = self.root / name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create {path}: {exc.strerror}",
                hint="set `workspace:` in system.yaml or MLSD_HOME to a writable folder",
            ) from exc
        return path

    @property
    def snapshots(self) -> Path:
        """Content-addressed data snapshots."""
        return self.folder("snapshots")

    @property
    def reports(self) -> Path:
        """JSON and HTML reports of validation, evaluation and monitoring, per system."""
        return self.folder(f"reports/{self.system}" if self.system else "reports")

    @property
    def log(self) -> Path:
        """The prediction log (``mlsd.predlog``), per system; made by its writer."""
        return self.root / (f"log/{self.system}" if self.system else "log")

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

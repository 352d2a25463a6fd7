"""The Python API: ``mlsd.load(path)`` gives a :class:`System` with the CLI's verbs."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from mlsd.data.snapshot import Dataset, load_dataset, split_dataset
from mlsd.data.validate import ValidationReport, validate
from mlsd.spec import SystemSpec, load_spec
from mlsd.workspace import Workspace


class System:
    """One declared ML system: its spec, its workspace, and what can be done with it."""

    def __init__(self, spec: SystemSpec):
        self.spec = spec
        self.workspace = Workspace.for_spec(spec)

    def __repr__(self) -> str:
        return f"System({self.spec.name!r}, workspace={str(self.workspace.root)!r})"

    @cached_property
    def dataset(self) -> Dataset:
        """The spec's data, loaded and frozen as a snapshot (read once per System)."""
        return load_dataset(self.spec, self.workspace)

    def split(self) -> tuple[np.ndarray, dict]:
        """Row labels (0 train, 1 valid, 2 test) and the split summary."""
        return split_dataset(self.dataset, self.spec)

    def validate(self, *, progress: bool | None = False) -> ValidationReport:
        """Validate the data (as ``mlsd validate``) and write the report to the workspace."""
        return validate(self.spec, self.workspace, progress=progress)


def load(path: str | Path = "system.yaml") -> System:
    """Load ``system.yaml`` (a file or the folder holding it) as a :class:`System`."""
    return System(load_spec(path))

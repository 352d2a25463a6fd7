"""``mlsd monitor --engine ray``: a large prediction log read in parallel blocks.

Reading is most of a monitoring run (DuckDB infers the JSON segments' columns, then parses
them: four fifths of the time on a million rows of 85 fields), and segments are
independent files. The finished segments are cut into blocks of about equal size, one per
actor; each actor is the local engine's reader (:class:`mlsd.monitoring.windows.LogRows`)
over its block, and labels its rows from the whole log's feedback, read once here and
shared through the object store. The driver merges what the blocks return (versions,
columns, rows in serving order) and runs the checks as the local engine does, so the
report is the same. The actors read the segments from the path the driver sees: on a
cluster of several machines, the log folder must be on storage every node mounts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlsd.engine.cluster import EngineError, connect, cpus, reason
from mlsd.monitoring.windows import LogRows
from mlsd.predlog.reader import read_feedback
from mlsd.predlog.writer import PREDICTIONS, log_folder, segment_files
from mlsd.spec import EngineSpec
from mlsd.workspace import Workspace

_ORDER = [("ts", "ascending"), ("request_id", "ascending"), ("instance", "ascending")]


def blocks(files: Sequence[Path], count: int) -> list[list[Path]]:
    """``files`` (oldest first) cut into at most ``count`` runs of consecutive files of
    about equal total size; none empty."""
    sizes = [max(1, f.stat().st_size) for f in files]
    total, out, current, filled = sum(sizes), [], [], 0
    for f, size in zip(files, sizes, strict=True):
        current.append(f)
        filled += size
        # close a block once it reaches its share of the bytes (the last takes the rest)
        if filled >= total * (len(out) + 1) / count and len(out) < count - 1:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def _key(table: Any, row: int) -> tuple:
    """The serving-order key of one row of ``table`` (nulls last, as the sort puts them)."""
    values = [table.column(name)[row].as_py() for name, _ in _ORDER]
    return tuple((v is None, v) for v in values)


def in_order(parts: Sequence[Any]) -> bool:
    """Whether tables each in serving order are in it end to end: each non-empty one
    starting at or after where the previous one ended."""
    filled = [p for p in parts if p.num_rows]
    return all(_key(a, -1) <= _key(b, 0) for a, b in itertools.pairwise(filled))


class RayLog:
    """The log of ``workspace`` read by actors on the cluster ``engine`` names: the
    interface of :class:`~mlsd.monitoring.windows.LogRows`."""

    def __init__(self, engine: EngineSpec, workspace: Workspace):
        self.ray = connect(engine)
        files = segment_files(log_folder(workspace) / PREDICTIONS)
        count = min(engine.actors or cpus(self.ray), cpus(self.ray))  # an actor holds a CPU
        feedback = self.ray.put(read_feedback(workspace))
        actor = self.ray.remote(num_cpus=1)(LogRows)
        # one DuckDB thread each: an actor holds one CPU of the cluster
        self.actors = [
            actor.remote(workspace, files=[str(f) for f in block], feedback=feedback, threads=1)
            for block in blocks(files, count)
        ]

    def _all(self, method: str, *args: Any) -> list[Any]:
        calls = [getattr(a, method).remote(*args) for a in self.actors]
        try:
            return self.ray.get(calls)
        except self.ray.exceptions.RayError as exc:
            raise EngineError(
                f"reading the prediction log on Ray failed: {reason(exc)}",
                hint="every node must see the log folder at the driver's path (shared "
                "storage); run with --engine local to read it here",
            ) from exc

    def versions(self) -> list[tuple[str, int, float]]:
        """The blocks' (version, rows, latest ts) merged, the latest served last."""
        merged: dict[str, tuple[int, float]] = {}
        for found in self._all("versions"):
            for version, n, ts in found:
                rows, latest = merged.get(version, (0, ts))
                merged[version] = (rows + n, max(latest, ts))
        return sorted(((v, n, ts) for v, (n, ts) in merged.items()), key=lambda x: x[2])

    def columns(self, inputs: Mapping[str, str]) -> set[str]:
        """The columns any block has."""
        return set().union(*self._all("columns", dict(inputs)))

    def rows(self, version: str, inputs: Mapping[str, str], fields: Sequence[str]) -> Any:
        """The blocks' rows as one table in serving order, every column of ``fields``
        present (null where a block had no such field)."""
        import pyarrow as pa

        parts = self._all("rows", version, dict(inputs), list(fields))
        table = pa.concat_tables(parts, promote_options="permissive")
        # each block comes sorted; blocks of consecutive segments usually follow each other
        # in time too, and then sorting the whole table again (a copy of it) is not needed
        return table if in_order(parts) else table.sort_by(_ORDER)

    def set_aside(self) -> list[dict[str, Any]]:
        """The segments the blocks could not parse, moved aside."""
        return [skipped for found in self._all("set_aside") for skipped in found]

    def close(self) -> None:
        """Stop the actors (the cluster stays up)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


def log_on_ray(engine: EngineSpec) -> Callable[[Workspace], RayLog]:
    """The Ray engine for :func:`mlsd.monitoring.monitor.monitor`."""
    return lambda workspace: RayLog(engine, workspace)

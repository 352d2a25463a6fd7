"""The prediction log cut into windows, and the columns of each window read as the checks
take them.

Windows are of serving time (``monitoring.window: 1d``) or of rows (``{rows: 1000}``,
counted back from the latest row so the latest window is full). Reading is columnar:
DuckDB reads the log's segments (:mod:`mlsd.predlog.reader`) and only the profiled inputs,
the outputs, the label and the metadata are fetched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.monitoring import quality
from mlsd.predlog.reader import (
    LogError,
    block_view,
    duckdb_view,
    log_errors,
    log_folder,
    sql_identifier,
    sql_literal,
    to_arrow,
)
from mlsd.spec import MonitoringSpec
from mlsd.tasks import LABEL, PER_CLASS, Task

_META = ["ts", "request_id", "instance", "latency_ms"]  # the log's columns every check reads


@dataclass
class Window:
    """Rows ``lo:hi`` of one model version's time-ordered predictions."""

    index: int
    lo: int
    hi: int
    start: float  # epoch seconds: window bounds (time) or first/last row (rows)
    end: float
    partial: bool = False
    by_rows: bool = False  # a window of rows: start and end are when its rows were served

    @property
    def n(self) -> int:
        return self.hi - self.lo

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "start": iso(self.start),
            "end": iso(self.end),
            "start_ts": self.start,
            "end_ts": self.end,
            "n": self.n,
            "partial": self.partial,
            "by": "rows" if self.by_rows else "time",
        }
        if self.by_rows:  # 1-based, in this model version's time-ordered predictions
            out["first_row"], out["last_row"] = self.lo + 1, self.hi
        return out


def iso(ts: float) -> str:
    """Epoch seconds as an ISO date-time in UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _clock(ts: float, *, date: bool, ms: bool) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return text + (f".{moment.microsecond // 1000:03d}" if ms else "")


def served_span(start_ts: float, end_ts: float) -> str:
    """When rows were served, as a person reads it: milliseconds when the span is under a
    minute (rows replayed within one second never read "11:32:50 to 11:32:50"), the date
    once when both ends share it, and "at" for a single instant."""
    ms = end_ts - start_ts < 60
    first = _clock(start_ts, date=True, ms=ms)
    if end_ts == start_ts:
        return f"at {first} UTC"
    same_day = (
        datetime.fromtimestamp(start_ts, UTC).date() == datetime.fromtimestamp(end_ts, UTC).date()
    )
    return f"{first} to {_clock(end_ts, date=not same_day, ms=ms)} UTC"


def window_span(w: Mapping[str, Any]) -> str:
    """Which rows or which time a window (its ``to_dict``) covers: a window of rows says its
    rows and when they were served (``rows 1–500, served 2026-01-05 11:32:50.104 to
    11:32:50.911 UTC``), a window of time its bounds."""
    if w.get("by") == "rows" and "first_row" in w:
        served = served_span(w["start_ts"], w["end_ts"])
        return f"rows {w['first_row']:,}–{w['last_row']:,}, served {served}"
    if "start_ts" in w and "end_ts" in w:
        return served_span(w["start_ts"], w["end_ts"]).removeprefix("at ")
    return f"{w.get('start')} to {w.get('end')}"


def window_text(m: MonitoringSpec) -> str:
    """The window setting as a person reads it (``1d``, ``1,000 rows``)."""
    return f"{m.window_rows:,} rows" if m.window_rows else str(m.window)


def cut_windows(
    ts: np.ndarray, *, seconds: float | None = None, rows: int | None = None
) -> list[Window]:
    """Windows over time-ordered timestamps ``ts``.

    Time windows are aligned to the epoch (the same rows give the same windows on every
    run) and empty ones are left out. Row windows are counted back from the latest row: the
    latest is full and the oldest may be partial.
    """
    n = len(ts)
    if n == 0:
        return []
    if rows is not None:
        ends = list(range(n, 0, -rows))[::-1]
        out = []
        for i, hi in enumerate(ends):
            lo = max(0, hi - rows)
            out.append(
                Window(i, lo, hi, float(ts[lo]), float(ts[hi - 1]), hi - lo < rows, by_rows=True)
            )
        return out
    assert seconds is not None
    keys = np.floor(ts / seconds).astype(np.int64)
    cuts = np.flatnonzero(np.diff(keys)) + 1
    bounds = [0, *cuts.tolist(), n]
    return [
        Window(i, lo, hi, float(keys[lo] * seconds), float((keys[lo] + 1) * seconds))
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]


def rejects_by_window(
    rejects: list[dict], windows: list[Window], *, by_rows: bool
) -> dict[int, list[dict]]:
    """The rejected requests of each window, by index: a time window takes those in its
    bounds; a row window those after the previous window's end up to its own, the latest
    also those after it."""
    reject_ts = np.array([r["ts"] for r in rejects], dtype=np.float64)
    ends = np.array([w.end for w in windows])
    if by_rows:
        slot = np.minimum(np.searchsorted(ends, reject_ts, side="left"), len(windows) - 1)
    else:
        starts = np.array([w.start for w in windows])
        slot = np.searchsorted(starts, reject_ts, side="right") - 1
        slot = np.where((slot >= 0) & (reject_ts < ends[np.maximum(slot, 0)]), slot, -1)
    out: dict[int, list[dict]] = {}
    for s, row in zip(slot.tolist(), rejects, strict=True):
        if s >= 0:
            out.setdefault(s, []).append(row)
    return out


# --------------------------------------------------------------------------- reading


def output_columns(task: Task, available: set[str]) -> dict[str, str]:
    """Output field -> its column in the log's view (``output_`` prefixed when an input
    field already had the name), for the task's outputs that were logged."""
    out = {}
    for field in task.outputs:
        for name in (f"output_{field.name}", field.name):
            if name in available:
                out[field.name] = name
                break
    return out


_NO_VIEW = object()


class LogRows:
    """The prediction log as the monitor reads it, through DuckDB in this process: every
    finished segment, or (``files``, ``feedback``) one block of them labelled from the
    whole log's feedback. :mod:`mlsd.engine.ray_monitoring` runs one per block on Ray
    actors and merges what they read. DuckDB's errors are LogErrors naming the folder."""

    def __init__(
        self,
        workspace: Any,
        *,
        files: Sequence[str | Path] | None = None,
        feedback: Any = None,
        threads: int | None = None,
    ):
        import duckdb

        self.workspace = workspace
        self.folder = log_folder(workspace)
        self.files = None if files is None else [Path(f) for f in files]
        self.feedback = feedback
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._inputs: Any = _NO_VIEW  # views are made by the first read (errors come there)
        self._skipped: list[dict[str, Any]] = []  # segments that did not parse, set aside

    def _view(self, inputs: Mapping[str, str] | None) -> None:
        import warnings

        from mlsd.predlog.reader import CorruptSegment

        if inputs == self._inputs:
            return
        if self.files and not any(f.exists() for f in self.files):
            raise LogError(
                f"the log's segments are not visible from here ({self.files[0]} is missing)",
                hint="on a cluster of several machines, put the workspace on storage every "
                "node mounts at the same path",
            )
        with log_errors(self.folder), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CorruptSegment)
            if self.files is None:
                duckdb_view(self.con, self.workspace, pinned=True, inputs=inputs)
            else:
                block_view(self.con, self.files, self.feedback, inputs=inputs)
        for w in caught:
            if isinstance(w.message, CorruptSegment):
                bad = w.message
                moved = None if bad.moved_to is None else str(bad.moved_to)
                self._skipped.append(
                    {"segment": str(bad.segment), "moved_to": moved, "reason": bad.reason}
                )
            else:  # not ours to swallow
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._inputs = inputs

    def versions(self) -> list[tuple[str, int, float]]:
        """(model version, rows, latest ts) of each version logged, the latest served last."""
        if self._inputs is _NO_VIEW:
            self._view(None)  # fields as inferred: enough to list the versions
        with log_errors(self.folder):
            rows = self.con.execute(
                "SELECT model_version, count(*), max(ts) FROM predictions"
                " WHERE model_version IS NOT NULL GROUP BY model_version ORDER BY max(ts)"
            ).fetchall()
        return [(str(v), int(n), float(ts)) for v, n, ts in rows]

    def columns(self, inputs: Mapping[str, str]) -> set[str]:
        """The columns of a read with the input fields typed as ``inputs`` says."""
        self._view(inputs)
        return {row[0] for row in self.con.execute("DESCRIBE predictions").fetchall()}

    def rows(self, version: str, inputs: Mapping[str, str], fields: Sequence[str]) -> Any:
        """:func:`read_rows` of ``version``, the input fields typed as ``inputs`` says;
        of ``fields``, those this log (or block) has."""
        present = self.columns(inputs)
        with log_errors(self.folder):
            return read_rows(self.con, version, [f for f in fields if f in present])

    def set_aside(self) -> list[dict[str, Any]]:
        """The segments read so far that did not parse and were moved to ``corrupt/``
        (:class:`mlsd.predlog.reader.CorruptSegment`): segment, moved_to, reason."""
        return self._skipped

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()


def read_rows(con: Any, version: str, fields: Iterable[str]) -> Any:
    """One model version's rows of the ``predictions`` view on ``con``
    (:func:`mlsd.predlog.reader.duckdb_view`) as an Arrow table ordered by serving time: the
    metadata, the columns ``fields`` and ``true_label`` (null where no feedback came)."""
    select = ", ".join(f"p.{sql_identifier(c)}" for c in dict.fromkeys([*_META, *fields]))
    v = sql_literal(version)
    return to_arrow(
        con,
        f"SELECT {select}, l.true_label FROM predictions p LEFT JOIN ("
        f"  SELECT request_id, instance, true_label FROM labelled"
        f"  WHERE model_version = {v}) l USING (request_id, instance)"
        f" WHERE p.model_version = {v}"
        f" ORDER BY p.ts, p.request_id, p.instance",
    )


def numbers(column: Any) -> np.ndarray:
    """A pyarrow column as float64 (nulls and unreadable values as NaN)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    # decimals too: a log read without its signature's types has them for integers
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
    ):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return quality._as_float(column.to_pylist())


def drift_values(column: Any, kind: str) -> Any:
    """A pyarrow column as the drift tests take it: float64 for numbers, else the Arrow
    column itself (categories are counted on its distinct values)."""
    if kind == "numeric":
        return numbers(column)
    return column


def watched_values(part: Any, task: Task, outputs: Mapping[str, str]) -> np.ndarray | None:
    """The output compared with the reference (``Task.watched_output``): labels as objects,
    numbers as float64; None when it was not logged."""
    field = task.watched_output
    name = outputs.get(field.name)
    if name is None:
        return None
    if field.kind == LABEL:
        return np.asarray(part.column(name).to_pylist(), dtype=object)
    return numbers(part.column(name))


def per_class_output(task: Task) -> str | None:
    """The task's output with one value per class (multiclass probabilities), if any."""
    return next((f.name for f in task.outputs if f.kind == PER_CLASS), None)


def probabilities(part: Any, column: str | None, classes: list | None) -> np.ndarray | None:
    """A per-class output column as a matrix, one column per class in the order of
    ``classes`` (NaN where missing); None when it was not logged or there are no classes."""
    if column is None or not classes:
        return None
    rows = part.column(column).to_pylist()
    keys = [str(c) for c in classes]
    return np.array(
        [[np.nan if r is None or r.get(k) is None else r[k] for k in keys] for r in rows]
    )

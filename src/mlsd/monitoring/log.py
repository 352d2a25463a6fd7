"""The durable prediction and feedback log: what the server answered, and what was true.

Layout, under ``<workspace>/log/<system>/`` (several systems may share a workspace; each
has its own log), or ``<folder>/log/`` when the functions are given a plain folder::

    predictions/20261123T181500.123456-4242-000001.jsonl   finished segment (JSON Lines)
    predictions/.20261123T181501.130001-4242-000002.jsonl.tmp   the segment being written
    feedback/...                                            the same for true labels
    rejects/...                                             requests refused by validation

The WRITER (:class:`LogWriter`, :class:`PredictionLog`) runs inside the HTTP server and uses
the standard library and orjson only: no pandas, no pyarrow, no duckdb (pyarrow imports pandas lazily in
many calls). ``log()`` only encodes the record and puts it on a bounded queue, so the request
path never waits for a disk; when the queue is full the row is counted in
``stats["dropped"]``. A writer
thread appends rows to a hidden ``.tmp`` segment and, at least every ``flush_s`` seconds
while it holds rows, flushes, fsyncs and renames it to its final name, then fsyncs the
folder. A finished segment therefore only ever appears whole, by rename; ``kill -9`` loses
at most the rows of the last ``flush_s`` or so (those still queued or in the ``.tmp`` file).
A new writer calls :func:`recover`, which salvages the complete lines of ``.tmp`` files left
by dead processes into finished segments.

The READER (:func:`read_predictions`, :func:`read_feedback`, :func:`labelled`,
:func:`duckdb_view`) runs offline, for monitoring and retraining. It reads finished segments
only, with DuckDB, and imports it (and pyarrow) inside the functions that need them. Given
the package signature's input types (``inputs=``), it reads each input field with its type
instead of the one DuckDB infers from the JSON.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mlsd.errors import MlsdError
from mlsd.timestamps import epoch
from mlsd.workspace import Workspace, atomic_write_bytes

if TYPE_CHECKING:  # the writer side must not import these, even indirectly
    import duckdb
    import pyarrow

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
REJECTS = "rejects"  # validation failures: what monitoring counts by field

# A segment holds at most this many rows: DuckDB samples 20,480 rows per file to infer its
# schema, so a whole segment is always inspected and a late new field is never missed.
SEGMENT_MAX_ROWS = 20_000
STALE_S = 3600.0  # a .tmp untouched this long is abandoned even if its pid looks alive
KNOWN_CAPACITY = 1_000_000

_KIND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_TMP_RE = re.compile(r"\.(?P<segment>\d{8}T\d{6}\.\d{6}-(?P<pid>\d+)-\d+)\.jsonl\.tmp")
_SEQ = itertools.count(1)  # next() on a count is atomic under the GIL
_ACTIVE: set[str] = set()  # .tmp files open in this process: recover() must leave them alone
_ACTIVE_LOCK = threading.Lock()
_STOP = object()


class LogError(MlsdError):
    """The prediction log cannot be written or read, or a reader was asked something invalid."""

    headline = "prediction log error"


# --------------------------------------------------------------------------- writer side


def _default(obj: Any) -> Any:
    """JSON for what ``json`` does not know: numpy values (duck-typed), dates, sets, else str."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def _finite(obj: Any) -> Any:
    """A copy of ``obj`` with NaN/inf as None and keys as str (strict JSON for every reader)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    return obj


def _encode(record: Any) -> bytes | None:
    """One JSON line (UTF-8; JSON escapes newlines inside strings), or None if not encodable.

    orjson first: several times faster than ``json``, and this runs for every prediction on
    the request path. It writes NaN/inf as null, as the ``_finite`` fallback does.
    """
    try:
        return orjson.dumps(record, default=_default, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        pass
    try:
        text = json.dumps(record, **_JSON)
    except (TypeError, ValueError, RecursionError):  # NaN/inf, odd keys: clean, then retry
        try:
            text = json.dumps(_finite(record), **_JSON)
        except (TypeError, ValueError, RecursionError):
            return None
    return text.encode("utf-8") + b"\n"


# the fallback writes what orjson writes, so _needle finds rows from either
_JSON = {"allow_nan": False, "default": _default, "ensure_ascii": False, "separators": (",", ":")}


def _segment_name() -> str:
    """A segment name that sorts by time: UTC stamp to the microsecond, pid, sequence."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S.%f}-{os.getpid()}-{next(_SEQ):06d}"


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C there: rely on the file's age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def _salvage(tmp: Path, final: Path) -> tuple[int, int]:
    """Turn ``tmp``'s complete, parseable lines into the finished segment ``final``.

    Returns (rows kept, lines dropped). The writer hands whole rows to the OS, so a kill -9
    leaves whole lines; a full disk may leave a truncated last line and a power cut garbage:
    both are dropped.
    """
    data = tmp.read_bytes()
    end = data.rfind(b"\n") + 1
    kept: list[bytes] = []
    dropped = 1 if data[end:].strip() else 0
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if ok:
            kept.append(line + b"\n")
        else:
            dropped += 1
    if kept:  # written whole under a hidden name, then renamed: same guarantee as the writer
        atomic_write_bytes(final, b"".join(kept))
    tmp.unlink(missing_ok=True)
    _fsync_dir(final.parent)
    return len(kept), dropped


def recover(directory: str | Path, *, stale_s: float = STALE_S) -> dict[str, int]:
    """Salvage the ``.tmp`` segments that dead writers left in ``directory``.

    A ``.tmp`` file is abandoned when the pid in its name is not running, or is this process
    but no writer here has it open (a restarted container often reuses the pid), or it has
    not been touched for ``stale_s`` seconds. Its complete lines become a finished segment
    under the name it would have had; a truncated last line is dropped. Returns counts:
    ``files``, ``rows`` (salvaged) and ``dropped_lines``.
    """
    directory = Path(directory)
    out = {"files": 0, "rows": 0, "dropped_lines": 0}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        match = _TMP_RE.fullmatch(entry.name)
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:  # another process salvaged it meanwhile
            continue
        if match is None:
            # leftovers of an interrupted salvage (atomic_write_bytes' hidden temp files)
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and age > stale_s:
                path.unlink(missing_ok=True)
            continue
        with _ACTIVE_LOCK:
            if str(path) in _ACTIVE:
                continue
        pid = int(match["pid"])
        if pid != os.getpid() and age <= stale_s and _pid_alive(pid):
            continue
        try:
            rows, dropped = _salvage(path, directory / f"{match['segment']}.jsonl")
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("cannot salvage %s: %s", path, exc)
            continue
        out["files"] += 1
        out["rows"] += rows
        out["dropped_lines"] += dropped
    if out["files"]:
        logger.info("recovered %s in %s", out, directory)
    return out


class LogWriter:
    """Append JSON records to time-ordered JSON Lines segments, off the caller's thread.

    ``log()`` encodes the record (orjson, about 2 µs) and appends the line to a deque: no
    lock and no wake-up of the writer. Encoding here rather than on the writer keeps the
    writer's share of the GIL to a few joins a second: a writer encoding row by row fought
    the request path for the GIL and cost several times its own CPU in hand-offs. A full
    queue (``max_queue`` lines waiting) drops the record and counts it. A writer thread wakes
    every ``tick`` seconds, takes everything waiting, appends it in one write to
    ``<folder>/<kind>/.<segment>.jsonl.tmp`` and renames that to ``<segment>.jsonl`` at least
    every ``flush_s`` seconds while it holds rows (or at ``max_rows``), after flush and
    fsync. Standard library only. Create it after any fork: the thread does not survive one.
    """

    def __init__(
        self,
        folder: str | Path,
        kind: str,
        *,
        flush_s: float = 1.0,
        max_queue: int = 100_000,
        max_rows: int = SEGMENT_MAX_ROWS,
    ):
        if not _KIND_RE.fullmatch(kind):
            raise ValueError(f"log kind {kind!r} must be letters, digits, '_' or '-'")
        if not flush_s > 0 or max_queue < 1 or max_rows < 1:
            raise ValueError("flush_s must be > 0, max_queue and max_rows >= 1")
        self.kind = kind
        self.directory = Path(folder) / kind
        self.flush_s = float(flush_s)
        self.max_rows = int(max_rows)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(
                f"cannot create the log folder {self.directory}: {exc.strerror}",
                hint="point the workspace (MLSD_HOME or `workspace:`) at a writable folder",
            ) from exc
        self._pending: collections.deque[Any] = collections.deque()
        self._max_queue = int(max_queue)
        self._wake = threading.Event()  # flush() and close() do not wait for the next tick
        self._tick = min(0.05, self.flush_s / 10)
        self._count_lock = threading.Lock()  # only the rare drop and error paths take it
        self._control_lock = threading.Lock()  # flush() and close() against each other
        self._closed = False
        self._written = self._dropped = self._segments = self._errors = 0
        # the open segment, touched by the writer thread only
        self._file: Any = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._rows = 0
        self._deadline = 0.0
        self.recovered = recover(self.directory)
        self._thread = threading.Thread(target=self._run, name=f"mlsd-log-{kind}", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a normal interpreter exit still drains the queue

    # -- caller side

    def log(self, record: dict) -> None:
        """Queue one JSON-serialisable record; never blocks (a full queue drops and counts)."""
        if self._closed or len(self._pending) >= self._max_queue:
            self._drop()
            return
        line = _encode(record)
        if line is None:
            with self._count_lock:
                self._errors += 1
            logger.error("%s log: record is not JSON-serialisable, skipped", self.kind)
            return
        self._pending.append(line)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record queued so far is in a finished segment.

        Returns False if ``timeout`` passed first. Meant for tests and shutdown, not requests.
        """
        with self._control_lock:
            if self._closed:
                return True
            done = threading.Event()
            if not self._put_control(done):
                return False
        return done.wait(timeout)

    def close(self) -> None:
        """Stop accepting, drain the queue, finish the segment, join the thread. Idempotent."""
        with self._control_lock:
            if self._closed:
                return
            self._closed = True
            self._put_control(_STOP)
        self._thread.join()
        while self._pending:  # rows that slipped in behind the stop token
            item = self._pending.popleft()
            if isinstance(item, threading.Event):
                item.set()
            elif item is not _STOP:
                self._drop()
        atexit.unregister(self.close)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    @property
    def stats(self) -> dict[str, int]:
        """Rows ``written`` to finished segments, ``dropped``, ``segments`` finished,
        ``errors`` (unencodable records, I/O failures) and rows ``queued`` now."""
        return {
            "written": self._written,
            "dropped": self._dropped,
            "segments": self._segments,
            "errors": self._errors,
            "queued": len(self._pending),
        }

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogWriter({str(self.directory)!r}, flush_s={self.flush_s})"

    def _drop(self) -> None:
        with self._count_lock:
            self._dropped += 1

    def _put_control(self, item: Any) -> bool:
        """Queue a control token (never refused for lack of room) and wake the writer."""
        if not self._thread.is_alive():
            return False
        self._pending.append(item)
        self._wake.set()
        return True

    # -- writer thread

    def _run(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                due = self._tick if self._file is None else self._deadline - time.monotonic()
                self._wake.wait(max(0.0, min(self._tick, due)))
                self._wake.clear()
            lines: list[bytes] = []
            while pending:
                item = pending.popleft()
                if isinstance(item, bytes):
                    lines.append(item)
                    if self._rows + len(lines) >= self.max_rows:
                        self._write(lines)
                        self._finish()
                        lines = []
                    continue
                self._write(lines)  # a control token: everything before it goes first
                lines = []
                self._finish()
                if item is _STOP:
                    return
                item.set()  # flush(): all before it is in a finished segment
            self._write(lines)
            if self._file is not None and time.monotonic() >= self._deadline:
                self._finish()

    def _write(self, lines: list[bytes]) -> None:
        """Append encoded lines to the open segment (opened on demand), in one write."""
        if not lines:
            return
        try:
            if self._file is None:
                self._open()
            self._file.write(b"".join(lines))
            self._rows += len(lines)
        except Exception as exc:  # a disk error must not kill the thread: keep what is whole
            self._fail(exc)

    def _open(self) -> None:
        name = _segment_name()
        self._tmp = self.directory / f".{name}.jsonl.tmp"
        self._final = self.directory / f"{name}.jsonl"
        with _ACTIVE_LOCK:
            _ACTIVE.add(str(self._tmp))
        self._rows = 0
        self._deadline = time.monotonic() + self.flush_s
        self.directory.mkdir(parents=True, exist_ok=True)  # survive a retention job's rm -r
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - held open across many rows

    def _finish(self) -> None:
        """Flush, fsync and rename the open segment to its final name."""
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self._final)
            _fsync_dir(self.directory)
        except Exception as exc:
            self._fail(exc)
            return
        self._written += self._rows
        self._segments += 1
        self._forget()

    def _fail(self, exc: Exception) -> None:
        """An I/O error: close the segment and salvage its complete lines if possible."""
        with self._count_lock:
            self._errors += 1
        logger.error("%s log: cannot write %s: %s", self.kind, self._tmp, exc)
        with contextlib.suppress(Exception):
            self._file.close()
        try:
            if self._tmp is not None and self._tmp.exists():
                rows, _ = _salvage(self._tmp, self._final)
                self._written += rows
                self._segments += 1 if rows else 0
        except Exception as exc2:  # leave the .tmp for a later recover()
            logger.error("%s log: cannot salvage %s: %s", self.kind, self._tmp, exc2)
        self._forget()

    def _forget(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(self._tmp))
        self._file = self._tmp = self._final = None
        self._rows = 0


_SECOND: list = [None, ""]  # the last whole second formatted, and its text


def _iso(ts: float) -> str:
    """UTC ISO 8601 to the microsecond, rounded as ``datetime.fromtimestamp`` rounds.

    It runs for every request: strftime once per second, not once per call."""
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:  # before 1970
        whole, us = whole - 1, us + 1_000_000
    second, text = _SECOND
    if whole != second:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND[:] = [whole, text]  # one assignment: other threads see old or new, whole
    return f"{text}.{us:06d}Z"


def _needle(request_id: str) -> bytes:
    """How a row of ``request_id`` starts on disk (request_id is always the first key)."""
    return b'{"request_id":' + orjson.dumps(request_id) + b","


class PredictionLog:
    """The writers a prediction server needs: ``predictions``, ``feedback`` and ``rejects``
    (requests refused by validation) in the workspace's :func:`log_folder`. Standard library
    only, like :class:`LogWriter`.

    One prediction row per instance of a request. On disk a row is::

        {"request_id": "r1", "instance": 0, "ts": 1763921700.12, "time": "2025-...Z",
         "model_version": "3", "latency_ms": 4.2, "inputs": {...}, "output": ...,
         "flags": [...]}            # flags only when there are some
    """

    def __init__(
        self,
        workspace_root: str | Path | Workspace,
        *,
        flush_s: float = 1.0,
        max_queue: int = 100_000,
        known_capacity: int = KNOWN_CAPACITY,
    ):
        self.folder = log_folder(workspace_root)
        self._predictions = LogWriter(
            self.folder, PREDICTIONS, flush_s=flush_s, max_queue=max_queue
        )
        self._feedback = LogWriter(self.folder, FEEDBACK, flush_s=flush_s, max_queue=max_queue)
        self._rejects = LogWriter(self.folder, REJECTS, flush_s=flush_s, max_queue=max_queue)
        # recent request ids, oldest first; ~120 bytes + the id's length each
        self._known: dict[str, None] = {}
        self._known_capacity = int(known_capacity)
        self._known_lock = threading.Lock()

    def prediction(
        self,
        *,
        request_id: str,
        model_version: str | int,
        inputs: list[dict],
        outputs: list,
        latency_ms: float,
        ts: float | None = None,
        flags: list | None = None,
        positions: list[int] | None = None,
    ) -> None:
        """Log one request: one row per instance, ``inputs[i]`` with ``outputs[i]``.

        ``ts`` is UTC epoch seconds (default: now). ``flags`` is either one list per instance
        (``len(flags) == len(inputs)`` and every item a list or None) or one list that applies
        to every instance, e.g. out-of-range fields accepted under the "flag" policy.
        ``positions`` are the instances' places in the request (default 0, 1, ...): a request
        answered in part logs its valid instances under their own numbers, which feedback
        refers to.
        """
        if len(outputs) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        ts = time.time() if ts is None else float(ts)
        common = {"ts": ts, "time": _iso(ts), "model_version": str(model_version)}
        latency = float(latency_ms)
        per_instance = (
            flags is not None
            and len(flags) == len(inputs)
            and all(f is None or isinstance(f, list | tuple) for f in flags)
        )
        for i, (fields, output) in enumerate(zip(inputs, outputs, strict=True)):
            row = {"request_id": request_id, "instance": positions[i] if positions else i}
            row.update(common)
            row["latency_ms"] = latency
            row["inputs"] = fields
            row["output"] = output
            instance_flags = flags[i] if per_instance else flags
            if instance_flags:
                row["flags"] = list(instance_flags)
            self._predictions.log(row)
        self._remember(request_id)

    def feedback(
        self,
        *,
        request_id: str,
        label: Any,
        instance: int | None = None,
        ts: float | None = None,
    ) -> None:
        """Log the true ``label`` of a request (of one ``instance``, or of all when None)."""
        ts = time.time() if ts is None else float(ts)
        row: dict[str, Any] = {"request_id": request_id}
        if instance is not None:
            row["instance"] = int(instance)
        row.update(label=label, ts=ts, time=_iso(ts))
        self._feedback.log(row)

    def rejected(
        self,
        *,
        request_id: str,
        model_version: str | int,
        problems: list[dict],
        instances: int,
        ts: float | None = None,
    ) -> None:
        """Log a request refused by validation: one row per problem (``instance``, ``field``,
        ``problem``), each with the request's number of ``instances`` (all were refused)."""
        ts = time.time() if ts is None else float(ts)
        common = {"ts": ts, "time": _iso(ts), "model_version": str(model_version)}
        for p in problems:
            self._rejects.log(
                {
                    "request_id": request_id,
                    **common,
                    "instances": int(instances),
                    "instance": p.get("instance"),
                    "field": None if p.get("field") is None else str(p.get("field")),
                    "problem": str(p.get("problem")),
                }
            )

    def known(self, request_id: str, *, scan: bool = True) -> bool:
        """Whether predictions for ``request_id`` were logged.

        Memory first (ids this process logged, the last ``known_capacity``); then, with
        ``scan``, a byte search of the finished segments, newest first (GB/s, no parsing).
        """
        if request_id in self._known:
            return True
        if not scan:
            return False
        needle = _needle(request_id)
        for path in reversed(_segment_files(self._predictions.directory)):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if data.startswith(needle) or b"\n" + needle in data:
                self._remember(request_id)
                return True
        return False

    def _remember(self, request_id: str) -> None:
        # One dict store per request (atomic under the GIL, so no lock); the oldest ids go in
        # bulk once the dict holds a sixteenth more than its capacity.
        known = self._known
        known[request_id] = None
        excess = len(known) - self._known_capacity
        if excess > self._known_capacity >> 4:
            with self._known_lock:
                for old in list(itertools.islice(known, excess)):  # one C call: no switch
                    known.pop(old, None)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged so far is in finished segments."""
        ok = self._predictions.flush(timeout)
        ok = self._rejects.flush(timeout) and ok
        return self._feedback.flush(timeout) and ok

    def close(self) -> None:
        """Drain the writers and finish their segments. Idempotent."""
        self._predictions.close()
        self._feedback.close()
        self._rejects.close()

    @property
    def recovered(self) -> dict[str, dict[str, int]]:
        """What :func:`recover` salvaged when the writers started, per kind."""
        return {
            PREDICTIONS: self._predictions.recovered,
            FEEDBACK: self._feedback.recovered,
            REJECTS: self._rejects.recovered,
        }

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """The writers' counters: ``{"predictions": {...}, "feedback": {...},
        "rejects": {...}}``."""
        return {
            PREDICTIONS: self._predictions.stats,
            FEEDBACK: self._feedback.stats,
            REJECTS: self._rejects.stats,
        }

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _segment_files(directory: Path) -> list[Path]:
    """Finished segments of one kind, oldest first (names sort by time)."""
    try:
        names = [
            e.name
            for e in os.scandir(directory)
            if e.name.endswith(".jsonl") and not e.name.startswith(".")
        ]
    except FileNotFoundError:
        return []
    return [directory / n for n in sorted(names)]


# --------------------------------------------------------------------------- reader side

_PREDICTION_META = ["request_id", "instance", "ts", "time", "model_version", "latency_ms", "flags"]


def input_column(name: str) -> str:
    """The column of input field ``name`` in a read of the log: ``input_`` prefixed when a
    column of the log's own has the name (a feature called ``time`` is ``input_time``)."""
    return f"input_{name}" if name.lower() in {c.lower() for c in _PREDICTION_META} else name


_EMPTY_PREDICTIONS = (
    "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS instance, NULL::DOUBLE AS ts, "
    "NULL::TIMESTAMPTZ AS time, NULL::VARCHAR AS model_version, NULL::DOUBLE AS latency_ms, "
    "NULL::VARCHAR[] AS flags WHERE false"
)
_EMPTY_FEEDBACK = (
    "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS instance, NULL::VARCHAR AS label, "
    "NULL::DOUBLE AS ts, NULL::TIMESTAMPTZ AS time WHERE false"
)


def log_folder(workspace_root: str | Path | Workspace) -> Path:
    """Where the log lives: the workspace's own (per system) for a :class:`Workspace`,
    ``<folder>/log`` for a plain folder."""
    if not isinstance(workspace_root, Workspace):
        workspace_root = Workspace(workspace_root)
    return workspace_root.log


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, Any]:
    """Column name -> DuckDB type of ``source``, binding it once (inference reads the files)."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return {row[0]: con.type(row[1]) for row in rows}


# Finished segments never change (written whole, by rename): the column types inferred for
# a list of them hold as long as the list does, and a second read of the same segments (the
# monitor's view per model version) skips the costly inference. A few lists are kept.
_INFERRED: collections.OrderedDict[bytes, dict[str, str]] = collections.OrderedDict()
_INFERRED_KEEP = 8
_INFERRED_LOCK = threading.Lock()


def _inferred(con: duckdb.DuckDBPyConnection, files: list[Path], source: str) -> dict[str, Any]:
    """:func:`_columns` of ``source`` (a read of ``files``), remembered by the files' names,
    sizes and modification times."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    try:
        for f in files:
            stat = f.stat()
            digest.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except FileNotFoundError:  # removed meanwhile: the read itself will say so
        return _columns(con, source)
    key = digest.digest()
    with _INFERRED_LOCK:
        known = _INFERRED.get(key)
    if known is None:
        known = {name: str(kind) for name, kind in _columns(con, source).items()}
        with _INFERRED_LOCK:
            _INFERRED[key] = known
            while len(_INFERRED) > _INFERRED_KEEP:
                _INFERRED.popitem(last=False)
    return {name: con.type(kind) for name, kind in known.items()}


def _raw_inputs(
    con: duckdb.DuckDBPyConnection, columns: dict[str, Any], names: Collection[str]
) -> dict[str, Any]:
    """``columns`` with the input fields ``names`` typed JSON: read as logged, not guessed."""
    kind = columns.get("inputs")
    if not names or kind is None or kind.id != "struct":
        return columns
    fields = ", ".join(
        f"{_ident(field)} {'JSON' if field in names else child}" for field, child in kind.children
    )
    return {**columns, "inputs": con.type(f"STRUCT({fields})")}


def _scan(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    *,
    pinned: bool,
    raw: Collection[str] = (),
) -> tuple[str, dict[str, Any]] | None:
    """A ``read_json`` over the finished segments (``*.jsonl``: never a ``.tmp`` file) and
    the column types DuckDB infers there; None when there is no segment yet.

    ``pinned`` (one-shot reads): the files listed now, read a second time with the inferred
    columns given explicitly, so DuckDB infers once (the costly part: each file is sampled
    whole) and a segment finished in between cannot surprise the read; the input fields
    named in ``raw`` are read as JSON. Else (views): the glob, inferred on every query, so
    new segments and new fields are always readable.
    """
    files = _segment_files(directory)
    if not files:
        return None
    if pinned:
        paths = "[" + ", ".join(_literal(str(f)) for f in files) + "]"
    else:
        paths = _literal(str(directory / "*.jsonl"))
    # every field everywhere becomes a column: no MAP inference for rare or many keys
    auto = (
        f"read_json({paths}, format='newline_delimited', union_by_name=true, "
        "field_appearance_threshold=0, map_inference_threshold=-1)"
    )
    if not pinned:
        return auto, _columns(con, auto)
    columns = _raw_inputs(con, _inferred(con, files, auto), raw)
    # `time` is recomputed from ts: not parsing it saves a timestamp detection per row
    spec = ", ".join(
        f"{_literal(k)}: {_literal(str(t))}" for k, t in columns.items() if k != "time"
    )
    return f"read_json({paths}, format='newline_delimited', columns={{{spec}}})", columns


def _meta(columns: dict[str, Any], name: str, sql_type: str) -> str:
    if name not in columns:
        return f"NULL::{sql_type} AS {name}"
    return f"CAST({_ident(name)} AS {sql_type}) AS {name}"


# -- inputs read as the model reads them (the ``inputs`` keyword of the readers)
#
# DuckDB infers a JSON field's type from its values: integers of both signs become HUGEINT
# (Python Decimal), ints and floats DOUBLE, anything mixed JSON, ISO strings timestamps. A
# field whose signature type is known is read from its JSON text (the token as logged) with
# that type instead. Each reader below takes the field's JSON ``j``, whose text is a string
# (starting with '"'), true, false, a number, an array or an object, and gives NULL for
# what is not a value of its type.

INPUT_TYPES = ("numeric", "categorical", "boolean", "datetime")  # a signature's input types
_SPACE = " \t\n\r\x0b\x0c"  # what str.strip() takes off a boolean word


def input_types(signature: Mapping[str, Any]) -> dict[str, str]:
    """Input field -> type (numeric, categorical, boolean or datetime) of a package's
    signature: what the readers' ``inputs`` keyword takes."""
    return {item["name"]: item["type"] for item in signature.get("inputs", [])}


def _number(j: str) -> str:
    """A JSON number as DOUBLE, rounded as Python's float() rounds its text; a string or a
    boolean is not a number (the server refuses them for one)."""
    return f"TRY_CAST(CAST({j} AS VARCHAR) AS DOUBLE)"


def _words(words: Collection[str]) -> str:
    return "(" + ", ".join(_literal(w) for w in sorted(words)) + ")"


def _boolean(j: str) -> str:
    """true/false, a number (non-zero is true) or a word (yes, no, 1, 0...) as BOOLEAN, as
    the model's features read them (:mod:`mlsd.features.transforms`)."""
    from mlsd.values import FALSE_WORDS, TRUE_WORDS

    text = f"CAST({j} AS VARCHAR)"
    word = f"lower(trim({j} ->> '$', {_literal(_SPACE)}))"
    return (
        f"CASE WHEN {text} IN ('true', 'false') THEN {text} = 'true' "
        f"WHEN starts_with({text}, '\"') THEN CASE WHEN {word} IN {_words(TRUE_WORDS)} THEN true "
        f"WHEN {word} IN {_words(FALSE_WORDS)} THEN false END "
        f"ELSE {_number(j)} <> 0 END"
    )


def _category(j: str) -> str:
    """A category as its key (:func:`mlsd.features.transforms.category_key`, as the
    training profile counts them): 1, 1.0 and "1" are '1', true is 'True', "" is NULL."""
    text = f"CAST({j} AS VARCHAR)"
    d = _number(j)
    # an integer is its own text (exact at any size); an integral float prints as an
    # integer (within HUGEINT: no category is larger), others as the shortest text that
    # reads back the same, as Python's repr does
    number = (
        f"CASE WHEN NOT isfinite({d}) THEN NULL WHEN {d} = 0 THEN '0' "
        f"WHEN abs({d}) < 1e38 AND {d} = trunc({d}) THEN CAST(CAST({d} AS HUGEINT) AS VARCHAR) "
        f"ELSE CAST({d} AS VARCHAR) END"
    )
    return (
        f"CASE WHEN starts_with({text}, '\"') THEN NULLIF({j} ->> '$', '') "
        f"WHEN {text} IN ('true', 'false') THEN CASE {text} WHEN 'true' THEN 'True' "
        "ELSE 'False' END "
        f"WHEN regexp_full_match({text}, '-?[0-9]+') THEN CASE {text} WHEN '-0' THEN '0' "
        f"ELSE {text} END "
        f"ELSE {number} END"
    )


def _text(j: str) -> str:
    """A date-time as the text sent (the server accepts only ISO 8601 strings)."""
    return f"CASE WHEN starts_with(CAST({j} AS VARCHAR), '\"') THEN {j} ->> '$' END"


_READERS = {"numeric": _number, "categorical": _category, "boolean": _boolean, "datetime": _text}


def _checked(inputs: Mapping[str, str] | None) -> dict[str, str]:
    """The ``inputs`` keyword as a dict, every type known."""
    inputs = dict(inputs or {})
    unknown = {name: kind for name, kind in inputs.items() if kind not in _READERS}
    if unknown:
        raise LogError(
            f"unknown input types {unknown} given to the log reader",
            hint=f"give each field one of {', '.join(INPUT_TYPES)}, as a package signature "
            "declares them (input_types(signature))",
        )
    return inputs


def _typed(value: str, kind: str) -> str:
    """SQL reading the input ``value`` as signature type ``kind``. ``value`` is the field's
    JSON in a pinned read; a live view's glob is inferred on every query, so there it may
    be any type: to_json() gives its JSON back (and leaves JSON as it is)."""
    return _READERS[kind](f"to_json({value})")


def _predictions_sql(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    *,
    pinned: bool,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """A SELECT of flat prediction rows: metadata, one column per input field and per
    output key (``input_``/``output_`` prefixed when a name is already taken); the fields
    of ``inputs`` read with their signature type."""
    types = _checked(inputs)
    scan = _scan(con, directory, pinned=pinned, raw=types)
    if scan is None:
        return _EMPTY_PREDICTIONS
    source, columns = scan
    taken = {c.lower() for c in _PREDICTION_META}
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "instance", "BIGINT"),
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time" if "ts" in columns else "NULL AS time",
        _meta(columns, "model_version", "VARCHAR"),
    ]
    for part, prefix in (("inputs", "input_"), ("output", "output_")):
        kind = columns.get(part)
        if kind is None:
            continue
        if kind.id != "struct":  # a scalar or list output, or mixed shapes: keep as is
            alias = part if part.lower() not in taken else prefix + part
            items.append(f"{_ident(part)} AS {_ident(alias)}")
            taken.add(alias.lower())
            continue
        for field, _ in kind.children:
            alias = field if field.lower() not in taken else prefix + field
            taken.add(alias.lower())
            value = f"struct_extract({_ident(part)}, {_literal(field)})"
            if part == "inputs" and field in types:
                value = _typed(value, types[field])
            items.append(f"{value} AS {_ident(alias)}")
    items.append(_meta(columns, "latency_ms", "DOUBLE"))
    items.append(_ident("flags") if "flags" in columns else "NULL::VARCHAR[] AS flags")
    return f"SELECT {', '.join(items)} FROM {source}"


def _feedback_sql(con: duckdb.DuckDBPyConnection, directory: Path, *, pinned: bool) -> str:
    """A SELECT of feedback rows: request_id, instance, label, ts, time."""
    scan = _scan(con, directory, pinned=pinned)
    if scan is None:
        return _EMPTY_FEEDBACK
    source, columns = scan
    label = _ident("label") if "label" in columns else "NULL::VARCHAR AS label"
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "instance", "BIGINT"),
        label,
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time",
    ]
    return f"SELECT {', '.join(items)} FROM {source}"


def _labelled_sql(predictions: str, feedback: str) -> str:
    """Predictions with the latest applicable label: feedback for their (request_id,
    instance), or for the whole request (instance NULL); on a tie in time the specific one."""
    return f"""
        WITH p AS ({predictions}), f AS ({feedback}),
        m AS (
            SELECT k.request_id, k.instance, f.label AS true_label, f.ts AS label_ts,
                   row_number() OVER (
                       PARTITION BY k.request_id, k.instance
                       ORDER BY f.ts DESC NULLS LAST, (f.instance IS NULL)
                   ) AS rank
            FROM (SELECT DISTINCT request_id, instance FROM p) AS k
            JOIN f ON f.request_id = k.request_id
                  AND (f.instance IS NULL OR f.instance = k.instance)
        )
        SELECT p.*, m.true_label, m.label_ts
        FROM p JOIN m ON p.request_id = m.request_id AND p.instance = m.instance
        WHERE m.rank = 1"""


def _epoch(value: float | int | str | datetime | None, name: str) -> float | None:
    """Epoch seconds from a number, a datetime or an ISO string (naive means UTC)."""
    if value is None:
        return None
    try:
        return epoch(value)
    except ValueError as exc:
        raise LogError(
            f"{name}={value!r} is not a time",
            hint="pass epoch seconds, a datetime or an ISO string such as '2026-05-01T12:00'",
        ) from exc


def _window(
    sql: str,
    start: float | str | datetime | None,
    end: float | str | datetime | None,
    model_version: str | int | None,
) -> str:
    """``sql`` restricted to ``start <= ts < end`` and one model version (values inlined:
    floats from float(), the version as an escaped literal)."""
    conditions = []
    if (lo := _epoch(start, "start")) is not None:
        conditions.append(f"ts >= {float(lo)!r}")
    if (hi := _epoch(end, "end")) is not None:
        conditions.append(f"ts < {float(hi)!r}")
    if model_version is not None:
        conditions.append(f"model_version = {_literal(str(model_version))}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM ({sql}){where}"


@contextlib.contextmanager
def _reading(folder: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private DuckDB connection; its errors become a LogError naming the folder."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # `time` columns come out as UTC timestamps
        yield con
    except duckdb.Error as exc:
        raise LogError(
            f"cannot read the log in {folder}: {exc}",
            hint="segments are written whole by mlsd; move aside any *.jsonl file that was "
            "edited or copied in by hand",
        ) from exc
    finally:
        con.close()


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pyarrow.Table:
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table  # duckdb 2 / 1
    return fetch()


def read_predictions(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
    inputs: Mapping[str, str] | None = None,
) -> pyarrow.Table:
    """The logged predictions, one row per instance, from finished segments only.

    Columns: request_id, instance, ts (UTC epoch seconds), time (UTC timestamp),
    model_version, one column per input field, the output (one column per key of dict
    outputs, else ``output``), latency_ms, flags. ``start <= ts < end`` and
    ``model_version`` filter the rows. Sorted by ts, request_id, instance.

    ``inputs`` (field -> signature type, :func:`input_types`) reads those input fields as the
    model reads them rather than as DuckDB guesses from the JSON: numeric as float64 (a JSON
    number; NULL otherwise), boolean as bool, categorical as the category's key (text:
    1, 1.0 and "1" are '1'), datetime as the text sent; a value that is not one of its type
    reads as null. Without it, each field has the type DuckDB infers (integers of both signs
    come back as Decimal).
    """
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _predictions_sql(con, folder / PREDICTIONS, pinned=True, inputs=inputs)
        sql = _window(sql, start, end, model_version)
        return _arrow(con, f"{sql} ORDER BY ts, request_id, instance")


def read_feedback(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
) -> pyarrow.Table:
    """The logged feedback: request_id, instance (null = every instance), label, ts, time;
    ``start <= ts < end`` on the feedback's own time. Sorted by ts."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _feedback_sql(con, folder / FEEDBACK, pinned=True)
        sql = _window(sql, start, end, None)
        return _arrow(con, f"{sql} ORDER BY ts, request_id")


_EMPTY_REJECTS = (
    "SELECT NULL::VARCHAR AS request_id, NULL::DOUBLE AS ts, NULL::TIMESTAMPTZ AS time, "
    "NULL::VARCHAR AS model_version, NULL::BIGINT AS instances, NULL::BIGINT AS instance, "
    "NULL::VARCHAR AS field, NULL::VARCHAR AS problem WHERE false"
)


def _rejects_sql(con: duckdb.DuckDBPyConnection, directory: Path) -> str:
    """A SELECT of reject rows: request_id, ts, time, model_version, instances, instance,
    field, problem."""
    scan = _scan(con, directory, pinned=True)
    if scan is None:
        return _EMPTY_REJECTS
    source, columns = scan
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time",
        _meta(columns, "model_version", "VARCHAR"),
        _meta(columns, "instances", "BIGINT"),
        _meta(columns, "instance", "BIGINT"),
        _meta(columns, "field", "VARCHAR"),
        _meta(columns, "problem", "VARCHAR"),
    ]
    return f"SELECT {', '.join(items)} FROM {source}"


def read_rejects(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
) -> pyarrow.Table:
    """Requests the server refused in validation, one row per problem: request_id, ts,
    time, model_version, instances (of the request, all refused), instance, field (None
    when the request itself was malformed), problem. Sorted by ts."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _window(_rejects_sql(con, folder / REJECTS), start, end, model_version)
        return _arrow(con, f"{sql} ORDER BY ts, request_id, instance")


def labelled(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
    inputs: Mapping[str, str] | None = None,
) -> pyarrow.Table:
    """Predictions that have feedback, with the latest label: the columns of
    :func:`read_predictions` plus ``true_label`` and ``label_ts``. Feedback without an
    instance labels every instance of its request; feedback for an unknown request id
    matches nothing. The filters apply to the prediction's ts and model_version;
    ``inputs`` types the input fields as in :func:`read_predictions`."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        predictions = _predictions_sql(con, folder / PREDICTIONS, pinned=True, inputs=inputs)
        predictions = _window(predictions, start, end, model_version)
        sql = _labelled_sql(predictions, _feedback_sql(con, folder / FEEDBACK, pinned=True))
        return _arrow(con, f"{sql} ORDER BY p.ts, p.request_id, p.instance")


def duckdb_view(
    con: duckdb.DuckDBPyConnection,
    workspace_root: str | Path | Workspace,
    name: str = "predictions",
    *,
    feedback: str = "feedback",
    labelled: str = "labelled",
    pinned: bool = False,
    inputs: Mapping[str, str] | None = None,
) -> None:
    """Create (or replace) views ``name``, ``feedback`` and ``labelled`` on ``con``, with the
    columns of :func:`read_predictions`, :func:`read_feedback` and :func:`labelled`.

    Live (default): the views read the segment glob on every query, so new rows show up;
    DuckDB infers the JSON types on each query (about 5 s per million rows). The set of
    columns is fixed now: call again after new input fields appear, or when the log was
    empty (an empty log gives empty views with the metadata columns). ``pinned``: the
    segments that exist now, with the types inferred now; queries are several times faster
    and call again to see later rows. ``inputs`` types the input fields as in
    :func:`read_predictions`; a live view's fields are inferred first, then converted, so
    there a date-time may read in DuckDB's timestamp text rather than as sent.
    """
    folder = log_folder(workspace_root)
    predictions = _predictions_sql(con, folder / PREDICTIONS, pinned=pinned, inputs=inputs)
    feedback_sql = _feedback_sql(con, folder / FEEDBACK, pinned=pinned)
    con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {predictions}")
    con.execute(f"CREATE OR REPLACE VIEW {_ident(feedback)} AS {feedback_sql}")
    con.execute(
        f"CREATE OR REPLACE VIEW {_ident(labelled)} AS {_labelled_sql(predictions, feedback_sql)}"
    )

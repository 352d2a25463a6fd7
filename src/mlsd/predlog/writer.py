"""The durable prediction and feedback log: what the server answered, and what was true.

Layout, under ``<workspace>/log/<system>/`` (several systems may share a workspace; each
has its own log), or ``<folder>/log/`` when the functions are given a plain folder::

    predictions/20261123T181500.123456-4242-000001.jsonl   finished segment (JSON Lines)
    predictions/.20261123T181501.130001-4242-000002.jsonl.tmp   the segment being written
    feedback/...                                            the same for true labels
    rejects/...                                             requests refused by validation
    shadow/...                                              what shadow models answered

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

The READER (:mod:`mlsd.predlog.reader`: :func:`read_predictions`, :func:`read_feedback`, :func:`labelled`,
:func:`duckdb_view`) runs offline, for monitoring and retraining. It reads finished segments
only, with DuckDB, and imports it (and pyarrow) inside the functions that need them. Given
the package signature's input types (``inputs=``), it reads each input field with its type
instead of the one DuckDB infers from the JSON.
"""

from __future__ import annotations

import array
import atexit
import collections
import contextlib
import ctypes
import functools
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from mlsd.errors import MlsdError
from mlsd.workspace import Workspace, atomic_write_bytes

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
REJECTS = "rejects"  # validation failures: what monitoring counts by field
SHADOW = "shadow"  # shadow models' answers (step 8): never counted as predictions

# A segment holds at most this many rows: DuckDB samples 20,480 rows per file to infer its
# schema, so a whole segment is always inspected and a late new field is never missed.
SEGMENT_MAX_ROWS = 20_000
STALE_S = 3600.0  # a .tmp untouched this long is abandoned even if its pid looks alive
KNOWN_CAPACITY = 1_000_000
RETRY_S = 1.0  # while the disk refuses writes (full, read-only), a new attempt this often

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


def _value(obj: Any) -> bytes | None:
    """One JSON value as :func:`_encode` writes it, without the newline (None: unencodable).

    Plain orjson first: its option for keys that are not strings makes every call half as
    slow again, and keys from a JSON request are always strings."""
    try:
        return orjson.dumps(obj, default=_default)
    except (TypeError, orjson.JSONEncodeError):
        line = _encode(obj)
        return None if line is None else line[:-1]


@functools.lru_cache(maxsize=256)
def _routing_fields(experiment: Any, arm: Any, p: Any) -> tuple[bytes, bytes]:
    """A routed row's ``"experiment", "arm", "unit", "p"`` fields around the unit, encoded
    once per arm (the unit is the only one that changes from request to request)."""
    head = _value({"experiment": str(experiment), "arm": str(arm)})[1:-1]
    tail = _value({"p": None if p is None else float(p)})[1:-1]
    return b"," + head + b',"unit":', b"," + tail


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

    A write the disk refuses (full, read-only, gone) leaves no partial line: the open
    segment is cut back to its last whole row, the rows are held in memory (at most
    ``max_queue``; more are dropped and counted) and written again every ``RETRY_S`` until
    the disk takes them. Meanwhile :attr:`health` says why and since when; ``flush()``
    waits for the held rows too.
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
        self._size = 0  # bytes of whole rows in the open segment
        self._deadline = 0.0
        # rows the disk refused, oldest first, and why (writer thread; read by `health`)
        self._held: list[bytes] = []
        self._trouble: tuple[str, float] | None = None  # (the error, since: epoch seconds)
        self._retry_at = 0.0
        self._waiting: list[threading.Event] = []  # flush() calls the held rows hold up
        # called on the writer thread every tick with the new lines, before they are written
        # (the server's shadow process takes its copies here, off the request path)
        self.tap: Any = None
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

    def log_lines(self, lines: list[bytes], *, errors: int = 0) -> None:
        """Queue records already encoded, one JSON line each (newline included), together:
        all are queued, or all dropped and counted when the queue has no room for them.
        ``errors``: records the caller could not encode, counted as :meth:`log` counts them."""
        if errors:
            with self._count_lock:
                self._errors += errors
            logger.error("%s log: %d record(s) not JSON-serialisable, skipped", self.kind, errors)
        if self._closed or len(self._pending) + len(lines) > self._max_queue:
            with self._count_lock:
                self._dropped += len(lines)
            return
        self._pending.extend(lines)

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

    @property
    def health(self) -> dict[str, Any]:
        """``{"ok": True}``, or, while the disk refuses writes, ``ok`` False with the
        ``error``, ``since`` when (ISO time) and the rows ``held`` in memory meanwhile."""
        trouble = self._trouble
        if trouble is None:
            return {"ok": True}
        return {"ok": False, "error": trouble[0], "since": _iso(trouble[1]),
                "held": len(self._held)}  # fmt: skip

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
                    continue
                # a control token: everything before it goes first
                written = self._write(lines, force=item is _STOP)
                lines = []
                self._finish()
                if item is _STOP:
                    if self._held:  # the disk still refuses them: count them as lost
                        with self._count_lock:
                            self._dropped += len(self._held)
                        self._held = []
                    self._release()
                    return
                self._waiting.append(item)
                if written:
                    self._release()  # flush(): all before it is in a finished segment
            if self._write(lines) and self._waiting:
                self._finish()
                self._release()
            if self._file is not None and time.monotonic() >= self._deadline:
                self._finish()

    def _release(self) -> None:
        for event in self._waiting:
            event.set()
        self._waiting = []

    def _write(self, lines: list[bytes], *, force: bool = False) -> bool:
        """Append encoded lines, and any the disk refused before, to the open segment
        (opened on demand; a new one past ``max_rows``), in one write per segment. False
        when rows are still held: the disk refused them (again), or the next attempt is
        not due yet (``force``: try now)."""
        if self.tap is not None:  # every tick, rows or not (it also hears back from readers)
            try:
                self.tap(lines)
            except Exception:  # a reader of the lines never stops the log
                logger.exception("%s log: the tap failed", self.kind)
        if self._held:
            lines, self._held = self._held + lines, []
        if not lines:
            return True
        if self._trouble is not None and not force and time.monotonic() < self._retry_at:
            self._hold(lines)
            return False
        at = 0
        while at < len(lines):
            try:
                if self._file is None:
                    self._open()
                chunk = lines[at : at + self.max_rows - self._rows]
                data = memoryview(b"".join(chunk))
                done = 0
                while done < len(data):  # a raw file may take part of it
                    done += self._file.write(data[done:])
            except Exception as exc:  # the disk refuses: nothing partial stays, rows wait
                self._cut_back(exc)
                self._hold(lines[at:])
                self._refused(exc)
                return False
            self._size += len(data)
            self._rows += len(chunk)
            at += len(chunk)
            if self._rows >= self.max_rows:
                self._finish()
        if self._trouble is not None:
            logger.warning("%s log: writing again after %s", self.kind, self._trouble[0])
            self._trouble = None
        return True

    def _hold(self, lines: list[bytes]) -> None:
        """Keep rows the disk refused for the next attempt: at most ``max_queue``, the
        oldest first; the newest beyond that are dropped and counted."""
        extra = len(lines) - self._max_queue
        if extra > 0:
            with self._count_lock:
                self._dropped += extra
            lines = lines[: self._max_queue]
        self._held = lines

    def _refused(self, exc: Exception) -> None:
        with self._count_lock:
            self._errors += 1
        if self._trouble is None:
            logger.error("%s log: cannot write (%s); rows held, retried", self.kind, exc)
            self._trouble = (getattr(exc, "strerror", None) or str(exc), time.time())
        self._retry_at = time.monotonic() + RETRY_S

    def _cut_back(self, exc: Exception) -> None:
        """Truncate the open segment to its last whole row after a failed write; a segment
        that cannot be cut back is finished with its whole rows (:func:`_salvage`)."""
        if self._file is None:
            return
        try:
            os.ftruncate(self._file.fileno(), self._size)
            self._file.seek(self._size)
        except OSError:
            self._fail(exc)

    def _open(self) -> None:
        name = _segment_name()
        self._tmp = self.directory / f".{name}.jsonl.tmp"
        self._final = self.directory / f"{name}.jsonl"
        with _ACTIVE_LOCK:
            _ACTIVE.add(str(self._tmp))
        self._rows = self._size = 0
        self._deadline = time.monotonic() + self.flush_s
        self.directory.mkdir(parents=True, exist_ok=True)  # survive a retention job's rm -r
        # unbuffered: each write reaches the OS whole or fails, and a failed one is cut back
        self._file = open(self._tmp, "xb", buffering=0)  # noqa: SIM115 - held open across many rows

    def _finish(self) -> None:
        """Flush, fsync and rename the open segment to its final name."""
        if self._file is None:
            return
        if self._rows == 0:  # its first write was refused: nothing to keep
            with contextlib.suppress(OSError):
                self._file.close()
                self._tmp.unlink()
            self._forget()
            return
        try:
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
        self._rows = self._size = 0


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


class RecentIds:
    """The ids of recent requests in fixed memory, for :meth:`PredictionLog.known`.

    Two open-addressing tables of 64-bit hashes, allocated once (16 bytes a slot, each at
    most half full): new ids go to the newer; when it holds ``capacity // 2`` the older is
    cleared and becomes the newer. So the last ``capacity // 2`` to ``capacity`` ids are
    remembered, and the server's memory does not grow with its traffic (a dict of a
    million ids held 120 MB, reached after hours). Two ids with the same hash (about 1 in
    2^64) would pass for each other: a label for an id never served would be taken as
    known, never one lost."""

    def __init__(self, capacity: int):
        self._half = max(1, int(capacity) // 2)
        slots = 1 << max(4, (2 * self._half - 1).bit_length())  # a load of at most 1/2
        self._mask = slots - 1
        self._tables = [array.array("Q", bytes(8 * slots)) for _ in range(2)]
        self._count = 0
        self._lock = threading.Lock()  # only the swap takes it

    @staticmethod
    def _key(request_id: str) -> int:
        return (hash(request_id) & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks an empty slot

    def _slot(self, table: array.array, key: int) -> int:
        """Where ``key`` is in ``table``, or the empty slot where it would go."""
        mask, i = self._mask, key & self._mask
        while (found := table[i]) and found != key:
            i = (i + 1) & mask
        return i

    def __contains__(self, request_id: str) -> bool:
        key = self._key(request_id)
        return any(table[self._slot(table, key)] == key for table in self._tables)

    def add(self, request_id: str) -> None:
        """Remember ``request_id``. Lock-free: two threads adding at once may lose one id,
        which :meth:`PredictionLog.known` then finds on disk."""
        key = self._key(request_id)
        table = self._tables[0]
        i = self._slot(table, key)
        if table[i] == key:
            return
        table[i] = key
        self._count += 1
        if self._count >= self._half:
            with self._lock:
                if self._count >= self._half:
                    older = self._tables[1]
                    ctypes.memset(older.buffer_info()[0], 0, len(older) * older.itemsize)
                    self._tables = [older, table]
                    self._count = 0


def _needle(request_id: str) -> bytes:
    """How a row of ``request_id`` starts on disk (request_id is always the first key)."""
    return b'{"request_id":' + orjson.dumps(request_id) + b","


class PredictionLog:
    """The writers a prediction server needs: ``predictions``, ``feedback``, ``rejects``
    (requests refused by validation) and ``shadow`` (what shadow models answered, step 8) in
    the workspace's :func:`log_folder`. Standard library only, like :class:`LogWriter`.

    One prediction row per instance of a request. On disk a row is::

        {"request_id": "r1", "instance": 0, "ts": 1763921700.12, "time": "2025-...Z",
         "model_version": "3", "latency_ms": 4.2, "inputs": {...}, "output": ...,
         "flags": [...],            # flags only when there are some
         "experiment": "e1", "arm": "challenger", "unit": "u42", "p": 0.5,
                                    # the routing keys only while an experiment routes
         "group": "q7", "position": 3}
                                    # a ranked item (/v1/rank): its request's group and
                                    # the 1-based place it was given (null: cut by k)

    A shadow row has the same shape without ``inputs`` (the live row of the same
    request_id and instance holds them), ``flags``, ``unit`` and ``p``: request_id,
    instance, ts, time, model_version, latency_ms (the shadow model's own), output,
    experiment, arm.
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
        self._shadow = LogWriter(self.folder, SHADOW, flush_s=flush_s, max_queue=max_queue)
        self._known = RecentIds(known_capacity)

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
        routed: Mapping[str, Any] | None = None,
        group: str | None = None,
        ranks: list[int | None] | None = None,
    ) -> None:
        """Log one request: one row per instance, ``inputs[i]`` with ``outputs[i]``.

        ``ts`` is UTC epoch seconds (default: now). ``flags`` is either one list per instance
        (``len(flags) == len(inputs)`` and every item a list or None) or one list that applies
        to every instance, e.g. out-of-range fields accepted under the "flag" policy.
        ``positions`` are the instances' places in the request (default 0, 1, ...): a request
        answered in part logs its valid instances under their own numbers, which feedback
        refers to. ``routed`` (while an experiment routes traffic): the ``experiment``, the
        ``arm``, the ``unit`` it was assigned by and the assignment probability ``p``, added
        to every row. ``group`` (a ranking request, ``/v1/rank``): the group its items
        belong to, added to every row as text, with ``ranks[i]``, the 1-based position the
        ranking gave instance ``i`` (None: scored but not returned, beyond the top k), as
        ``position``: what a study of position bias joins clicks to.
        """
        if len(outputs) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        if group is not None and (ranks is None or len(ranks) != len(inputs)):
            raise ValueError("a ranked request needs one rank (or None) per instance")
        ts = time.time() if ts is None else float(ts)
        # The fields every row shares are encoded once per request and each row is joined
        # from bytes: building and encoding a dict per row cost the server most of its time
        # on a request of many instances.
        head = b'{"request_id":' + _value(str(request_id)) + b',"instance":'
        shared = {"ts": ts, "time": _iso(ts), "model_version": str(model_version)}
        shared["latency_ms"] = float(latency_ms)
        middle = b"," + _value(shared)[1:-1] + b',"inputs":'
        extra = b""  # what follows each row's output and flags
        if routed:
            before, after = _routing_fields(
                routed.get("experiment"), routed.get("arm"), routed.get("p")
            )
            extra = before + _value(str(routed.get("unit"))) + after
        if group is not None:
            extra += b',"group":' + _value(str(group)) + b',"position":'
        per_instance = (
            flags is not None
            and len(flags) == len(inputs)
            and all(f is None or isinstance(f, list | tuple) for f in flags)
        )
        shared_flags = b""
        if flags and not per_instance:
            shared_flags = b',"flags":' + (_value(list(flags)) or b"null")
        lines: list[bytes] = []
        failed = 0
        for i, (fields, output) in enumerate(
            zip(map(_value, inputs), map(_value, outputs), strict=True)
        ):
            if fields is None or output is None:
                failed += 1
                continue
            instance_flags = shared_flags
            if per_instance and flags[i]:
                instance_flags = b',"flags":' + (_value(list(flags[i])) or b"null")
            end = extra
            if group is not None:
                end += b"null" if ranks[i] is None else str(int(ranks[i])).encode()
            lines.append(
                b"".join((
                    head, str(positions[i] if positions else i).encode(), middle, fields,
                    b',"output":', output, instance_flags, end, b"}\n",
                ))
            )  # fmt: skip
        self._predictions.log_lines(lines, errors=failed)
        self._known.add(request_id)

    def shadow(
        self,
        *,
        request_id: str,
        model_version: str | int,
        experiment: str,
        arm: str,
        outputs: list,
        latency_ms: float,
        inputs: list[dict] | None = None,
        ts: float | None = None,
        positions: list[int] | None = None,
    ) -> None:
        """Log what a shadow model answered for a request: one row per instance, in the
        ``shadow`` folder (never read as predictions). ``inputs`` are left out by default:
        the live row of the same request_id and instance holds them; given, they are kept.
        ``latency_ms`` is the shadow model's own scoring time; ``positions`` as in
        :meth:`prediction`. See :func:`shadow_rows`."""
        for row in shadow_rows(
            request_id=request_id,
            model_version=model_version,
            experiment=experiment,
            arm=arm,
            outputs=outputs,
            latency_ms=latency_ms,
            inputs=inputs,
            ts=ts,
            positions=positions,
        ):
            self._shadow.log(row)

    def feedback(
        self,
        *,
        request_id: str,
        label: Any,
        instance: int | None = None,
        ts: float | None = None,
        reward: float | None = None,
    ) -> None:
        """Log the true ``label`` of a request (of one ``instance``, or of all when None),
        with an optional numeric ``reward`` (what a bandit or an online metric counts)."""
        ts = time.time() if ts is None else float(ts)
        row: dict[str, Any] = {"request_id": request_id}
        if instance is not None:
            row["instance"] = int(instance)
        row.update(label=label, ts=ts, time=_iso(ts))
        if reward is not None:
            row["reward"] = float(reward)
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

        Memory first (ids this process logged: the last ``known_capacity // 2`` at least,
        :class:`RecentIds`); then, with
        ``scan``, a byte search of the segments being written (other processes', such as
        the other replicas of a server, whose rows reach the disk every tick) and the
        finished ones, newest first (GB/s, no parsing).
        """
        if request_id in self._known:
            return True
        if not scan:
            return False
        needle = _needle(request_id)
        directory = self._predictions.directory
        try:
            open_segments = sorted(directory.glob(".*.jsonl.tmp"), reverse=True)
        except OSError:
            open_segments = []
        for path in [*open_segments, *reversed(segment_files(directory))]:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if data.startswith(needle) or b"\n" + needle in data:
                self._known.add(request_id)
                return True
        return False

    def tap(self, reader: Any) -> None:
        """Hand each tick's new prediction lines (maybe none) to ``reader(lines)`` on the
        writer's thread, before they are written (:attr:`LogWriter.tap`; None: stop)."""
        self._predictions.tap = reader

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged so far is in finished segments."""
        ok = self._predictions.flush(timeout)
        ok = self._rejects.flush(timeout) and ok
        ok = self._shadow.flush(timeout) and ok
        return self._feedback.flush(timeout) and ok

    def close(self) -> None:
        """Drain the writers and finish their segments. Idempotent."""
        self._predictions.close()
        self._feedback.close()
        self._rejects.close()
        self._shadow.close()

    @property
    def recovered(self) -> dict[str, dict[str, int]]:
        """What :func:`recover` salvaged when the writers started, per kind."""
        return {
            PREDICTIONS: self._predictions.recovered,
            FEEDBACK: self._feedback.recovered,
            REJECTS: self._rejects.recovered,
            SHADOW: self._shadow.recovered,
        }

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """The writers' counters: ``{"predictions": {...}, "feedback": {...},
        "rejects": {...}, "shadow": {...}}``."""
        return {
            PREDICTIONS: self._predictions.stats,
            FEEDBACK: self._feedback.stats,
            REJECTS: self._rejects.stats,
            SHADOW: self._shadow.stats,
        }

    @property
    def health(self) -> dict[str, Any]:
        """``status`` ok, or degraded while a writer's disk refuses its rows, and each
        writer's :attr:`LogWriter.health`."""
        writers = {
            PREDICTIONS: self._predictions.health,
            FEEDBACK: self._feedback.health,
            REJECTS: self._rejects.health,
            SHADOW: self._shadow.health,
        }
        ok = all(w["ok"] for w in writers.values())
        return {"status": "ok" if ok else "degraded", "writers": writers}

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shadow_rows(
    *,
    request_id: str,
    model_version: str | int,
    experiment: str,
    arm: str,
    outputs: list,
    latency_ms: float,
    inputs: list[dict] | None = None,
    ts: float | None = None,
    positions: list[int] | None = None,
) -> list[dict[str, Any]]:
    """The shadow rows of one request (what :meth:`PredictionLog.shadow` logs; a process
    scoring shadows writes them with a :class:`LogWriter` of kind :data:`SHADOW`)."""
    if inputs is not None and len(outputs) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    ts = time.time() if ts is None else float(ts)
    common = {
        "ts": ts,
        "time": _iso(ts),
        "model_version": str(model_version),
        "latency_ms": float(latency_ms),
    }
    rows = []
    for i, output in enumerate(outputs):
        row = {"request_id": request_id, "instance": positions[i] if positions else i}
        row.update(common)
        if inputs is not None:
            row["inputs"] = inputs[i]
        row["output"] = output
        row["experiment"] = str(experiment)
        row["arm"] = str(arm)
        rows.append(row)
    return rows


def segment_files(directory: Path) -> list[Path]:
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


def log_folder(workspace_root: str | Path | Workspace) -> Path:
    """Where the log lives: the workspace's own (per system) for a :class:`Workspace`,
    ``<folder>/log`` for a plain folder."""
    if not isinstance(workspace_root, Workspace):
        workspace_root = Workspace(workspace_root)
    return workspace_root.log

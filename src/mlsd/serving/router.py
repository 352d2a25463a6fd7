"""Which model answers while an experiment runs (step 8), and the shadows scored off the path.

A :class:`Routing` is a routing table (:mod:`mlsd.models.routing`, published by the rollout
controller beside the aliases) with every arm and shadow loaded and verified: the server
builds a new one whole, then swaps it in with one assignment, so a request sees the old
table or the new one, never a mix. Models already loaded under the same version and package
folder (the champion, usually) are reused, not loaded again.

:meth:`Routing.choose` assigns a request to an arm by its unit: the value of the table's
``unit_field`` in the first instance when the request carries it, else the request id. The
assignment is a salted hash (:meth:`RoutingTable.assign`), the same in every process and
after a restart.

:class:`ShadowProcess` scores copies of answered requests with the shadow models in a
child process at the lowest CPU priority. Neither the request path nor a thread of the
server's own works for it: the copies are the prediction log's own lines, which the log's
writer thread hands over, and sends to the child, as it takes each tick's rows
(:attr:`LogWriter.tap`); the child keeps the rows of the experiment's mirrored requests,
validates and predicts them with each shadow's own validator and model, in batches
(:class:`ShadowScorer`), and writes shadow rows. (A recommender's shadow needs the request
itself, not the logged items: ``/v1/recommend`` queues it with
:meth:`ShadowProcess.submit`.) A shadow that fails is counted; the caller's answer never
waits for it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlsd.errors import MlsdError
from mlsd.models.routing import Arm, RoutingTable
from mlsd.serving.model import (
    ServedModel,
    ServedRecommender,
    ServingError,
    identity,
    load_version,
)
from mlsd.spec import ServingSpec

logger = logging.getLogger("mlsd.serving")

PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged pipe (pipe-max-size)
# The shadow process works on one thread: a BLAS pool started at numpy's import would run
# at normal priority, beside the lowest one the process gives itself
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHILD_POLL_S = 0.02  # how often the shadow process looks for frames (see _read)
SHADOW_QUEUE = 10_000  # instances waiting for the shadow process; more are dropped, counted


@dataclass(frozen=True)
class Routed:
    """One arm or shadow of a loaded table: the arm as published and its verified model."""

    arm: Arm
    model: ServedModel


@dataclass
class Routing:
    """A routing table with every arm and shadow loaded and verified."""

    table: RoutingTable
    arms: tuple[Routed, ...]
    shadows: tuple[Routed, ...] = ()
    _by_name: dict[str, Routed] = field(default_factory=dict, repr=False)
    _by_label: dict[str, Routed] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {r.arm.name: r for r in (*self.arms, *self.shadows)}
        # a version answers as its arm (arms first: they take traffic)
        self._by_label = {}
        for r in (*self.arms, *self.shadows):
            self._by_label.setdefault(r.model.label, r)

    @classmethod
    def build(
        cls,
        table: RoutingTable,
        system: str,
        serving: ServingSpec,
        loaded: Iterable[ServedModel | None] = (),
    ) -> Routing:
        """Load and verify every arm and shadow of ``table``, reusing the ``loaded`` models
        of the same version and package folder. Raises :class:`ServingError` naming the arm
        when any package fails: the caller keeps what it had."""
        known: dict[tuple[int | None, str], ServedModel] = {}
        for model in loaded:
            if model is not None:
                known.setdefault(identity(model.version, model.package.folder), model)

        def load(arm: Arm) -> Routed:
            key = identity(arm.version, arm.package)
            model = known.get(key)
            if model is None:
                try:
                    model = load_version(system, arm.version, arm.package, serving)
                except MlsdError as exc:
                    raise ServingError(
                        f"experiment {table.experiment!r}, arm {arm.name!r} (version "
                        f"{arm.version}): {exc.message}",
                        hint=exc.hint or "`mlsd rollout abort` removes the routing table",
                    ) from exc
                except Exception as exc:  # a broken model file may fail in its own library
                    raise ServingError(
                        f"experiment {table.experiment!r}, arm {arm.name!r} (version "
                        f"{arm.version}) cannot be loaded: {type(exc).__name__}: {exc}",
                        hint="`mlsd rollout abort` removes the routing table",
                    ) from exc
                known[key] = model
            return Routed(arm, model)

        arms = tuple(load(a) for a in table.arms)
        shadows = tuple(load(a) for a in table.shadows)
        return cls(table, arms, shadows)

    @property
    def experiment(self) -> str:
        return self.table.experiment

    def models(self) -> list[ServedModel]:
        """Every distinct model the table holds (arms first)."""
        out: dict[int, ServedModel] = {}
        for r in (*self.arms, *self.shadows):
            out.setdefault(id(r.model), r.model)
        return list(out.values())

    def by_label(self, label: str) -> Routed | None:
        """The arm (else the shadow) answering as version ``label``, if the table has one."""
        return self._by_label.get(label)

    def unit(self, instances: Any, request_id: str) -> str:
        """The request's unit: ``unit_field`` of the first instance when present and not
        null, else the request id."""
        name = self.table.unit_field
        if name and isinstance(instances, list) and instances:
            first = instances[0]
            if isinstance(first, dict):
                value = first.get(name)
                if value is not None:
                    return str(value)
        return request_id

    def choose(self, instances: Any, request_id: str) -> tuple[ServedModel, dict[str, Any]]:
        """The model that answers this request and what the log records about the choice:
        ``{"experiment", "arm", "unit", "p"}`` (p: the assignment probability)."""
        unit = self.unit(instances, request_id)
        arm, p = self.table.assign(unit)
        routed = self._by_name[arm.name]
        return routed.model, {
            "experiment": self.table.experiment,
            "arm": arm.name,
            "unit": unit,
            "p": p,
        }

    def describe(self) -> dict[str, Any]:
        """What /readyz and /v1/models show: the experiment, its arms and shadows."""

        def one(r: Routed) -> dict[str, Any]:
            return {
                "name": r.arm.name,
                "version": r.model.label,
                "weight": r.arm.weight,
                "package": str(r.model.package.folder),
            }

        return {
            "experiment": self.table.experiment,
            "strategy": self.table.strategy,
            "unit_field": self.table.unit_field,
            "arms": [one(r) for r in self.arms],
            "shadows": [one(r) for r in self.shadows],
            "versions": sorted({r.model.label for r in (*self.arms, *self.shadows)}, key=_order),
        }


def _order(label: str) -> tuple[int, int, str]:
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


@dataclass(frozen=True)
class _Copy:
    routed: Routed
    experiment: str
    request_id: str
    instances: list
    positions: list[int] | None
    ts: float


class ShadowScorer:
    """Scores copies of answered requests with shadow models, in the shadow process.

    :meth:`score` takes the copies in chunks of up to ``chunk`` and scores each chunk's
    copies of one shadow in one validate and one predict call. A shadow row's ``latency_ms``
    is therefore the request's share of its chunk's scoring time (validation and prediction,
    in proportion to its instances), not the time a request alone would take. Chunks of 64
    single-row copies cost 24 µs a copy against 30 µs in chunks of 16 (one call's overhead
    shared by more rows); 256 gained nothing more. (Scoring on a
    thread of the server's own process cost the caller 14-40% of its p50 on 2 cores during
    development, hence the process.)

    ``log`` needs a ``shadow(**row)`` method (:meth:`PredictionLog.shadow`); ``metrics``
    ``shadowed(arm, n)`` and ``shadow_errors`` (:class:`ServerMetrics`, or :class:`_Tally`).
    """

    def __init__(self, log: Any, metrics: Any, *, chunk: int = 64):
        self.log, self.metrics, self._chunk = log, metrics, int(chunk)
        self.scored = self.errors = 0

    def score(self, copies: list[_Copy]) -> None:
        """Score ``copies`` chunk by chunk; a shadow that fails is counted, never raised."""
        for at in range(0, len(copies), self._chunk):
            self._score_chunk(copies[at : at + self._chunk])

    def _score_chunk(self, chunk: list[_Copy]) -> None:
        groups: dict[tuple[int, str, str], list[_Copy]] = {}
        for copy in chunk:
            key = (id(copy.routed.model), copy.routed.arm.name, copy.experiment)
            groups.setdefault(key, []).append(copy)
        for copies in groups.values():
            try:
                self._score(copies)
            except Exception as exc:  # a shadow never takes the process down
                self.errors += len(copies)
                self.metrics.shadow_errors.inc(len(copies))
                logger.warning(
                    "shadow %s failed on %d request(s): %s",
                    copies[0].routed.arm.name,
                    len(copies),
                    exc,
                )

    def _score(self, copies: list[_Copy]) -> None:
        """Score the copies of one shadow together; log one row per accepted instance."""
        routed = copies[0].routed
        model = routed.model
        if isinstance(model, ServedRecommender):
            self._recommend(copies)
            return
        instances: list = []
        starts: list[int] = []
        for copy in copies:
            starts.append(len(instances))
            instances.extend(copy.instances)
        started = time.perf_counter()
        checked = model.validator.validate(instances)
        outputs = model.predict(checked.columns) if checked.accepted else []
        elapsed_ms = (time.perf_counter() - started) * 1000
        per_copy: list[tuple[list, list[int]]] = [([], []) for _ in copies]
        k = 0
        for index, output in zip(checked.accepted, outputs, strict=True):
            while k + 1 < len(copies) and index >= starts[k + 1]:
                k += 1
            mine = per_copy[k]
            mine[0].append(output)
            mine[1].append(index - starts[k])
        refused = 0
        for copy, (answers, places) in zip(copies, per_copy, strict=True):
            if not answers:
                refused += 1  # the shadow refused every instance of this request
                continue
            given = copy.positions
            self.log.shadow(
                request_id=copy.request_id,
                model_version=model.label,
                experiment=copy.experiment,
                arm=routed.arm.name,
                outputs=answers,
                latency_ms=elapsed_ms * len(copy.instances) / len(instances),
                ts=copy.ts,
                positions=[given[i] for i in places] if given else places,
            )
        self.scored += len(outputs)
        self.metrics.shadowed(routed.arm.name, len(outputs))
        if refused:
            self.errors += refused
            self.metrics.shadow_errors.inc(refused)

    def _recommend(self, copies: list[_Copy]) -> None:
        """A recommender shadow: each copy is one ``/v1/recommend`` request (``{"user", "k",
        "exclude"}``), answered in batches of one ``k`` without exploration; its list is
        logged one row per item (``instance`` its position; item, score and stage in the
        output), for :func:`mlsd.rollout.online.shadow_lists` to set beside the live list."""
        routed = copies[0].routed
        recommender = routed.model.package.recommender
        by_k: dict[Any, list[tuple[_Copy, dict]]] = {}
        for copy in copies:
            for request in copy.instances:
                by_k.setdefault(request.get("k"), []).append((copy, request))
        listed = 0
        for k, group in by_k.items():
            started = time.perf_counter()
            answers = recommender.recommend(
                [r["user"] for _, r in group], k, [r.get("exclude") or [] for _, r in group]
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            for (copy, _), answer in zip(group, answers, strict=True):
                self.log.shadow(
                    request_id=copy.request_id,
                    model_version=routed.model.label,
                    experiment=copy.experiment,
                    arm=routed.arm.name,
                    outputs=[
                        {"item": i["item"], "score": i["score"], "stage": i["stage"]}
                        for i in answer["items"]
                    ],
                    latency_ms=elapsed_ms / len(group),
                    ts=copy.ts,
                )
                listed += len(answer["items"])
        self.scored += listed
        self.metrics.shadowed(routed.arm.name, listed)


# --- shadows in a process of their own -----------------------------------------------------


class _Tally:
    """Counts what a :class:`ShadowScorer` reports (in the shadow process, for the server)."""

    def __init__(self) -> None:
        self.scored: dict[str, int] = {}
        self.errors = 0
        self.shadow_errors = self  # ShadowScorer calls metrics.shadow_errors.inc(n)

    def shadowed(self, arm: str, n: int) -> None:
        self.scored[arm] = self.scored.get(arm, 0) + n

    def inc(self, n: int = 1) -> None:
        self.errors += n

    def take(self) -> dict[str, Any]:
        out = {"scored": self.scored, "errors": self.errors}
        self.scored, self.errors = {}, 0
        return out


class ShadowProcess:
    """Scores copies of answered requests with shadow models in a child process, so a
    shadow's validation and prediction never hold the server's GIL.

    The request path pays nothing, and the server runs no thread of its own for the
    shadows: :meth:`tap` (the prediction log's :attr:`~mlsd.predlog.writer.LogWriter.tap`)
    receives each tick's log lines on the log's writer thread while a table with shadows is
    followed (:meth:`follow`) and, on that same thread, writes them to the child's stdin as
    one frame: 4-byte length, a JSON header (the table when it changed, packages to load,
    queued recommender copies, the length of the lines), then the lines as they were
    logged. The pipe is non-blocking: what it cannot take now waits for the next tick, and
    more than ``max_queue`` instances waiting drops the newest frames and counts their
    instances. The same call reads the child's answers, one line of counts per frame, into
    ``metrics``. (Threads of its own would wake up only to take the GIL from the request
    path; the writer thread wakes up every tick anyway.)

    The child (``python -m mlsd.serving.router``, at the lowest CPU priority:
    ``SCHED_IDLE`` on Linux, else nice 19) looks for frames every ``CHILD_POLL_S``
    (:func:`_read`), keeps the rows of the followed experiments whose
    request the table mirrors, loads each shadow's package once, verified as the server
    would, scores them with a :class:`ShadowScorer`'s batching and writes the shadow rows
    to the same log with a writer of its own. A child that dies is started again with the
    next frame; what it had not answered counts as errors.
    """

    def __init__(
        self,
        log: Any,
        metrics: Any,
        system: str,
        serving: ServingSpec,
        *,
        max_queue: int = SHADOW_QUEUE,
        nice: int = 19,
    ):
        self.log, self.metrics, self.system, self.serving = log, metrics, system, serving
        self._copies: collections.deque[tuple] = collections.deque()  # recommender requests
        self._max_queue, self._nice = int(max_queue), int(nice)
        self._lock = threading.Lock()  # one caller at a time talks to the child
        self._proc: Any = None
        self._out = bytearray()  # frames the pipe has not taken yet
        self._frames: collections.deque[tuple[int, int]] = collections.deque()  # (end, n)
        self._written = 0  # bytes the pipe took from this child
        self._queued = 0  # instances in _out
        self._answers = b""  # the child's answers: a partial line
        self._table: dict[str, Any] | None = None  # the last table with shadows (JSON)
        self._reads_log = False  # a shadow of the table scores the logged instances
        self._table_sent = True  # the child knows the current table
        self._loads: list[list] = []  # packages to load ahead of the first copies
        self._closed = False
        self._sent = self._acked = 0  # frames
        self._in_flight: dict[int, int] = {}  # frame -> instances, until the child answers
        self._loaded: set[tuple] = set()  # (version, folder) the child was asked to load
        self.scored = self.dropped = self.errors = 0

    # -- following the routing table

    def follow(self, routing: Routing | None, *, settled: bool = True) -> None:
        """Score copies for ``routing``'s shadows (None, or a table without shadows: none);
        the child loads the shadows' packages at once. Call it with ``settled=False``
        before the server routes with ``routing``, so its first rows are read, and again
        once the log has handed over the rows of the table before (a flush): only then
        does reading the log stop, if ``routing`` does not need it."""
        shadows = routing.shadows if routing is not None else ()
        reads = any(not isinstance(r.model, ServedRecommender) for r in shadows)
        with self._lock:
            if shadows and self._table != (table := routing.table.to_dict()):
                self._table, self._table_sent = table, False
                self._loads.extend([r.arm.version, r.arm.package] for r in shadows)
            self._reads_log = reads or (self._reads_log and not settled)
        if shadows:
            self._pump()

    # -- the log's writer thread and the request path

    def tap(self, lines: list[bytes]) -> None:
        """Send a tick's prediction log lines, and the queued recommender copies, to the
        child and count its answers (the log's writer thread calls it every tick, before
        writing the lines); never blocks."""
        if self._reads_log or self._copies or self._in_flight:
            self._pump(lines if self._reads_log else ())

    def submit(self, routing: Routing, request_id: str, request: dict) -> None:
        """Queue a ``/v1/recommend`` request for each recommender shadow of ``routing``
        when the table mirrors it (``mirror`` share); never blocks. It leaves with the
        next tick's log lines: submit it before logging the request's own rows."""
        if self._closed or not routing.table.mirrored(request_id):
            return
        ts = time.time()
        for shadow in routing.shadows:
            if len(self._copies) >= self._max_queue:
                self.dropped += 1
                self.metrics.shadow_dropped.inc()
                continue
            arm = shadow.arm
            self._copies.append(
                (arm.name, arm.version, arm.package, routing.experiment, request_id, ts,
                 [request], None)
            )  # fmt: skip

    # -- talking to the child

    def _pump(self, lines: Sequence[bytes] = ()) -> None:
        """Queue a frame of what waits (if anything does), write what the pipe takes and
        read the answers that came back."""
        with self._lock:
            if self._closed:
                return
            self._frame(lines)
            self._flow()

    def _frame(self, lines: Sequence[bytes]) -> None:
        message: dict[str, Any] = {}
        if self._loads:
            message["load"], self._loads = self._loads, []
            self._loaded.update((v, str(p)) for v, p in message["load"])
        if not self._table_sent:
            message["table"], self._table_sent = self._table, True
        copies = []
        while self._copies:
            copies.append(self._copies.popleft())
        if not (message or copies or lines):
            return
        if self._proc is not None and self._proc.poll() is not None:
            self._lost()  # it died between two ticks
        if self._proc is None:
            self._spawn()  # a new child is told every package and the table
            message["load"] = [list(k) for k in self._loaded]
            message["table"] = self._table
        n = len(copies) + len(lines)
        if lines and self._queued + n > self._max_queue:  # the child is behind: drop these
            self.dropped += n
            self.metrics.shadow_dropped.inc(n)
            lines, copies, n = (), [], 0
            if not message:
                return
        self._sent += 1
        data = b"".join(lines)
        message.update(seq=self._sent, copies=copies, lines=len(data))
        header = orjson.dumps(message, default=_default)
        self._out += len(header).to_bytes(4, "little")
        self._out += header
        self._out += data
        self._in_flight[self._sent] = n
        self._queued += n
        self._frames.append((self._written + len(self._out), n))

    def _flow(self) -> None:
        """Write what the pipe takes now; read what the child answered."""
        proc = self._proc
        if proc is None:
            return
        try:
            if self._out:
                taken = os.write(proc.stdin.fileno(), self._out)
                del self._out[:taken]
                self._written += taken
                while self._frames and self._frames[0][0] <= self._written:
                    self._queued -= self._frames.popleft()[1]
        except BlockingIOError:
            pass
        except (BrokenPipeError, OSError, ValueError):
            self._lost()
            return
        while True:
            try:
                data = os.read(proc.stdout.fileno(), 1 << 16)
            except BlockingIOError:
                break
            except (OSError, ValueError):
                data = b""
            if not data:  # the child ended
                self._lost()
                return
            self._count(data)

    def _count(self, data: bytes) -> None:
        """Add the child's answers (lines of counts, one per frame) to the metrics."""
        *done, self._answers = (self._answers + data).split(b"\n")
        for line in done:
            try:
                answer = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for arm, n in (answer.get("scored") or {}).items():
                self.scored += n
                self.metrics.shadowed(arm, n)
            errors = int(answer.get("errors") or 0)
            if errors:
                self.errors += errors
                self.metrics.shadow_errors.inc(errors)
            self._in_flight.pop(answer.get("seq"), None)
            self._acked = max(self._acked, int(answer.get("seq", 0)))

    def _spawn(self) -> None:
        import subprocess
        import sys

        config = {
            "system": self.system,
            "serving": self.serving.model_dump(mode="json"),
            "log": str(self.log.folder),
            "nice": self._nice,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlsd.serving.router", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env={**os.environ, **ONE_THREAD},
        )
        with contextlib.suppress(OSError, AttributeError):  # more frames wait in the pipe
            import fcntl

            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc, self._written, self._answers = proc, 0, b""

    def _lost(self) -> None:
        """The child died: the instances it had not answered count as errors."""
        lost = sum(self._in_flight.values())
        self._in_flight.clear()
        self._out.clear()
        self._frames.clear()
        self._queued = 0
        self._acked = self._sent
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(5)
        self._proc = None
        if lost:
            self.errors += lost
            self.metrics.shadow_errors.inc(lost)
        logger.warning("the shadow process ended; %d instances lost", lost)

    # -- tests and shutdown

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every copy logged or queued so far is scored and counted."""
        deadline = time.monotonic() + timeout
        if self._reads_log and not self.log.flush(timeout):  # the log's lines, tapped
            return False
        self._pump()
        while self._copies or self._out or self._acked < self._sent:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
            self._pump()
        return True

    def close(self, timeout: float = 20.0) -> None:
        """Send what is queued, let the child score it and exit. Idempotent. The log's
        writer must have handed over its last lines first (a flush)."""
        if self._closed:
            return
        self.drain(timeout)
        with self._lock:
            self._closed = True
            proc = self._proc
            if proc is None:
                return
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()  # end of input: the child finishes and exits
            try:
                proc.wait(timeout)
            except Exception:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(proc.stdout.fileno(), True)
                self._count(proc.stdout.read() or b"")
            if self._in_flight:
                self._lost()


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _child(config: dict[str, Any]) -> None:
    """The shadow process: frames in on stdin, one line of counts out per frame."""
    import os
    import sys

    from mlsd.predlog.writer import SHADOW, LogWriter, shadow_rows

    with contextlib.suppress(OSError, AttributeError):
        os.nice(int(config.get("nice", 0)))
    try:  # every thread started before this line (Linux), and those after inherit it
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for thread in threads:  # Linux: run only on idle CPU
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    system = config["system"]
    serving = ServingSpec.model_validate(config["serving"])
    writer = LogWriter(config["log"], SHADOW, flush_s=serving.log_flush_s)

    class Log:
        @staticmethod
        def shadow(**row: Any) -> None:
            for r in shadow_rows(**row):
                writer.log(r)

    tally = _Tally()
    scorer = ShadowScorer(Log(), tally)
    models: dict[tuple, ServedModel | Exception] = {}
    named: dict[tuple, ServedModel | Exception] = {}  # (version, folder) as the server sends it

    def model(version: int, folder: str) -> ServedModel:
        found = named.get((version, folder))  # every copy names its model: no path resolved
        if found is None:
            found = named[version, folder] = load(version, folder)
        if isinstance(found, Exception):
            raise found
        return found

    def load(version: int, folder: str) -> ServedModel | Exception:
        key = identity(version, folder)
        found = models.get(key)
        if found is None:
            try:
                found = load_version(system, version, folder, serving)
            except Exception as exc:
                logger.warning("shadow version %s (%s) cannot be loaded: %s", version, folder, exc)
                found = exc
            models[key] = found
        return found

    stdin, stdout = sys.stdin.fileno(), sys.stdout.buffer
    os.set_blocking(stdin, False)
    tables: dict[str, RoutingTable] = {}  # by experiment: rows logged before a switch count
    try:
        while True:
            head = _read(stdin, 4)
            header = head and _read(stdin, int.from_bytes(head, "little"))
            if header is None:  # the server closed the pipe
                break
            message = orjson.loads(header)
            lines = _read(stdin, message.get("lines") or 0)
            if lines is None:
                break
            if message.get("table"):
                table = RoutingTable.from_dict(message["table"])
                tables[table.experiment] = table
            for version, folder in message.get("load") or ():
                with contextlib.suppress(Exception):
                    model(version, folder)
            batch = []
            for arm, version, folder, experiment, rid, ts, instances, positions in (
                message.get("copies") or ()
            ):
                try:
                    served = model(version, folder)
                except Exception:
                    tally.inc()
                    continue
                routed = Routed(Arm(name=arm, version=version, package=folder), served)
                batch.append(_Copy(routed, experiment, rid, instances, positions, ts))
            if lines:
                batch.extend(_logged_copies(lines, tables, model, tally))
            scorer.score(batch)
            stdout.write(orjson.dumps({"seq": message.get("seq"), **tally.take()}) + b"\n")
            stdout.flush()
    finally:
        writer.close()


def _read(fd: int, n: int) -> bytes | None:
    """``n`` bytes from the server's pipe (None once it is closed), looked for every
    ``CHILD_POLL_S`` on a timer of the shadow process's own. Woken by the server's writes
    instead, the shadow process kept its core for the rest of its time slice when another
    task woke there (this 2-core VM's kernel did not preempt it): a client on that core
    waited 1 to 5 ms per batch, doubling its p99 at concurrency 8."""
    chunks, got = [], 0
    while got < n:
        try:
            data = os.read(fd, n - got)
        except BlockingIOError:
            time.sleep(CHILD_POLL_S)
            continue
        if not data:
            return None
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _logged_copies(
    lines: bytes, tables: dict[str, RoutingTable], model: Any, tally: _Tally
) -> list[_Copy]:
    """The copies the prediction log's ``lines`` hold for the shadows (those that score
    instances, not recommenders) of the experiments in ``tables``: one per request its
    table mirrors, with the logged instances, their places and the live row's time."""
    # experiment -> request id -> (instances, their places, the live row's time)
    requests: dict[str, dict[str, tuple[list, list, float]]] = {}
    for line in lines.splitlines():
        if b'"experiment":' not in line:  # not routed (no experiment, or a pinned version)
            continue
        row = orjson.loads(line)
        table = tables.get(row.get("experiment"))  # type: ignore[arg-type]
        if table is None or not table.mirrored(rid := row["request_id"]):
            continue
        mine = requests.setdefault(table.experiment, {})
        instances, places, _ = mine.setdefault(rid, ([], [], row["ts"]))
        instances.append(row["inputs"])
        places.append(row["instance"])
    copies = []
    for experiment, mine in requests.items():
        for arm in tables[experiment].shadows:
            try:
                served = model(arm.version, arm.package)
            except Exception:
                tally.inc(len(mine))
                continue
            if isinstance(served, ServedRecommender):  # it gets the requests themselves
                continue
            routed = Routed(arm, served)
            for rid, (instances, places, ts) in mine.items():
                copies.append(_Copy(routed, experiment, rid, instances, places, ts))
    return copies


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING, format="mlsd shadow: %(message)s")
    _child(json.loads(sys.argv[1]))

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

:class:`ShadowProcess` (what the server uses) scores copies of answered requests with the
shadow models in a child process at the lowest CPU priority: ``submit`` appends the copy
to a bounded queue and returns at once (a full queue drops the copy and counts it); a
thread hands what waits to the child every 10 ms; the child validates and predicts with
each shadow's own validator and model, in batches (:class:`ShadowScorer`, which can also
run on a thread of the calling process), and writes shadow rows. A shadow that fails is
counted; the caller's answer never waits for it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlsd.errors import MlsdError
from mlsd.models.routing import Arm, RoutingTable
from mlsd.serving.model import ServedModel, ServingError, identity, load_version
from mlsd.spec import ServingSpec

logger = logging.getLogger("mlsd.serving")

SHADOW_QUEUE = 1000  # requests waiting for the shadow worker; more are dropped and counted


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
    _same_inputs: dict[tuple[int, int], bool] = field(default_factory=dict, repr=False)

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

    def same_inputs(self, live: ServedModel, shadow: ServedModel) -> bool:
        """Whether ``shadow`` declares exactly the inputs of ``live`` (names, types, ranges,
        domains): then it accepts exactly what ``live`` accepted, and the values ``live``'s
        validator produced can be scored by ``shadow`` without validating them again."""
        key = (id(live), id(shadow))
        same = self._same_inputs.get(key)
        if same is None:
            same = self._same_inputs[key] = live.package.signature.get(
                "inputs"
            ) == shadow.package.signature.get("inputs")
        return same

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
    columns: dict[str, list] | None = None  # validated by the live model: scored as they are


class ShadowScorer:
    """Scores copies of answered requests with shadow models on one background thread.

    ``submit`` appends the copy to a deque: no lock and no wake-up of the worker, so the
    request path pays an append (a full queue drops the copy and counts it). The worker
    wakes every ``tick_s``, takes what waits in chunks of up to ``chunk`` copies, and scores
    each chunk's copies of one shadow in one validate and one predict call, then yields the
    GIL before the next chunk. In the server's own process even this batched thread still
    cost the caller 14-40% of its p50 on 2 cores (`bench_serving.py --router`, during
    development), so the server runs it in :class:`ShadowProcess`'s child. A shadow row's
    ``latency_ms`` is therefore the request's share of its chunk's scoring time (validation
    and prediction, in proportion to its instances), not the time a request alone would
    take.

    ``log`` needs a ``shadow(**row)`` method (:meth:`PredictionLog.shadow`); ``metrics``
    ``shadowed(arm, n)``, ``shadow_dropped`` and ``shadow_errors`` (:class:`ServerMetrics`).
    The thread starts with the first copy.
    """

    def __init__(
        self,
        log: Any,
        metrics: Any,
        *,
        max_queue: int = SHADOW_QUEUE,
        tick_s: float = 0.01,
        chunk: int = 16,
    ):
        self.log, self.metrics = log, metrics
        self._pending: collections.deque[_Copy] = collections.deque()
        self._max_queue, self._tick, self._chunk = int(max_queue), float(tick_s), int(chunk)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._working = False
        self.scored = self.dropped = self.errors = 0

    def submit(
        self,
        routing: Routing,
        request_id: str,
        instances: list,
        positions: list[int] | None = None,
        *,
        live: ServedModel | None = None,
        columns: dict[str, list] | None = None,
    ) -> None:
        """Queue a copy of the request for each shadow of ``routing``; never blocks.

        ``instances`` are the ones the live model accepted (at ``positions`` in the request,
        default 0, 1, ...); ``columns`` their values as ``live``'s validator produced them,
        reused for a shadow that declares the same inputs."""
        if self._closed:
            return
        if self._thread is None:
            self._start()
        ts = time.time()
        pending = self._pending
        for shadow in routing.shadows:
            if len(pending) >= self._max_queue:
                self.dropped += 1
                self.metrics.shadow_dropped.inc()
                continue
            reuse = (
                columns
                if columns is not None
                and live is not None
                and routing.same_inputs(live, shadow.model)
                else None
            )
            pending.append(
                _Copy(shadow, routing.experiment, request_id, instances, positions, ts, reuse)
            )

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="mlsd-shadow", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        pending = self._pending
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            stop = self._closed  # read first: what was queued before close() is scored
            self._working = True
            try:
                while pending:
                    batch = []
                    while pending and len(batch) < self._chunk:
                        batch.append(pending.popleft())
                    self._score_batch(batch)
                    time.sleep(0)  # the request path takes the GIL between chunks
            finally:
                self._working = False
            if stop:
                return

    def _score_batch(self, batch: list[_Copy]) -> None:
        groups: dict[tuple[int, str, str], list[_Copy]] = {}
        for copy in batch:
            key = (id(copy.routed.model), copy.routed.arm.name, copy.experiment)
            groups.setdefault(key, []).append(copy)
        for copies in groups.values():
            try:
                validated = [c for c in copies if c.columns is not None]
                if validated:
                    self._score_columns(validated)
                if len(validated) < len(copies):
                    self._score([c for c in copies if c.columns is None])
            except Exception as exc:  # a shadow never takes the server down
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

    def _score_columns(self, copies: list[_Copy]) -> None:
        """Score copies whose values the live model's validator produced (same inputs)."""
        routed = copies[0].routed
        model = routed.model
        names = list(copies[0].columns)
        columns: dict[str, list] = {name: [] for name in names}
        for copy in copies:
            for name in names:
                columns[name].extend(copy.columns[name])
        started = time.perf_counter()
        outputs = model.predict(columns)
        elapsed_ms = (time.perf_counter() - started) * 1000
        at = 0
        for copy in copies:
            n = len(copy.instances)
            self.log.shadow(
                request_id=copy.request_id,
                model_version=model.label,
                experiment=copy.experiment,
                arm=routed.arm.name,
                outputs=outputs[at : at + n],
                latency_ms=elapsed_ms * n / len(outputs),
                ts=copy.ts,
                positions=copy.positions,
            )
            at += n
        self.scored += len(outputs)
        self.metrics.shadowed(routed.arm.name, len(outputs))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued copy is scored (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending or self._working:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued, then stop the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(timeout)


# --- shadows in a process of their own -----------------------------------------------------


class _Tally:
    """Counts what a :class:`ShadowScorer` reports (in the shadow process, for the server)."""

    def __init__(self) -> None:
        self.scored: dict[str, int] = {}
        self.errors = 0
        self.shadow_errors = self  # ShadowScorer calls metrics.shadow_errors.inc(n)
        self.shadow_dropped = self

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

    The request path pays what :class:`ShadowScorer` costs it (an append to a deque; a full
    queue drops the copy and counts it). A sender thread wakes every ``tick_s`` and writes
    what waits to the child's stdin as one frame (4-byte length, then JSON: the accepted
    instances, request id, arm, version and package folder of each copy); the child
    (``python -m mlsd.serving.router``, at the lowest CPU priority: ``SCHED_IDLE`` on Linux, else nice 19) loads each shadow's package
    once, verified as the server would, scores the copies with a :class:`ShadowScorer`'s
    batching and writes the shadow rows to the same log with a writer of its own. It answers
    each frame with a line of counts, which a reader thread adds to ``metrics``. When the
    child is busy the pipe fills, the sender waits and the queue drops: a shadow never slows
    the answers. A child that dies is started again with the next copies; copies it lost
    count as errors.
    """

    def __init__(
        self,
        log: Any,
        metrics: Any,
        system: str,
        serving: ServingSpec,
        *,
        max_queue: int = SHADOW_QUEUE,
        tick_s: float = 0.01,
        nice: int = 19,
    ):
        self.log, self.metrics, self.system, self.serving = log, metrics, system, serving
        self._pending: collections.deque[tuple] = collections.deque()
        self._max_queue, self._tick, self._nice = int(max_queue), float(tick_s), int(nice)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._proc: Any = None
        self._reader: threading.Thread | None = None
        self._loads: list[list] = []  # packages to load ahead of the first copies
        self._closed = False
        self._sent = self._acked = 0  # frames
        self._handing = False  # the sender holds copies taken from the queue, not yet sent
        self._in_flight: dict[int, int] = {}  # frame -> copies, until the child answers
        self._loaded: set[tuple] = set()  # (version, folder) the child was asked to load
        self.scored = self.dropped = self.errors = 0

    # -- request path

    def submit(
        self,
        routing: Routing,
        request_id: str,
        instances: list,
        positions: list[int] | None = None,
        *,
        live: ServedModel | None = None,
        columns: dict[str, list] | None = None,
    ) -> None:
        """Queue a copy of the request for each shadow of ``routing``; never blocks."""
        if self._closed:
            return
        if self._sender is None:
            self._start()
        ts = time.time()
        pending = self._pending
        for shadow in routing.shadows:
            if len(pending) >= self._max_queue:
                self.dropped += 1
                self.metrics.shadow_dropped.inc()
                continue
            arm = shadow.arm
            pending.append(
                (arm.name, arm.version, arm.package, routing.experiment, request_id, ts,
                 instances, positions)
            )  # fmt: skip

    def prepare(self, routing: Routing) -> None:
        """Start the child and have it load ``routing``'s shadows before copies arrive."""
        if self._closed or not routing.shadows:
            return
        with self._lock:
            self._loads.extend([r.arm.version, r.arm.package] for r in routing.shadows)
        if self._sender is None:
            self._start()
        self._wake.set()

    # -- threads

    def _start(self) -> None:
        with self._lock:
            if self._sender is None and not self._closed:
                self._sender = threading.Thread(
                    target=self._send_loop, name="mlsd-shadow-sender", daemon=True
                )
                self._sender.start()

    def _spawn(self) -> Any:
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
        )
        reader = threading.Thread(
            target=self._read_loop, args=(proc,), name="mlsd-shadow-reader", daemon=True
        )
        reader.start()
        self._proc, self._reader = proc, reader
        return proc

    def _send(self, message: dict[str, Any], copies: int) -> None:
        """One frame to the child (started, or started again, on demand)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._lost()
            proc = self._spawn()
            message["load"] = [*message.get("load", []), *(list(k) for k in self._loaded)]
        self._sent += 1
        message["seq"] = self._sent
        self._in_flight[self._sent] = copies
        data = orjson.dumps(message, default=_default)
        try:
            proc.stdin.write(len(data).to_bytes(4, "little") + data)
        except (BrokenPipeError, OSError, ValueError):
            self._lost()

    def _lost(self) -> None:
        """The child died: the copies it had not answered count as errors."""
        lost = sum(self._in_flight.values())
        self._in_flight.clear()
        if lost:
            self.errors += lost
            self.metrics.shadow_errors.inc(lost)
        logger.warning("the shadow process ended; %d copies lost", lost)

    def _send_loop(self) -> None:
        pending = self._pending
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            stop = self._closed
            self._handing = True  # drain() waits while copies are neither queued nor sent
            with self._lock:
                loads, self._loads = self._loads, []
            copies = []
            while pending:
                copies.append(pending.popleft())
            if loads or copies:
                self._loaded.update((v, str(p)) for v, p in loads)
                self._send({"load": loads, "copies": copies}, len(copies))
            self._handing = False
            if stop:
                proc = self._proc
                if proc is not None and proc.poll() is None:
                    with contextlib.suppress(OSError, ValueError):
                        proc.stdin.close()  # end of input: the child finishes and exits
                return

    def _read_loop(self, proc: Any) -> None:
        for line in proc.stdout:
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
            # acknowledged last: drain() returns only once the frame is counted
            self._in_flight.pop(answer.get("seq"), None)
            self._acked = max(self._acked, int(answer.get("seq", 0)))

    # -- tests and shutdown

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued copy is scored and counted."""
        deadline = time.monotonic() + timeout
        while (
            self._pending
            or self._handing
            or self._acked < self._sent
            or (self._loads and self._sender)
        ):
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 20.0) -> None:
        """Send what is queued, let the child score it and exit. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sender = self._sender
        if sender is None:
            return
        self._wake.set()
        sender.join(timeout)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout)
            except Exception:
                proc.kill()
                proc.wait()
            if self._reader is not None:
                self._reader.join(timeout)
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
    with contextlib.suppress(OSError, AttributeError):  # Linux: run only on idle CPU
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
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

    def model(version: int, folder: str) -> ServedModel:
        key = identity(version, folder)
        found = models.get(key)
        if found is None:
            try:
                found = load_version(system, version, folder, serving)
            except Exception as exc:
                logger.warning("shadow version %s (%s) cannot be loaded: %s", version, folder, exc)
                found = exc
            models[key] = found
        if isinstance(found, Exception):
            raise found
        return found

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                break
            message = orjson.loads(stdin.read(int.from_bytes(head, "little")))
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
            for at in range(0, len(batch), scorer._chunk):
                scorer._score_batch(batch[at : at + scorer._chunk])
            stdout.write(orjson.dumps({"seq": message.get("seq"), **tally.take()}) + b"\n")
            stdout.flush()
    finally:
        writer.close()


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING, format="mlsd shadow: %(message)s")
    _child(json.loads(sys.argv[1]))

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

:class:`ShadowScorer` scores copies of answered requests with the shadow models on one
background thread: ``submit`` puts the copy on a bounded queue and returns at once (a full
queue drops the copy and counts it); the worker validates and predicts with the shadow's
own validator and model and writes shadow rows with the shadow's own latency. A shadow that
fails is counted; the caller's answer was sent before it ran.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    """Scores copies of answered requests with shadow models on one background thread.

    ``log`` needs a ``shadow(**row)`` method (:meth:`PredictionLog.shadow`); ``metrics``
    ``shadowed(arm, n)``, ``shadow_dropped`` and ``shadow_errors`` (:class:`ServerMetrics`).
    The thread starts with the first copy.
    """

    def __init__(self, log: Any, metrics: Any, *, max_queue: int = SHADOW_QUEUE):
        self.log, self.metrics = log, metrics
        self._queue: queue.Queue[_Copy | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.scored = self.dropped = self.errors = 0

    def submit(
        self,
        routing: Routing,
        request_id: str,
        instances: list,
        positions: list[int] | None = None,
    ) -> None:
        """Queue a copy of the request for each shadow of ``routing``; never blocks."""
        if self._closed:
            return
        if self._thread is None:
            self._start()
        ts = time.time()
        for shadow in routing.shadows:
            try:
                self._queue.put_nowait(
                    _Copy(shadow, routing.experiment, request_id, instances, positions, ts)
                )
            except queue.Full:
                self.dropped += 1
                self.metrics.shadow_dropped.inc()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="mlsd-shadow", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            copy = self._queue.get()
            if copy is None:
                self._queue.task_done()
                return
            try:
                self._score(copy)
            except Exception as exc:  # a shadow never takes the server down
                self.errors += 1
                self.metrics.shadow_errors.inc()
                logger.warning(
                    "shadow %s failed on request %s: %s", copy.routed.arm.name, copy.request_id, exc
                )
            finally:
                self._queue.task_done()

    def _score(self, copy: _Copy) -> None:
        model = copy.routed.model
        started = time.perf_counter()
        checked = model.validator.validate(copy.instances)
        if not checked.accepted:
            raise ServingError(
                f"the shadow refused every instance ({len(checked.problems)} problem(s))"
            )
        outputs = model.predict(checked.columns)
        latency_ms = (time.perf_counter() - started) * 1000
        positions = copy.positions or list(range(len(copy.instances)))
        self.log.shadow(
            request_id=copy.request_id,
            model_version=model.label,
            experiment=copy.experiment,
            arm=copy.routed.arm.name,
            outputs=outputs,
            latency_ms=latency_ms,
            ts=copy.ts,
            positions=[positions[i] for i in checked.accepted],
        )
        self.scored += len(outputs)
        self.metrics.shadowed(copy.routed.arm.name, len(outputs))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued copy is scored (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
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
            try:  # after everything queued: the worker scores it first
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            thread.join(timeout)

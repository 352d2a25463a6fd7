"""``mlsd loop``: monitor, then retrain if needed, on an interval or once.

Each iteration runs :func:`mlsd.monitoring.monitor.monitor` on the served traffic (new
alerts go to the event log and the webhook, the report to the workspace), then
:func:`mlsd.loop.retrain.retrain` with ``if_needed=True``: the spec's triggers decide
whether to train a challenger, the gate decides whether it is promoted, and the
workspace's retrain lock keeps two retrains (of this loop, of another loop, of a manual
``mlsd retrain``) from running at once. A server that follows the ``champion`` alias picks
the promoted version up by itself.

The loop is made for cron (``--once``) and for a container (an interval): SIGINT and
SIGTERM end it between iterations, never inside a retrain; an iteration that fails is
reported, with the error, and the loop goes on to the next one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlsd.errors import MlsdError
from mlsd.spec import SystemSpec
from mlsd.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass
class Iteration:
    """One pass of the loop: what monitoring found, what retraining did, or the error."""

    index: int
    started_at: str
    seconds: float = 0.0
    monitor: dict[str, Any] | None = None
    retrain: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    exit_code: int = 0
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """One JSON object per iteration (``mlsd loop --json`` prints one per line)."""
        return {
            "iteration": self.index,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "monitor": self.monitor,
            "retrain": self.retrain,
            "rollout": self.rollout,
            "error": self.error,
            "exit_code": self.exit_code,
        }

    def line(self) -> str:
        """The iteration in one line of text."""
        head = f"{self.started_at} #{self.index}"
        return " · ".join([head, *self.summary, f"{self.seconds:.1f} s"])


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _monitor_step(spec: SystemSpec, workspace: Workspace) -> tuple[dict[str, Any], str, Any]:
    """Monitor the champion's traffic (alerts published, the report written). Nothing to
    monitor yet is a state to report, not a failure: the error goes to the triggers, which
    say "not monitored" with its reason."""
    from mlsd.engine import log_reader
    from mlsd.monitoring.monitor import MonitorError, monitor

    try:
        result = monitor(spec, workspace, model="champion", engine=log_reader(spec))
    except MonitorError as exc:
        quiet = exc.message.startswith("no predictions")  # the champion served nothing yet
        text = "monitor: nothing to monitor yet" if quiet else f"monitor: not run ({exc.message})"
        return {"ran": False, "reason": exc.message}, text, exc
    latest = result.latest_alerts
    found = {
        "ran": True,
        "exit_code": result.exit_code,
        "n_predictions": result.report["n_predictions"],
        "n_labelled": result.report["n_labelled"],
        "latest_alerts": [
            {"kind": a.kind, "check": a.check, "subject": a.subject, "message": a.message}
            for a in latest
        ],
        "report": result.paths.get("report"),
    }
    head = f"monitor: {found['n_predictions']:,} predictions"
    if not latest:
        return found, f"{head}, no alert", result
    kinds: dict[str, list[str]] = {}
    for a in latest:
        kinds.setdefault(a.kind.removesuffix("_alert"), []).append(a.subject or a.check)
    shown = "; ".join(f"{k} {', '.join(dict.fromkeys(v))}" for k, v in kinds.items())
    return found, f"{head}, {len(latest)} alert(s) ({shown})", result


def _retrain_line(result: Any) -> str:
    """What retraining did, in a few words with the figures that decided it."""
    if not result.needed:
        return "retrain: not needed (no trigger fired)"
    names = ", ".join(t["name"] for t in result.fired) or "asked for"
    if result.challenger_version is None:
        return f"retrain ({names}): no challenger ({'; '.join(result.reasons)})"
    text = f"retrain ({names}): challenger v{result.challenger_version}"
    cmp = result.comparison or {}
    if cmp.get("challenger") is not None and cmp.get("champion") is not None:
        text += (
            f" {cmp['metric']} {cmp['challenger']:.4g} vs champion v{result.champion_version} "
            f"{cmp['champion']:.4g} on {cmp['n_holdout']:,} fresh rows"
        )
    if result.promoted:
        return text + " → PROMOTED"
    if result.rollout:
        return text + f" → {result.rollout['strategy']} {result.rollout['experiment']} started"
    return text + f" → REFUSED ({'; '.join(result.reasons)})"


def run_iteration(spec: SystemSpec, workspace: Workspace, index: int = 1) -> Iteration:
    """Monitor, then retrain if needed: one iteration, never raising (a failure is in
    ``error`` with a non-zero ``exit_code``)."""
    from mlsd.loop.retrain import retrain
    from mlsd.rollout import controller

    started = time.perf_counter()
    it = Iteration(index=index, started_at=_now_iso())
    try:
        it.monitor, text, monitored = _monitor_step(spec, workspace)
        it.summary.append(text)
        if controller.running(workspace) is not None:  # live traffic decides, not a retrain
            experiment, decision = controller.step(spec, workspace)
            it.rollout = {"experiment": experiment.id, "status": experiment.status}
            it.rollout |= {k: v for k, v in decision.to_dict().items() if k != "evidence"}
            why = "; ".join(decision.reasons or decision.waiting_for)
            it.summary.append(f"rollout {experiment.strategy}: {decision.action} ({why})")
            it.seconds = time.perf_counter() - started
            return it
        result = retrain(spec, workspace, if_needed=True, progress=False, monitor_result=monitored)
        it.retrain = result.to_dict()
        it.exit_code = int(result.exit_code)
        it.summary.append(_retrain_line(result))
    except MlsdError as exc:
        it.error = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        it.exit_code = exc.exit_code
        it.summary.append(f"FAILED: {exc.headline}: {exc.message}")
    except Exception as exc:  # the loop outlives one bad iteration; the error is reported
        logger.exception("loop iteration %d failed", index)  # a bug: keep its traceback
        it.error = {"type": type(exc).__name__, "message": str(exc), "hint": None}
        it.exit_code = 1
        it.summary.append(f"FAILED: {type(exc).__name__}: {exc}")
    it.seconds = time.perf_counter() - started
    return it


class _StopOnSignal:
    """SIGINT/SIGTERM set ``stop`` so the loop ends between iterations; a second signal
    interrupts at once. Installed only from the main thread (Python's rule)."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_loop(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    interval_s: float = 3600.0,
    once: bool = False,
    max_iterations: int | None = None,
    on_iteration: Callable[[Iteration], None] | None = None,
    stop: threading.Event | None = None,
) -> list[Iteration]:
    """Run :func:`run_iteration` every ``interval_s`` seconds (measured start to start)
    until ``once``, ``max_iterations``, SIGINT/SIGTERM or ``stop`` ends it.

    ``on_iteration`` receives each iteration as soon as it ends (the CLI prints it).
    Returns every iteration run.
    """
    if interval_s <= 0 and not once and max_iterations is None:
        raise MlsdError(
            f"a loop interval must be positive (given {interval_s:g} s)",
            hint="pass --interval 1h (or 15m, 30s), or --once for a single iteration",
            headline="bad loop interval",
        )
    ws = workspace or Workspace.for_spec(spec)
    stop = stop or threading.Event()
    limit = 1 if once else max_iterations
    done: list[Iteration] = []
    with _StopOnSignal(stop):
        while not stop.is_set():
            began = time.monotonic()
            it = run_iteration(spec, ws, index=len(done) + 1)
            done.append(it)
            if on_iteration is not None:
                on_iteration(it)
            if limit is not None and len(done) >= limit:
                break
            stop.wait(max(0.0, interval_s - (time.monotonic() - began)))
    return done

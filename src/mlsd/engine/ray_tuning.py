"""Tuning trials on a Ray cluster: Optuna asks here, the cluster fits.

:class:`RayTrials` is the :class:`mlsd.models.tuning.TrialPool` of the Ray engine. The
training data goes to the object store once per tuned family (``share``); each trial is one
Ray task running :func:`mlsd.models.tuning.timed_trial` on it (fit, and predict the
validation rows or every row out of fold) and returns the model and predictions; the
driver scores them and tells the study. A trial takes one CPU, so the cluster runs as many
at once as it has CPUs.
"""

from __future__ import annotations

from typing import Any

from mlsd.engine.cluster import EngineError, connect, cpus
from mlsd.models.tuning import OutOfTime, timed_trial
from mlsd.spec import EngineSpec


class RayTrials:
    """Fits tuning trials as Ray tasks on the cluster ``engine`` names (joined, or started
    here, on first use)."""

    def __init__(self, engine: EngineSpec, slots: int | None = None):
        self.engine = engine
        self._slots = slots
        self._ray: Any = None
        self._task: Any = None

    def _connect(self) -> Any:
        if self._ray is None:
            self._ray = connect(self.engine)
            self._task = self._ray.remote(num_cpus=1, max_retries=0)(timed_trial)
        return self._ray

    @property
    def slots(self) -> int:
        """Trials fitted at once: the cluster's CPUs (or as given)."""
        return self._slots or cpus(self._connect())

    def share(self, data: Any) -> Any:
        return self._connect().put(data)

    def submit(self, shared: Any, *args: Any) -> Any:
        self._connect()
        return self._task.remote(shared, *args)

    def finished(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        if done:  # everything else already done too, without waiting again
            more, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0)
            done = more or done
        return done

    def result(self, handle: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(handle)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, OutOfTime):  # the trial's seconds ran out: pruned
                raise exc.cause from None
            raise EngineError(
                f"a tuning trial failed on the Ray cluster: {exc.cause!r}",
                hint="--engine local fits the same trial in this process",
            ) from exc

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=True)

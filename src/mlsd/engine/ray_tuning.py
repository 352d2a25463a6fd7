"""Tuning trials on a Ray cluster: Optuna asks here, the cluster fits.

:class:`RayTrials` is the :class:`mlsd.models.tuning.TrialPool` of the Ray engine. The
training data goes to the object store once per tuned family (``share``). A trial on a
validation split is one Ray task running :func:`mlsd.models.tuning.timed_trial` (fit,
predict the validation rows); a cross-validated trial is one task per fold
(:func:`mlsd.models.tuning.fit_fold`), its folds fitted at once, and a task without a CPU of
its own that joins them (:func:`mlsd.models.tuning.out_of_fold`). The driver scores what
comes back and tells the study. A fit takes one CPU: the cluster runs as many trials at once
as it has CPUs, or, cross-validated, as many as keep every CPU busy with their folds.
"""

from __future__ import annotations

import math
from typing import Any

from mlsd.engine.cluster import EngineError, connect, cpus
from mlsd.models.base import FitData
from mlsd.models.tuning import OutOfTime, fit_fold, out_of_fold, timed_trial
from mlsd.spec import EngineSpec


def _joined(data: FitData, params: dict[str, Any], *folds: Any) -> tuple:
    """A cross-validated trial's folds as :func:`timed_trial` returns a trial: its seconds
    are the folds' fitting seconds added up, as fitted one after another."""
    final, oof = out_of_fold(data, params, list(folds))
    return None, final, oof, sum(seconds for _, _, seconds in folds)


class RayTrials:
    """Fits tuning trials as Ray tasks on the cluster ``engine`` names (joined, or started
    here, on first use)."""

    def __init__(self, engine: EngineSpec, slots: int | None = None):
        self.engine = engine
        self._slots = slots
        self._ray: Any = None
        self._folds = 0  # of the data shared last
        self._parts: dict[Any, list[Any]] = {}  # a cross-validated trial -> its folds' tasks

    def _connect(self) -> Any:
        if self._ray is None:
            ray = self._ray = connect(self.engine)
            self._trial = ray.remote(num_cpus=1, max_retries=0)(timed_trial)
            self._fold = ray.remote(num_cpus=1, max_retries=0)(fit_fold)
            self._join = ray.remote(num_cpus=0, max_retries=0)(_joined)
        return self._ray

    @property
    def slots(self) -> int:
        """Trials fitted at once: the cluster's CPUs, or enough cross-validated trials for
        their folds to fill them (or as given)."""
        if self._slots:
            return self._slots
        return max(1, math.ceil(cpus(self._connect()) / max(1, self._folds)))

    def share(self, data: Any) -> Any:
        self._folds = len(data.folds or ())
        return self._connect().put(data)

    def submit(self, shared: Any, family, task, params, seed, seconds) -> Any:
        """A trial: one task, or one per fold and their join (its handle). A fold is not
        given the trial's seconds: the folds run at once, and the driver cancels them all
        at the deadline."""
        self._connect()
        if not self._folds:
            return self._trial.remote(shared, family, task, params, seed, seconds)
        parts = [
            self._fold.remote(family, task, params, seed, shared, index)
            for index in range(self._folds)
        ]
        handle = self._join.remote(shared, params, *parts)
        self._parts[handle] = parts
        return handle

    def finished(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        if done:  # everything else already done too, without waiting again
            more, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0)
            done = more or done
        return done

    def result(self, handle: Any) -> Any:
        ray = self._ray
        self._parts.pop(handle, None)
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
        for part in self._parts.pop(handle, []):
            self._ray.cancel(part, force=True)
        self._ray.cancel(handle, force=True)

"""Where the heavy work runs: this process (the default) or a Ray cluster (``mlsd[ray]``).

Each function here picks, for one command, the local engine or the Ray one: ``--engine``
when given, else the spec's ``engine.kind``. Ray is imported only when it is picked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlsd.models.tuning import TrialPool
    from mlsd.spec import SystemSpec


def kind(spec: SystemSpec, override: str | None = None) -> str:
    """The engine a command runs on: ``--engine`` when given, else ``engine.kind``."""
    return override or spec.engine.kind


def trial_pool(spec: SystemSpec, override: str | None = None) -> TrialPool | None:
    """Where tuning trials are fitted: None (one after another, here) or a Ray pool."""
    if kind(spec, override) != "ray":
        return None
    from mlsd.engine.ray_tuning import RayTrials

    return RayTrials(spec.engine)


def batch_scorer(spec: SystemSpec, override: str | None = None) -> Callable:
    """The ``engine`` of :func:`mlsd.serving.batch.predict_batch`."""
    if kind(spec, override) != "ray":
        from mlsd.serving.batch import score_here

        return score_here
    from mlsd.engine.ray_batch import on_ray

    return on_ray(spec.engine, spec.serving)


def recommender(spec: SystemSpec, override: str | None = None) -> Callable:
    """The ``engine`` of :func:`mlsd.serving.recommend.recommend_batch`."""
    if kind(spec, override) != "ray":
        from mlsd.serving.recommend import recommend_here

        return recommend_here
    from mlsd.engine.ray_batch import recommend_on_ray

    return recommend_on_ray(spec.engine, spec.serving)


def log_reader(spec: SystemSpec, override: str | None = None) -> Callable:
    """The ``engine`` of :func:`mlsd.monitoring.monitor.monitor`: how the log is read."""
    if kind(spec, override) != "ray":
        from mlsd.monitoring.windows import LogRows

        return LogRows
    from mlsd.engine.ray_monitoring import log_on_ray

    return log_on_ray(spec.engine)

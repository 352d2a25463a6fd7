"""Where the heavy work runs: this process (the default) or a Ray cluster (``mlsd[ray]``)."""

from __future__ import annotations

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

"""Joining or starting the Ray cluster that ``engine: {kind: ray}`` names.

Ray is imported here, inside the functions, and only when asked for: the local engine never
needs it installed.
"""

from __future__ import annotations

import logging
from typing import Any

from mlsd.errors import MlsdError
from mlsd.spec import EngineSpec


class EngineError(MlsdError):
    """The Ray engine cannot be used: not installed, or the cluster cannot be reached."""

    headline = "engine error"


def ray_module() -> Any:
    """``ray``, or an :class:`EngineError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError(
            "the Ray engine was asked for (engine.kind: ray or --engine ray) but Ray is not "
            "installed in this Python",
            hint="pip install 'mlsd[ray]', or use the local engine (engine.kind: local)",
        ) from exc
    return ray


def connect(engine: EngineSpec) -> Any:
    """Join the cluster ``engine`` names, or start one on this machine; return ``ray``.

    A Ray already initialised in this process is used as it is (a test's, or the
    caller's). The connection stays open for later work in this process, as Ray's own API
    does; ``ray.shutdown()`` ends it."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' output stays in Ray's session logs
        "logging_level": logging.WARNING,
    }
    if engine.address:
        options["address"] = engine.address
    else:  # started here (unless RAY_ADDRESS names a cluster): the spec's sizes apply
        if engine.num_cpus:
            options["num_cpus"] = engine.num_cpus
        if engine.object_store_mb:
            options["object_store_memory"] = engine.object_store_mb * 1024 * 1024
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = engine.address or "a new local cluster"
        raise EngineError(
            f"cannot connect to the Ray cluster at {where}: {exc}",
            hint="start one with `ray start --head` and set engine.address to the address it "
            "prints, or leave engine.address unset to start one here",
        ) from exc
    return ray


def cpus(ray: Any) -> int:
    """CPUs the cluster has in all."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def reason(exc: BaseException) -> str:
    """What went wrong in the cluster, without Ray's wrapping: an mlsd error's own message,
    else the innermost exception's type and text."""
    seen: list[BaseException] = []
    found: BaseException | None = exc
    while found is not None and found not in seen:
        if isinstance(found, MlsdError):
            return found.message
        seen.append(found)
        found = getattr(found, "cause", None) or found.__cause__
    inner = seen[-1]
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"

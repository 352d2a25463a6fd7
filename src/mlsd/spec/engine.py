"""Where the heavy work runs: this process (``local``, the default) or a Ray cluster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlsd.spec.base import Section


class EngineSpec(Section):
    kind: Literal["local", "ray"] = Field(
        "local",
        description="local: everything in this process (the default; no cluster needed). "
        "ray: batch scoring (`mlsd predict`), tuning trials (`mlsd train`) and server "
        "replicas (`mlsd serve`) run on a Ray cluster (`pip install 'mlsd[ray]'`); "
        "`--engine` on a command overrides it.",
    )
    address: str | None = Field(
        None,
        description="The Ray cluster: unset starts one on this machine (or joins "
        "RAY_ADDRESS when set), 'auto' joins the one running here, 'host:port' (a head "
        "started with `ray start --head`) or 'ray://host:port' (Ray Client) joins that one.",
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of a cluster mlsd starts itself (default: all)."
    )
    object_store_mb: int | None = Field(
        None,
        ge=80,
        description="Object store of a cluster mlsd starts itself, in MB (default: Ray's, "
        "30% of memory).",
    )
    actors: int | None = Field(
        None,
        ge=1,
        description="Batch scoring actors, each holding the verified model once (default: "
        "the cluster's CPUs less one for the driver, at least one).",
    )
    replicas: int = Field(
        2,
        ge=1,
        description="`mlsd serve` replicas on Ray: mlsd servers sharing serving.port (one CPU "
        "each); each also answers on serving.port + 1 + its index.",
    )

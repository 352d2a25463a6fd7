"""``mlsd serve --engine ray --replicas N``: mlsd servers that Ray places, one per replica.

Each replica is a Ray actor (one CPU) running mlsd's own server, the same app as
``mlsd serve``: routes, validation, the routing table, the shadow process and the prediction
log. Replicas on one node share the serving port with ``SO_REUSEPORT``, so the kernel spreads
connections among them with no proxy hop on the request path (Ray Serve's proxy adds
milliseconds to a model that answers in a fraction of one: BENCHMARKS.md); across nodes, the
cluster's own balancer (a Kubernetes Service, a cloud load balancer) fronts the nodes. Each
replica also listens on a port of its own (the serving port + 1 + its index) for what must
reach one replica: ``/metrics`` for Prometheus, ``/readyz``.

Each replica writes its own log segments into the shared log folder (a segment's name holds
its writer's pid), so a reader sees one log; feedback reaching another replica than the one
that answered finds the request in that replica's open segment.

The driver (the ``mlsd serve`` process) keeps the replicas: when it ends, so do they.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from mlsd.engine.cluster import EngineError, connect, reason
from mlsd.spec import EngineSpec, ServingSpec


def bind(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``shared`` lets other processes bind the same
    port (``SO_REUSEPORT``: the kernel spreads new connections among them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class Replica:
    """One mlsd server in a Ray actor: ``start`` loads and verifies the model, then serves on
    the shared port and its own until ``stop``."""

    def __init__(self, root: str, system: str, serving: dict[str, Any], ref: str, index: int):
        self.root, self.system, self.ref, self.index = root, system, ref, index
        self.serving = ServingSpec.model_validate(serving)
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> dict[str, Any]:
        import os

        import uvicorn

        from mlsd.serving.app import Server, create_app

        server = Server(Path(self.root), self.system, self.serving, ref=self.ref)
        loaded = server.load()  # a model that cannot serve stops here, with the reason
        host, port = self.serving.host, self.serving.port
        own = port + 1 + self.index
        sockets = [bind(host, port, shared=True), bind(host, own, shared=False)]
        config = uvicorn.Config(
            create_app(server),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": sockets}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.index} did not start serving")
            time.sleep(0.02)
        return {
            "index": self.index,
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "version": loaded["version"],
            "own_port": own,
        }

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(30)


def serve_replicas(
    engine: EngineSpec,
    root: Path,
    system: str,
    serving: ServingSpec,
    ref: str,
    replicas: int,
    on_ready=print,
) -> None:
    """Start ``replicas`` mlsd servers on the cluster, report each with ``on_ready``, and
    keep them until this process is interrupted or terminated (then stop them: their logs
    are flushed); raises KeyboardInterrupt then."""
    if replicas < 1:
        raise EngineError(
            f"--replicas {replicas}: at least one replica serves",
            hint="pass --replicas 1 or more (default: engine.replicas)",
        )
    if serving.port == 0:
        raise EngineError(
            "replicas share one port: serving.port must be a number, not 0",
            hint="set serving.port or pass --port",
        )
    ray = connect(engine)
    if threading.current_thread() is threading.main_thread():
        # after ray.init, which installs its own: SIGTERM stops the replicas, as Ctrl-C does
        signal.signal(signal.SIGTERM, _interrupt)
    actor = ray.remote(num_cpus=1, max_restarts=0)(Replica)
    handles = [
        actor.options(scheduling_strategy="SPREAD").remote(
            str(root), system, serving.model_dump(mode="json"), ref, i
        )
        for i in range(replicas)
    ]
    try:
        try:
            started = ray.get([h.start.remote() for h in handles])
        except ray.exceptions.RayError as exc:
            raise EngineError(
                f"a replica could not start: {reason(exc)}",
                hint="mlsd serve without --engine ray shows the reason in this process",
            ) from exc
        for info in started:
            on_ready(info)
        while True:
            time.sleep(1.0)
    finally:
        with contextlib.suppress(ray.exceptions.RayError):  # replicas already gone
            ray.get([h.stop.remote() for h in handles], timeout=40)
        for h in handles:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.kill(h)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt

"""A real `mlsd serve` process on a free port of 127.0.0.1 (or the same app on a thread of
this process), and a keep-alive JSON client."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive free ports, drawn below the kernel's ephemeral range
    (32768 up) and above Ray's worker ports (10002-19999): ports the kernel hands to other
    sockets, Ray's among them, can be taken between this check and the server's bind."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32768 - n)
        try:
            with ExitStack() as stack:
                for port in range(base, base + n):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports between 20000 and 32767")


def mlsd_command() -> list[str]:
    script = Path(sys.executable).with_name("mlsd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlsd"]


class Client:
    """JSON over one keep-alive HTTP connection."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"content-type": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body=data, headers=hdrs)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()  # the server closed a kept-alive connection: reconnect once
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request(method, path, body=data, headers=hdrs)
            response = self.conn.getresponse()
        text = response.read()
        kind = response.getheader("content-type", "")
        payload = json.loads(text) if "json" in kind else text.decode()
        return response.status, payload, dict(response.getheaders())

    def close(self) -> None:
        self.conn.close()


class ServerProcess:
    """`mlsd serve` in a child process; started and stopped by the test that needs it."""

    def __init__(self, folder: Path, *args: str, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.folder = folder
        full_env = {**os.environ, "MLSD_ADMIN_TOKEN": TOKEN, **(env or {})}
        full_env.pop("MLSD_HOME", None)
        self.proc = subprocess.Popen(
            [*mlsd_command(), "serve", "--port", str(self.port), *args],
            cwd=folder,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_ready()
        self.client = Client(self.port)

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"mlsd serve exited {self.proc.returncode}: {out}\n{err}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("mlsd serve did not become ready in time")

    def stop(self) -> tuple[str, str]:
        """Graceful: SIGTERM, then wait for the process to flush and exit."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return out, err

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@contextmanager
def served_in_thread(server: Any) -> Iterator[Client]:
    """A loaded ``mlsd.serving.app.Server`` answering on a free port from a uvicorn thread of
    this process (cheaper than a process when a test needs no CLI); yields a client."""
    import uvicorn

    from mlsd.serving.app import create_app

    config = uvicorn.Config(
        create_app(server),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        access_log=False,
    )
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not web.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    client = Client(config.port)
    try:
        yield client
    finally:
        client.close()
        web.should_exit = True
        thread.join(timeout=20)  # the lifespan's exit flushes the prediction log

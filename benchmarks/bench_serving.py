"""Serving benchmark: `mlsd serve` against a minimal LightGBM app and `mlflow models serve`.

    python benchmarks/bench_serving.py [--duration 5] [--warmup 1] [--concurrency 1,8,32]
                                       [--repeat 3] [--batch-rows 1000000] [--profile 0]
                                       [--no-write]
    python benchmarks/bench_serving.py --router [--concurrency 1,8] [--duration 40] [--no-pin]
    python benchmarks/bench_serving.py --rank [--concurrency 1,8] [--repeat 3] ...

One LightGBM model (a binary table of 20 numeric features, trained by mlsd with LightGBM
only and default parameters) is served three ways, each in its own process on a free port
of 127.0.0.1. mlsd and the floor run side by side and take turns, so that the machine's
drift over minutes (a shared VM's) hits both alike; MLflow runs after them:

- mlsd: ``mlsd serve -c system.yaml --port P`` (``serving.poll_s: 0``), ``POST /v1/predict``
  with ``{"instances": [row]}``: validation, featurizer, model, prediction log, metrics.
- floor: a bare ASGI callable under the same uvicorn (httptools, uvloop) that parses the
  same body with orjson and calls ``lightgbm.Booster.predict`` on one row (one thread).
- peer: ``mlflow models serve -m DIR --env-manager local`` on the same booster text saved
  with ``mlflow.lightgbm.save_model`` (with a signature), ``POST /invocations`` with
  ``{"dataframe_split": {...}}``.

The load generator is a second process (this script with ``--load``): asyncio on uvloop,
one keep-alive HTTP/1.1 connection per concurrent client, one request in flight per
connection; for each concurrency ``--repeat`` runs of a warm-up, then a measured window
bounded in time (``--duration``) and in count (``--max-requests``); medians are reported.
Latency is from writing a request to reading its whole response. Client and server share
the machine's cores.

Batch: the same model scores 1M rows: raw ``lightgbm.Booster.predict`` on a float64 array
against ``mlsd.serving.batch.predict_batch`` (``mlsd predict``) on a Parquet file of the same
rows, and ``Package.predict_matrix`` on the same columns in memory.

Goals (from the issue): single-row p50 within 1.5x of the floor, throughput at least 10x
MLflow's, batch scoring at least 80% of raw LightGBM's rows per second. Results go to
BENCHMARKS.md.

``--router`` (step 8) measures the routing table's cost instead: two ``mlsd serve``
processes of the same model, each following the routing table of its own workspace; before
each measurement one gets the configuration's table and the other none: none (A/A, how much
the two processes differ), a 50/50 table of two versions (the unit being the request id), a
shadow (the champion takes all traffic, a second version scores a copy of each request in
the shadow process) and a shadow of a quarter of the requests. Each table is measured on B
and then on A (a crossover: the geometric mean of the two ratios cancels the processes'
difference). The two take the load in turns of a quarter second (pairs A B, B A, ...), so a
shared VM's drift cancels; a ratio is the median of the pairs' p50 with the table over p50
without, with its 95% interval. With ``--pin`` (the default on Linux with 2 or more cores)
the servers run on core 0, and it runs in three layouts: the shadow process on core 0 with
the servers and the load generator alone on core 1 ("server's core", the clients as on
another machine), the shadow process alone on core 1 and the load generator with the
servers ("own core"), then the load generator with the shadow process on core 1 ("shared
core", with a control: a busy loop at idle priority on that core in one server's turns).
The shadow process runs in its server's turns only (stopped in the other's). The issue's
goal: a shadow adds at most 5% to the caller's p50.

``--rank`` measures ``POST /v1/rank`` instead: a LightGBM lambdarank model (the same 20
numeric features, relevance 0-4 by quintile of the hidden score within groups of 100 items)
trained by mlsd and served by ``mlsd serve``; each request ranks a list of 100 items. The
same lists go to ``/v1/predict`` (scores only: what ranking adds), and the raw
``lightgbm.Booster.predict`` scores the same 100-row arrays in this process (one thread,
as the server calls LightGBM for fewer rows than its threading threshold) for the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 20
TRAIN_ROWS = 50_000
NOISE = 2.85  # logistic noise scale: mlsd train keeps 199 trees (early stopping)
SERVERS = ("mlsd", "floor", "mlflow")


# --- the model ----------------------------------------------------------------------------


def features(rows: int, seed: int):
    """``rows`` x 20 standard normals and a noisy non-linear binary target."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_FEATURES))
    z = (
        np.sin(2 * X[:, 0])
        + X[:, 1] * X[:, 2]
        + np.abs(X[:, 3])
        - 0.8
        + 0.5 * X[:, 4]
        + np.where(X[:, 5] > 0.5, 1.0, -0.3)
        + 0.3 * X[:, 6] ** 2
        + 0.2 * X[:, 7:12].sum(axis=1)
    )
    y = z + rng.logistic(scale=NOISE, size=rows) > 0
    return X, y


def names() -> list[str]:
    return [f"f_{i:02d}" for i in range(N_FEATURES)]


def train_model(tmp: Path) -> dict[str, Any]:
    """Train with mlsd (LightGBM only, default parameters) in a workspace under ``tmp``."""
    import pandas as pd

    from mlsd.models.train import train
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    X, y = features(TRAIN_ROWS, seed=0)
    frame = pd.DataFrame(X, columns=names())
    frame["y"] = pd.Series(y).map({True: "yes", False: "no"})
    frame.to_parquet(tmp / "train.parquet")
    config = tmp / "system.yaml"
    config.write_text(
        "name: bench-serving\n"
        "problem: {task: binary, target: y, positive_class: 'yes'}\n"
        "data: {source: train.parquet}\n"
        "models: {candidates: [lightgbm], tuning: {budget_s: 0}}\n"
        "serving: {poll_s: 0}\n"
    )
    spec = load_spec(config)
    started = time.perf_counter()
    result = train(spec, Workspace.for_spec(spec), progress=False)
    if not result.registered:
        raise SystemExit(f"the benchmark model was not registered: {result.reasons}")
    return {
        "config": config,
        "package": Path(result.package),
        "train_s": time.perf_counter() - started,
    }


# --- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """One server in its own process group; ``stop`` ends the group (TERM, then KILL)."""

    def __init__(self, name: str, command: list[str], ready_path: str, tmp: Path, **popen):
        self.name, self.port, self.ready_path = name, free_port(), ready_path
        command = [c.replace("{port}", str(self.port)) for c in command]
        self.out = tmp / f"{name}.out"
        self.proc = subprocess.Popen(
            command,
            stdout=self.out.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: mlflow starts uvicorn as a child
            **popen,
        )

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.perf_counter()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited {self.proc.returncode}:\n{self.out.read_text()[-3000:]}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready in {timeout} s:\n{self.out.read_text()}")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # the leader is gone; end whatever is left of its group (mlflow's uvicorn)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's bin first on PATH (mlflow runs `uvicorn`)."""
    env = {k: v for k, v in os.environ.items() if k != "MLSD_HOME"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def mlsd_command(config: Path) -> list[str]:
    """``mlsd serve`` of ``config`` on the port ``Served`` picks."""
    mlsd = Path(sys.executable).parent / "mlsd"
    command = [str(mlsd)] if mlsd.exists() else [sys.executable, "-m", "mlsd"]
    return [*command, "serve", "-c", str(config), "--port", "{port}"]


def start(name: str, paths: dict[str, Path], tmp: Path) -> Served:
    env = venv_env()
    bin_dir = Path(sys.executable).parent
    if name == "mlsd":
        command = mlsd_command(paths["config"])
        return Served(name, command, "/readyz", tmp, cwd=paths["config"].parent, env=env)
    if name == "floor":
        command = [sys.executable, __file__, "--floor", str(paths["model_txt"]), "{port}"]
        return Served(name, command, "/readyz", tmp, env=env)
    command = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        str(paths["mlflow_model"]),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        "{port}",
    ]
    return Served(name, command, "/ping", tmp, env=env)


def floor_server(model_txt: str, port: int) -> None:
    """The floor: the least an HTTP answer from the raw LightGBM booster needs."""
    import lightgbm as lgb
    import numpy as np
    import orjson
    import uvicorn

    booster = lgb.Booster(model_file=model_txt)
    order = names()  # the model's feature order (model.txt calls them Column_i)
    headers = [(b"content-type", b"application/json")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz":
            ready = [*headers, (b"content-length", b"18")]
            await send({"type": "http.response.start", "status": 200, "headers": ready})
            await send({"type": "http.response.body", "body": b'{"status":"ready"}'})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        row = orjson.loads(body)["instances"][0]
        x = np.array([[row[n] for n in order]], dtype=np.float64)
        score = float(booster.predict(x, num_threads=1)[0])
        out = orjson.dumps({"predictions": [{"score": score}]})
        length = [(b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + length})
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


# --- requests -----------------------------------------------------------------------------


def bodies(server: str, rows: list[dict[str, float]]) -> tuple[str, list[bytes]]:
    """The route and one JSON body per row, in each server's own request format."""
    if server == "mlflow":
        cols = names()
        return "/invocations", [
            json.dumps(
                {"dataframe_split": {"columns": cols, "data": [[r[c] for c in cols]]}}
            ).encode()
            for r in rows
        ]
    return "/v1/predict", [json.dumps({"instances": [r]}).encode() for r in rows]


def score_of(server: str, payload: Any) -> float:
    if server == "mlflow":
        p = payload["predictions"][0]
        return float(p if not isinstance(p, list | dict) else next(iter(p.values())))
    return float(payload["predictions"][0]["score"])


def check_answers(server: str, port: int, rows: list[dict], expected) -> None:
    """Every server must give the raw booster's score for the same rows."""
    path, payloads = bodies(server, rows)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body, want in zip(payloads, expected, strict=True):
            conn.request("POST", path, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                raise RuntimeError(f"{server} answered {response.status}: {text[:500]!r}")
            got = score_of(server, json.loads(text))
            if abs(got - want) > 1e-9:
                raise RuntimeError(f"{server} scored {got}, the raw booster {want}")
    finally:
        conn.close()


def run_load(server: str, port: int, rows: list[dict], concurrency: int, args) -> dict:
    """The load generator, in a second process; its JSON summary."""
    path, payloads = bodies(server, rows)
    job = {
        "port": port,
        "path": path,
        "bodies": [b.decode() for b in payloads],
        "concurrency": concurrency,
        "warmup": args.warmup,
        "duration": args.duration,
        "max_requests": args.max_requests,
    }
    return run_self("--load", job, timeout=args.warmup + args.duration + 120)


def run_self(flag: str, job: dict, **options) -> dict:
    """This script in a second process with ``flag``: ``job`` in as JSON, its JSON out."""
    done = subprocess.run(
        [sys.executable, __file__, flag],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        **options,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _http_post(path: str, port: int, body: str) -> bytes:
    """One keep-alive HTTP/1.1 POST of a JSON ``body``."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nConnection: keep-alive\r\n"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()


class _Responses:
    """The responses arriving on one keep-alive connection, one request in flight."""

    def __init__(self) -> None:
        self.buffer, self.start, self.end = b"", 0, None  # the body's place, once known

    def feed(self, data: bytes) -> tuple[int, memoryview] | None:
        """Add ``data``; the status and body once the response is whole (None before).
        Raises ValueError for a response without a Content-Length."""
        buffer = self.buffer = self.buffer + data
        if self.end is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = buffer[:end].lower()
            at = head.find(b"content-length:")
            if at < 0:
                raise ValueError("a response without a Content-Length")
            stop = head.find(b"\r\n", at)
            self.start = end + 4
            self.end = self.start + int(head[at + 15 : stop if stop >= 0 else None])
        if len(buffer) < self.end:
            return None
        body = memoryview(buffer)[self.start : self.end]
        self.buffer, self.end = buffer[self.end :], None
        return int(buffer[9:12]), body


def load_generator(job: dict) -> dict:
    """Keep-alive HTTP/1.1 clients on asyncio: ``concurrency`` connections, one request in
    flight on each; latencies of requests sent inside the measured window."""
    import asyncio

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    requests = [_http_post(job["path"], job["port"], body) for body in job["bodies"]]
    latencies: list[int] = []
    statuses: Counter = Counter()
    state = {"measure_from": None, "stop_at": None, "last": 0, "sample": None}
    max_requests = int(job["max_requests"])

    class Client(asyncio.Protocol):
        def __init__(self, index: int, done: asyncio.Future):
            self.index, self.done = index, done
            self.responses, self.sent = _Responses(), 0

        def connection_made(self, transport):
            self.transport = transport
            self.send()

        def send(self):
            now = time.perf_counter_ns()
            if now >= state["stop_at"] or len(latencies) >= max_requests:
                self.transport.close()
                return
            self.sent = now
            request = requests[(self.index + len(latencies)) % len(requests)]
            self.transport.write(request)

        def data_received(self, data):
            try:
                answer = self.responses.feed(data)
            except ValueError:
                self.fail("no content-length")
                return
            if answer is None:
                return
            finished = time.perf_counter_ns()
            status, body = answer
            if state["sample"] is None:
                state["sample"] = bytes(body).decode()[:300]
            if self.sent >= state["measure_from"] and len(latencies) < max_requests:
                latencies.append(finished - self.sent)
                statuses[status] += 1
                state["last"] = finished
            self.send()

        def fail(self, why: str):
            statuses[why] += 1
            self.transport.close()

        def connection_lost(self, exc):
            if not self.done.done():
                self.done.set_result(None)

    async def main():
        loop = asyncio.get_running_loop()
        now = time.perf_counter_ns()
        state["measure_from"] = now + int(job["warmup"] * 1e9)
        state["stop_at"] = state["measure_from"] + int(job["duration"] * 1e9)
        finished = []
        for index in range(int(job["concurrency"])):
            done = loop.create_future()
            await loop.create_connection(
                lambda i=index, d=done: Client(i, d), "127.0.0.1", job["port"]
            )
            finished.append(done)
        grace = job["warmup"] + job["duration"] + 30
        _, pending = await asyncio.wait(finished, timeout=grace)
        if pending:
            statuses["timed out"] += len(pending)

    cpu = time.process_time()
    asyncio.run(main())
    cpu = time.process_time() - cpu
    measure_from, last = state["measure_from"], state["last"]
    window = (last - measure_from) / 1e9 if latencies and last > measure_from else 0.0
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else 0.0

    return {
        "requests": len(latencies),
        "window_s": window,
        "rps": len(latencies) / window if window else 0.0,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "mean_ms": sum(latencies) / len(latencies) / 1e6 if latencies else 0.0,
        "statuses": {str(k): v for k, v in statuses.items()},
        "client_cpu_s": cpu,
        "sample": state["sample"],
    }


def combine(runs: list[dict]) -> dict:
    """Repeated runs of one server and concurrency: the median of each figure, the range of
    p50 and req/s, and the totals."""
    statuses: Counter = Counter()
    for r in runs:
        statuses.update(r["statuses"])
    out = {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "rps")}
    out["p50_range"] = (min(r["p50_ms"] for r in runs), max(r["p50_ms"] for r in runs))
    out["rps_range"] = (min(r["rps"] for r in runs), max(r["rps"] for r in runs))
    out["requests"] = sum(r["requests"] for r in runs)
    out["client_cpu_s"] = max(r["client_cpu_s"] for r in runs)
    out["statuses"] = dict(statuses)
    return out


# --- profile ------------------------------------------------------------------------------


def profile_mlsd(pid: int, port: int, rows, args, tmp: Path) -> list[str]:
    """py-spy on the mlsd server under load at concurrency 8, sampling the thread that holds
    the GIL (the Python work that limits a one-process server): the top frames."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return ["(py-spy is not installed in this environment: no profile)"]
    raw = tmp / "mlsd.pyspy.txt"
    seconds = int(args.profile)
    command = [str(spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "250", "--gil"]
    recorder = subprocess.Popen(
        [*command, "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        load = argparse.Namespace(**{**vars(args), "warmup": 0.5, "duration": seconds})
        run_load("mlsd", port, rows, 8, load)
        _, err = recorder.communicate(timeout=seconds + 60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    if not raw.exists() or not raw.stat().st_size:
        return [f"(py-spy failed: {err.strip()[-300:]})"]
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["(py-spy recorded no samples)"]

    def share(items) -> str:
        return "; ".join(f"`{f}` {100 * n / total:.0f}%" for f, n in items)

    def under(*packages: str) -> list[tuple[str, int]]:
        return [
            (f, n)
            for f, n in inclusive.most_common()
            if f.split(" (")[-1].startswith(packages) and not f.startswith("<module>")
        ]

    mine = [(f, n) for f, n in under("mlsd/") if "cli.py" not in f]
    return [
        f"py-spy `{' '.join(command[1:2] + command[4:])}`, {total} samples of the thread "
        f"holding the GIL over {seconds} s at concurrency 8",
        "own time: " + share(own.most_common(10)),
        "inclusive, mlsd: " + share(mine[:14]),
        "inclusive, framework: " + share(under("starlette/", "fastapi/", "anyio/")[:8]),
    ]


def _frame(frame: str) -> str:
    """``function (/…/site-packages/pkg/file.py:123)`` → ``function (pkg/file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{name} ({file})" if where else name


# --- batch --------------------------------------------------------------------------------


def bench_batch(paths: dict, n_rows: int, repeat: int, tmp: Path, bounds) -> dict[str, Any]:
    """Raw ``lightgbm.Booster.predict`` on an array against mlsd's batch scoring of the
    same rows (from Parquet, and in memory), measured in a fresh process: the benchmark's
    own (training, MLflow) leaves nothing running beside it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, _ = features(n_rows, seed=2)
    np.clip(X, bounds[0], bounds[1], out=X)  # inside the training range: no row is rejected
    data = tmp / "batch.parquet"
    pq.write_table(pa.table({n: X[:, i] for i, n in enumerate(names())}), data)
    job = {k: str(paths[k]) for k in ("config", "package", "model_txt")}
    job.update(data=str(data), out=str(tmp / "scored.parquet"), repeat=repeat)
    out = run_self("--batch-job", job, env={**venv_env(), "PYTHONPATH": str(ROOT / "src")})
    out["parquet_mb"] = data.stat().st_size / 2**20
    return out


def batch_job(job: dict) -> dict[str, Any]:
    """The three ways of scoring the batch, ``repeat`` rounds in turn; the median times."""
    import lightgbm as lgb
    import numpy as np
    import pyarrow.parquet as pq

    from mlsd.models import package as packages
    from mlsd.serving.batch import predict_batch
    from mlsd.spec import load_spec

    table = pq.read_table(job["data"])
    X = np.ascontiguousarray(np.column_stack([table.column(n).to_numpy() for n in names()]))
    columns = {n: X[:, i] for i, n in enumerate(names())}
    booster = lgb.Booster(model_file=job["model_txt"])
    package = packages.load(job["package"])
    spec = load_spec(job["config"])
    booster.predict(X[:1000])  # warm
    package.predict_matrix({n: c[:1000] for n, c in columns.items()})
    times: dict[str, list[float]] = {"raw_s": [], "batch_s": [], "matrix_s": []}
    for _ in range(int(job["repeat"])):
        started = time.perf_counter()
        raw = booster.predict(X)
        times["raw_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        summary = predict_batch(spec, job["data"], job["out"], progress=False)
        times["batch_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        mem = package.predict_matrix(columns)
        times["matrix_s"].append(time.perf_counter() - started)
    scored = pq.read_table(job["out"]).column("score").to_numpy()
    out: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    out["rows"] = len(X)
    out["batch_summary"] = {k: summary[k] for k in ("rows", "scored", "rejected", "seconds")}
    out["batch_max_diff"] = float(np.max(np.abs(scored - raw)))
    out["matrix_max_diff"] = float(np.max(np.abs(mem - raw)))
    return out


# --- main ---------------------------------------------------------------------------------


def fmt_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per run, at most")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrency (median)")
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--profile", type=float, default=0, help="seconds of py-spy on mlsd serve (0: none)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--router", action="store_true", help="measure the router and shadow overhead only"
    )
    parser.add_argument(
        "--rank", action="store_true", help="measure /v1/rank on 100-item lists only"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--router: the server on core 0, the load generator and the shadow on core 1",
    )
    parser.add_argument("--floor", nargs=2, metavar=("MODEL_TXT", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--alternate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_rows < 1:  # the report compares batch scoring with raw LightGBM
        parser.error("--batch-rows must be at least 1")
    if args.floor:
        floor_server(args.floor[0], int(args.floor[1]))
        return
    if args.load:
        print(json.dumps(load_generator(json.load(sys.stdin))))
        return
    if args.alternate:
        print(json.dumps(alternating_load(json.load(sys.stdin))))
        return
    if args.batch_job:
        print(json.dumps(batch_job(json.load(sys.stdin))))
        return
    sys.path.insert(0, str(ROOT / "src"))
    # a terminated benchmark still stops its servers (they run in sessions of their own)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))
    if (args.router or args.rank) and args.concurrency == parser.get_default("concurrency"):
        args.concurrency = "1,8"
    levels = [int(c) for c in args.concurrency.split(",")]
    chosen = report_router if args.router else report_rank if args.rank else report
    with tempfile.TemporaryDirectory() as tmp:
        chosen(args, levels, Path(tmp))


def report(args, levels: list[int], tmp: Path) -> None:
    import lightgbm as lgb
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    print("training the model with mlsd ...", flush=True)
    paths = train_model(tmp)
    paths["model_txt"] = paths["package"] / "model" / "model.txt"
    signature = json.loads((paths["package"] / "signature.json").read_text())
    inputs = [i["name"] for i in signature["inputs"]]
    booster = lgb.Booster(model_file=str(paths["model_txt"]))
    trees = booster.num_trees()
    # model.txt names its features Column_i; the package's model.json names them
    model_names = json.loads((paths["package"] / "model" / "model.json").read_text())
    if model_names.get("feature_names") != names() or inputs != names():
        raise SystemExit(f"the model's features are not f_00..f_19: {model_names}")
    low = np.array([i.get("min", -np.inf) for i in signature["inputs"]])
    high = np.array([i.get("max", np.inf) for i in signature["inputs"]])
    print(f"  {trees} trees, {N_FEATURES} features, trained in {paths['train_s']:.1f} s")

    X, _ = features(64, seed=1)
    X = np.clip(X, low, high)
    rows = [{n: float(v) for n, v in zip(names(), x, strict=True)} for x in X]
    expected = booster.predict(X)

    paths["mlflow_model"] = tmp / "mlflow-model"
    frame = pd.DataFrame(X, columns=names())
    mlflow.lightgbm.save_model(
        booster, paths["mlflow_model"], signature=infer_signature(frame, expected)
    )

    results: dict[str, dict[int, dict]] = {}
    pairs: dict[int, list[tuple[float, float]]] = {}  # (p50, req/s) mlsd / floor, run by run
    startup: dict[str, float] = {}
    profile: list[str] = []

    def measure(name: str, port: int, c: int) -> dict:
        r = run_load(name, port, rows, c, args)
        bad = {k: v for k, v in r["statuses"].items() if k != "200"}
        print(
            f"  {name:<6} concurrency {c:>3}: {r['requests']:>7,} requests  p50 "
            f"{r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  {r['rps']:8,.0f} req/s  "
            f"client CPU {r['client_cpu_s'] / (args.warmup + args.duration):.0%}"
            + (f"  NON-200: {bad}" if bad else ""),
            flush=True,
        )
        return r

    def ready(group: dict[str, Served]) -> None:
        for name, served in group.items():
            startup[name] = served.wait_ready()
            check_answers(name, served.port, rows[:8], expected[:8])
            print(f"{name} ready in {startup[name]:.1f} s on port {served.port}", flush=True)

    # mlsd and the floor run side by side (an idle server costs nothing) and take turns,
    # so the machine's drift over minutes hits both alike: each ratio comes from a pair of
    # runs back to back, the order alternating.
    group = {name: start(name, paths, tmp) for name in ("mlsd", "floor")}
    try:
        ready(group)
        for c in levels:
            runs: dict[str, list[dict]] = {"mlsd": [], "floor": []}
            for i in range(args.repeat):
                for name in ("mlsd", "floor") if i % 2 == 0 else ("floor", "mlsd"):
                    runs[name].append(measure(name, group[name].port, c))
            pairs[c] = [
                (m["p50_ms"] / f["p50_ms"], m["rps"] / f["rps"])
                for m, f in zip(runs["mlsd"], runs["floor"], strict=True)
            ]
            for name, measured in runs.items():
                results.setdefault(name, {})[c] = combine(measured)
        if args.profile > 0:
            profile = profile_mlsd(group["mlsd"].proc.pid, group["mlsd"].port, rows, args, tmp)
            print("\n".join(profile))
    finally:
        for served in group.values():
            served.stop()

    peer = {"mlflow": start("mlflow", paths, tmp)}
    try:
        ready(peer)
        results["mlflow"] = {
            c: combine([measure("mlflow", peer["mlflow"].port, c) for _ in range(args.repeat)])
            for c in levels
        }
    finally:
        peer["mlflow"].stop()

    print(f"batch: {args.batch_rows:,} rows ...", flush=True)
    batch = bench_batch(paths, args.batch_rows, args.repeat, tmp, (low, high))
    raw_rps = batch["rows"] / batch["raw_s"]
    batch_rps = batch["rows"] / batch["batch_s"]
    matrix_rps = batch["rows"] / batch["matrix_s"]
    print(
        f"  raw Booster.predict {raw_rps:,.0f} rows/s; mlsd predict_batch (Parquet in and out) "
        f"{batch_rps:,.0f} rows/s ({batch_rps / raw_rps:.0%}); Package.predict_matrix "
        f"{matrix_rps:,.0f} rows/s ({matrix_rps / raw_rps:.0%})"
    )

    # --- the section ---
    table = [
        fmt_row(
            [
                "server",
                "concurrency",
                "requests",
                "p50 ms",
                "p50 range",
                "p99 ms",
                "req/s",
                "req/s range",
                "non-200",
            ]
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SERVERS:
        for c in levels:
            r = results[name][c]
            bad = sum(v for k, v in r["statuses"].items() if k != "200")
            low, high = r["p50_range"]
            slow, fast = r["rps_range"]
            cells = [name, str(c), f"{r['requests']:,}", f"{r['p50_ms']:.2f}"]
            cells += [f"{low:.2f}–{high:.2f}", f"{r['p99_ms']:.2f}", f"{r['rps']:,.0f}"]
            cells += [f"{slow:,.0f}–{fast:,.0f}", str(bad)]
            table.append(fmt_row(cells))
    ratios = [
        fmt_row(
            [
                "concurrency",
                "p50 mlsd / floor (goal ≤ 1.5)",
                "p50 ratio range",
                "req/s mlsd / floor",
                "req/s mlsd / MLflow (goal ≥ 10)",
                "p50 MLflow / mlsd",
            ]
        ),
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for c in levels:
        m, f, p = results["mlsd"][c], results["floor"][c], results["mlflow"][c]
        latency = statistics.median(r for r, _ in pairs[c])
        speed = m["rps"] / p["rps"]
        ratios.append(
            fmt_row(
                [
                    str(c),
                    f"{latency:.2f}x",
                    f"{min(r for r, _ in pairs[c]):.2f}–{max(r for r, _ in pairs[c]):.2f}x",
                    f"{statistics.median(r for _, r in pairs[c]):.2f}x",
                    f"{speed:.1f}x",
                    f"{p['p50_ms'] / m['p50_ms']:.1f}x",
                ]
            )
        )
        verdicts.append(
            f"- concurrency {c}: p50 {m['p50_ms']:.2f} ms against the floor's "
            f"{f['p50_ms']:.2f} ms, {latency:.2f}x as the median of {len(pairs[c])} paired "
            f"runs: goal {'met' if latency <= 1.5 else 'not met'}; {m['rps']:,.0f} req/s "
            f"against MLflow's {p['rps']:,.0f} ({speed:.1f}x): goal "
            f"{'met' if speed >= 10 else 'not met'}."
        )
    share = batch_rps / raw_rps
    verdicts.append(
        f"- batch: mlsd `predict_batch` {batch_rps:,.0f} rows/s against raw LightGBM's "
        f"{raw_rps:,.0f} ({share:.0%}): goal (≥ 80%) {'met' if share >= 0.8 else 'not met'}."
    )
    run_s = args.warmup + args.duration
    busiest = {name: max(r["client_cpu_s"] for r in results[name].values()) for name in SERVERS}
    cpu = ", ".join(f"{name} {seconds / run_s:.0%}" for name, seconds in busiest.items())
    details = [
        f"Model: LightGBM, {trees} trees (early stopping on mlsd's validation split, default "
        f"parameters), {N_FEATURES} numeric features, trained by `mlsd train` on "
        f"{TRAIN_ROWS:,} generated rows; the same `model.txt` feeds all three servers. "
        f"Versions: lightgbm {lgb.__version__}, mlflow {mlflow.__version__}, "
        f"uvicorn {_version('uvicorn')}, fastapi {_version('fastapi')}.",
        "",
        "- **mlsd**: `mlsd serve -c system.yaml --port P` (`serving.poll_s: 0`; validation, "
        "featurizer, LightGBM's single-row C API, prediction log and Prometheus metrics on "
        'every request), `POST /v1/predict` with `{"instances": [row]}`.',
        "- **floor**: a bare ASGI function under the same uvicorn (httptools, uvloop): "
        "orjson parses the body, `lightgbm.Booster.predict(x, num_threads=1)` scores the "
        'row, orjson writes `{"predictions": [{"score": p}]}`.',
        "- **MLflow**: `mlflow models serve -m DIR --env-manager local -p P` (1 worker, the "
        "default) on the booster saved with `mlflow.lightgbm.save_model` and a signature; "
        '`POST /invocations` with `{"dataframe_split": {"columns": [...], "data": [row]}}`.',
        "",
        f"Load: a second process on 127.0.0.1 (asyncio on uvloop, one keep-alive HTTP/1.1 "
        f"connection per client, one request in flight on each, 64 different rows in "
        f"turn); per concurrency {args.repeat} run(s) of {args.warmup:g} s of warm-up, then "
        f"{args.duration:g} s or {args.max_requests:,} requests, whichever ends first; the "
        f"table gives the median run's figures (p50, p99, req/s each the median over the "
        f"runs) and the range over the runs, `requests` is the total. Every server gave the raw "
        f"booster's score (within 1e-9) on 8 rows before the load. mlsd and the floor are "
        f"up together and take turns, run by run, the order alternating; a ratio to the "
        f"floor is the median over the pairs of back-to-back runs. Only the measured server "
        f"has load; client and server share the 2 cores (the load generator's own CPU use, at "
        f"its busiest: {cpu} of one core). Ready after start: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in startup.items())
        + ".",
    ]
    batch_lines = [
        fmt_row(["batch, same rows", "seconds", "rows/s", "share of raw LightGBM"]),
        "|---|---|---|---|",
        fmt_row(
            [
                "raw `lightgbm.Booster.predict` (float64 array, OpenMP default)",
                f"{batch['raw_s']:.2f}",
                f"{raw_rps:,.0f}",
                "100%",
            ]
        ),
        fmt_row(
            [
                "mlsd `predict_batch` (Parquet in, validate, featurize, Parquet out)",
                f"{batch['batch_s']:.2f}",
                f"{batch_rps:,.0f}",
                f"{share:.0%}",
            ]
        ),
        fmt_row(
            [
                "mlsd `Package.predict_matrix` (numpy columns in memory)",
                f"{batch['matrix_s']:.2f}",
                f"{matrix_rps:,.0f}",
                f"{matrix_rps / raw_rps:.0%}",
            ]
        ),
        "",
        f"In a fresh process, {args.repeat} rounds of the three in turn; median times. "
        f"{batch['rows']:,} rows x {N_FEATURES} features (clipped to the training range, so "
        f"none is rejected; Parquet {batch['parquet_mb']:.0f} MB); `predict_batch` summary "
        f"{batch['batch_summary']}; largest difference from the raw scores: `predict_batch` "
        f"{batch['batch_max_diff']:.1e}, `predict_matrix` {batch['matrix_max_diff']:.1e}.",
    ]
    command = "python benchmarks/bench_serving.py" + "".join(
        f" --{k} {v}"
        for k, v in (
            ("duration", f"{args.duration:g}"),
            ("warmup", f"{args.warmup:g}"),
            ("concurrency", args.concurrency),
            ("repeat", str(args.repeat)),
            ("batch-rows", str(args.batch_rows)),
            ("profile", f"{args.profile:g}"),
        )
        if not (k == "profile" and not args.profile)
    )
    section = "\n".join(
        [
            "## Serving (`benchmarks/bench_serving.py`)",
            "",
            f"Command: `{command}` on {date.today()}, {platform.machine()}, "
            f"{platform.python_version()}, {os.cpu_count()} cores.",
            "",
            *details,
            "",
            *table,
            "",
            *ratios,
            "",
            *batch_lines,
            "",
            *verdicts,
            *(
                [
                    "",
                    "Profile of `mlsd serve` under load: " + profile[0] + ".",
                    "",
                    *[f"- {line}" for line in profile[1:]],
                ]
                if profile
                else []
            ),
            "",
        ]
    )
    print()
    print(section)
    if args.no_write:
        return
    write_section("## Serving", section)


ROUTED = ("A/A", "router", "router+shadow", "router+shadow 25%")
SHADOWED = ("router+shadow", "router+shadow 25%")
IDLE = "A/A + idle loop"  # no table; a busy loop at idle priority on the clients' core
# Pinned: the servers on core 0; where the load generator and the shadow process run, and
# what is measured there. "server's core" leaves the shadow process on the servers' core
# (as `taskset -c 0 mlsd serve` does) and gives the clients core 1 to themselves, as on
# another machine; "own core" gives the shadow process a core of its own (the clients share
# the servers'); "shared core" puts the clients on the shadow process's core.
LAYOUTS = {
    "server's core": ({1}, {0}, ("A/A", "router+shadow")),
    "own core": ({0}, {1}, ROUTED),
    "shared core": ({1}, {1}, ("A/A", "router+shadow", IDLE)),
}
IDLE_LOOP = (
    "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
)
MIRROR = 0.25  # the share of requests the last table copies to its shadow
POLL_S = 0.2  # how often the routed server reads the routing table
SLOT_S = 0.25  # seconds each server takes the load before the other does


def alternating_load(job: dict) -> dict:
    """Keep-alive HTTP/1.1 clients on asyncio, ``concurrency`` connections to each of two
    servers, the servers taking the load in turns: slot by slot (``slot_s`` each) one
    group sends, one request in flight per connection, while the other waits; a slot ends
    once its last answers are in, so the two never overlap. The pairs run A B, B A, A B, ...
    (a drift within a pair hits each server first as often as second). Each slot's p50."""
    import asyncio

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    requests = [
        [_http_post(job["path"], port, body) for body in job["bodies"]] for port in job["ports"]
    ]
    slot_latencies: list[list[int]] = []
    statuses: Counter = Counter()
    state = {"group": None, "in_flight": [0, 0], "idle": None}

    class Client(asyncio.Protocol):
        def __init__(self, group: int, index: int):
            self.group, self.index, self.count = group, index, 0
            self.responses, self.sent = _Responses(), 0

        def connection_made(self, transport):
            self.transport = transport

        def send(self):
            if state["group"] != self.group:
                return  # parked until its group's next slot
            self.sent = time.perf_counter_ns()
            self.slot = len(slot_latencies) - 1
            state["in_flight"][self.group] += 1
            self.count += 1
            reqs = requests[self.group]
            self.transport.write(reqs[(self.index + self.count) % len(reqs)])

        def data_received(self, data):
            answer = self.responses.feed(data)
            if answer is None:
                return
            finished = time.perf_counter_ns()
            slot_latencies[self.slot].append(finished - self.sent)
            statuses[answer[0]] += 1
            state["in_flight"][self.group] -= 1
            if state["in_flight"][self.group] == 0 and state["idle"] is not None:
                state["idle"].set()
            self.send()

    async def main():
        loop = asyncio.get_running_loop()
        groups = []
        for group, port in enumerate(job["ports"]):
            clients = []
            for index in range(int(job["concurrency"])):
                _, client = await loop.create_connection(
                    lambda g=group, i=index: Client(g, i), "127.0.0.1", port
                )
                clients.append(client)
            groups.append(clients)
        order = []
        for pair in range(int(job["pairs"]) + int(job["warmup_pairs"])):
            order += [0, 1] if pair % 2 == 0 else [1, 0]
        for group in order:
            slot_latencies.append([])
            state["group"] = group
            for pid in job["paused"]:  # they run in the turns of one server only
                os.kill(pid, signal.SIGCONT if group == job["paused_group"] else signal.SIGSTOP)
            for client in groups[group]:
                client.send()
            await asyncio.sleep(float(job["slot_s"]))
            state["group"] = None  # the group's clients park after their answer
            if state["in_flight"][group]:
                state["idle"] = asyncio.Event()
                await asyncio.wait_for(state["idle"].wait(), 30)
                state["idle"] = None
        for clients in groups:
            for client in clients:
                client.transport.close()
        return order

    cpu = time.process_time()
    order = asyncio.run(main())
    cpu = time.process_time() - cpu
    skip = 2 * int(job["warmup_pairs"])
    slots = []
    for group, latencies in list(zip(order, slot_latencies, strict=True))[skip:]:
        ordered = sorted(latencies)
        slots.append(
            {
                "server": group,
                "requests": len(ordered),
                "p50_ms": ordered[len(ordered) // 2] / 1e6 if ordered else 0.0,
                "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e6
                if ordered
                else 0.0,
            }
        )
    sent = [
        sum(len(s) for g, s in zip(order, slot_latencies, strict=True) if g == k) for k in (0, 1)
    ]
    return {
        "slots": slots,
        "sent": sent,
        "statuses": {str(k): v for k, v in statuses.items()},
        "client_cpu_s": cpu,
    }


def report_router(args, levels: list[int], tmp: Path) -> None:
    """The cost of the router and of a shadow on the caller's latency (``--router``)."""
    import numpy as np

    from mlsd.models import routing
    from mlsd.models.routing import Arm, RoutingTable

    print("training the model with mlsd ...", flush=True)
    paths = train_model(tmp)
    package = paths["package"]
    root = paths["config"].parent / ".mlsd"
    found = list(paths["config"].parent.rglob("aliases/bench-serving.json"))
    if found:
        root = found[0].parent.parent
    signature = json.loads((package / "signature.json").read_text())
    low = np.array([i.get("min", -np.inf) for i in signature["inputs"]])
    high = np.array([i.get("max", np.inf) for i in signature["inputs"]])
    X, _ = features(64, seed=1)
    X = np.clip(X, low, high)
    rows = [{n: float(v) for n, v in zip(names(), x, strict=True)} for x in X]
    import lightgbm as lgb

    expected = lgb.Booster(model_file=str(package / "model" / "model.txt")).predict(X)

    # the second version is the same package under another version number: a second model
    # loaded and verified on its own, with the same cost per row as the champion
    champion = Arm(name="champion", version=1, package=str(package), weight=1.0)
    tables = {
        "router": RoutingTable(
            system="bench-serving",
            experiment="bench-ab",
            strategy="ab",
            salt="bench",
            arms=(
                Arm(name="champion", version=1, package=str(package), weight=0.5),
                Arm(name="challenger", version=2, package=str(package), weight=0.5),
            ),
        ),
        "router+shadow": RoutingTable(
            system="bench-serving",
            experiment="bench-shadow",
            strategy="shadow",
            salt="bench",
            arms=(champion,),
            shadows=(Arm(name="challenger", version=2, package=str(package)),),
        ),
    }
    tables["router+shadow 25%"] = dataclasses.replace(
        tables["router+shadow"], experiment="bench-shadow-25", mirror=MIRROR
    )
    # Two servers of the same model, each following the routing table of its own workspace
    # (a copy of the first; polled every POLL_S). Before each configuration one server gets
    # the table and the other none; each table is measured twice, once on each server (a
    # crossover: whatever makes one process a little faster than the other, its memory
    # layout or its hash seed, cancels in the geometric mean of the two ratios). They take
    # the load in turns of SLOT_S, so what differs between two neighbouring slots is the
    # server, not the minute.
    config = paths["config"].with_name("system-routed.yaml")
    config.write_text(paths["config"].read_text().replace("poll_s: 0}", f"poll_s: {POLL_S}}}"))
    routing.clear(root, "bench-serving")
    roots = (root, tmp / "twin")
    shutil.copytree(root, roots[1])
    command = mlsd_command(config)
    cwd = paths["config"].parent
    pinned = args.pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    servers = [
        Served(name, command, "/readyz", tmp, cwd=cwd, env={**venv_env(), "MLSD_HOME": str(r)})
        for name, r in zip("AB", roots, strict=True)
    ]
    pairs = max(1, round(args.duration / (2 * SLOT_S)))
    warmup_pairs = max(1, round(args.warmup / (2 * SLOT_S)))
    layouts = LAYOUTS if pinned else {"unpinned": (None, None, ROUTED)}
    results: dict[tuple[str, str], dict[int, list[dict]]] = {}
    shadow_counts: Counter = Counter()
    try:
        startup = max(s.wait_ready() for s in servers)
        if pinned:  # both servers on core 0 (one works at a time)
            for server in servers:
                _pin(server.proc.pid, {0})

        def switch(name: str, on: int, shadow_cores: set[int] | None) -> None:
            """``name``'s table on server ``on``, none on the other."""
            for k, (server, r) in enumerate(zip(servers, roots, strict=True)):
                table = tables.get(name) if k == on else None
                if table is not None:
                    routing.publish(r, table)
                else:
                    routing.clear(r, "bench-serving")
                want = None if table is None else table.experiment
                deadline = time.monotonic() + 30
                while (json.loads(_get(server.port, "/readyz")).get("routing") or {}).get(
                    "experiment"
                ) != want:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name}: server {server.name} did not take the table")
                    time.sleep(POLL_S / 2)
                check_answers("mlsd", server.port, rows[:8], expected[:8])
                if shadow_cores and table is not None:
                    for child in _children(server.proc.pid):
                        _pin(child, shadow_cores)

        for on in (0, 1):  # each table once, so each shadow process has loaded its model
            for name in tables:
                switch(name, on, None)
        print(f"two mlsd serve processes ready in {startup:.1f} s", flush=True)
        path, payloads = bodies("mlsd", rows)

        def measure(layout: str, name: str, c: int, on: int) -> dict:
            """One configuration at concurrency ``c``, its table (or idle loop) on server
            ``on``: that server's p50 over the other's per pair of slots, p50, p99, CPU."""
            time.sleep(0.3)
            routed = servers[on]
            before = _shadow_counts(routed.port)
            spent = [_cpu_seconds(s.proc.pid) for s in servers]
            child_spent = _children_cpu_seconds(routed.proc.pid)
            job = {
                "ports": [s.port for s in servers],
                "path": path,
                "bodies": [p.decode() for p in payloads],
                "concurrency": c,
                "pairs": pairs,
                "warmup_pairs": warmup_pairs,
                "slot_s": SLOT_S,
            }
            # what server `on`'s table (or the idle loop) sets running works in its turns only:
            # a shadow process's backlog would otherwise spill into the other server's turns
            loop = None
            job["paused"], job["paused_group"] = [], on
            if name == IDLE:  # stopped until the first turn of server `on`
                loop = subprocess.Popen([sys.executable, "-c", IDLE_LOOP])
                os.kill(loop.pid, signal.SIGSTOP)
                job["paused"].append(loop.pid)
            if name in SHADOWED:
                job["paused"] += _children(routed.proc.pid)
            try:
                r = run_self("--alternate", job, timeout=4 * (pairs + warmup_pairs) * SLOT_S + 120)
            finally:
                for pid in job["paused"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                if loop is not None:
                    loop.kill()
                    loop.wait()
            cpu = [_cpu_seconds(s.proc.pid) - t for s, t in zip(servers, spent, strict=True)]
            time.sleep(0.3)  # this run's copies, scored
            child_cpu = _children_cpu_seconds(routed.proc.pid) - child_spent
            after = _shadow_counts(routed.port)
            slots = r["slots"]
            # (plain, routed): the server without the table first
            order = (1 - on, on)
            per = [[s for s in slots if s["server"] == k] for k in order]
            ratios = [
                first["p50_ms"] / second["p50_ms"] if first["server"] == on
                else second["p50_ms"] / first["p50_ms"]
                for first, second in zip(slots[::2], slots[1::2], strict=False)
            ]  # fmt: skip
            counts = [sum(s["requests"] for s in p) for p in per]
            bad = {k: v for k, v in r["statuses"].items() if k != "200"}
            cpu_us = [1e6 * cpu[k] / max(1, r["sent"][k]) for k in order]
            out = {
                "on": servers[on].name,
                "ratios": ratios,
                "p50_ms": [statistics.median(s["p50_ms"] for s in p) for p in per],
                "p99_ms": [statistics.median(s["p99_ms"] for s in p) for p in per],
                "requests": counts,
                # CPU per request over every request sent, the warm-up's included
                "cpu_us": cpu_us,
                "child_us": 1e6 * child_cpu / max(1, r["sent"][on]),
                "shed": tuple(x - y for x, y in zip(after, before, strict=True)),
            }
            low, high = _median_interval(ratios)
            print(
                f"  {layout:<11} {name:<17} on {out['on']} concurrency {c:>2}: "
                f"{sum(counts):>7,} requests, p50 {out['p50_ms'][0]:.3f} ms → "
                f"{out['p50_ms'][1]:.3f} ms, ratio {statistics.median(ratios):.3f} "
                f"({low:.3f}–{high:.3f}), CPU µs/request {cpu_us[0]:.0f} → {cpu_us[1]:.0f}"
                + (f" (+ {out['child_us']:.0f})" if name in SHADOWED else "")
                + (f"  NON-200: {bad}" if bad else ""),
                flush=True,
            )
            return out

        for layout, (client_cores, shadow_cores, configs) in layouts.items():
            if client_cores:  # this script and the load generator it starts
                os.sched_setaffinity(0, client_cores)
            for c in levels:
                for name in configs:
                    runs = results.setdefault((layout, name), {}).setdefault(c, [])
                    # A/A: no table anywhere, B against A once (the processes' difference)
                    for on in (1,) if name == "A/A" else (1, 0):
                        switch(name, on, shadow_cores)
                        runs.append(measure(layout, name, c, on))
        for server in servers:
            metrics = _get(server.port, "/metrics")
            for key in (
                'mlsd_shadow_predictions_total{arm="challenger"}',
                "mlsd_shadow_dropped_total",
                "mlsd_shadow_errors_total",
            ):
                shadow_counts[key] += _metric(metrics, key)
    finally:
        for server in servers:
            server.stop()
        for r in roots:
            routing.clear(r, "bench-serving")

    head = [
        "layout",
        "configuration",
        "concurrency",
        "on",
        "requests without / with",
        "p50 without ms",
        "p50 with ms",
        "p50 with / without (95% interval)",
        "p99 without / with ms",
        "server CPU µs/request without / with (+ shadow process)",
        "shadow copies scored / dropped",
    ]
    table = [fmt_row(head), "|---" * len(head) + "|"]
    for (layout, name), by_level in results.items():
        for c, runs in by_level.items():
            for r in runs:
                median, (low, high) = statistics.median(r["ratios"]), _median_interval(r["ratios"])
                scored, dropped = r["shed"]
                table.append(
                    fmt_row(
                        [
                            layout,
                            name,
                            str(c),
                            r["on"],
                            f"{r['requests'][0]:,} / {r['requests'][1]:,}",
                            f"{r['p50_ms'][0]:.3f}",
                            f"{r['p50_ms'][1]:.3f}",
                            f"{median:.3f}x ({low:.3f}–{high:.3f})",
                            f"{r['p99_ms'][0]:.2f} / {r['p99_ms'][1]:.2f}",
                            f"{r['cpu_us'][0]:.0f} / {r['cpu_us'][1]:.0f}"
                            + (f" (+ {r['child_us']:.0f})" if name in SHADOWED else ""),
                            f"{scored:,.0f} / {dropped:,.0f}" if name in SHADOWED else "",
                        ]
                    )
                )

    def change(runs: list[dict]) -> str:
        median, low, high = crossover(runs)
        return f"{100 * (median - 1):+.1f}% ({100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}%)"

    verdicts = []
    for layout, (_, _, configs) in layouts.items():
        for c in levels:
            shadow = results[(layout, "router+shadow")][c]
            _, low, high = crossover(shadow)
            if min(len(r["ratios"]) for r in shadow) < 6:  # no 95% interval of a median
                verdict = "not judged: too few pairs for a 95% interval (run a longer --duration)"
            elif high <= 1.05:
                verdict = "met: the whole interval is within +5%"
            elif low > 1.05:
                verdict = "not met: the whole interval is above +5%"
            else:
                verdict = "not shown either way: the interval holds +5%"
            cpu = statistics.geometric_mean(r["cpu_us"][1] / r["cpu_us"][0] for r in shadow)
            line = (
                f"- {layout}, concurrency {c}: a shadow adds {change(shadow)} to the caller's "
                f"p50 (both servers' ratios, geometric mean, over {len(shadow[0]['ratios'])} "
                f"pairs of slots each): goal (≤ +5%) {verdict}. The server's CPU per request "
                f"{100 * (cpu - 1):+.1f}%. Without any table, B against A: "
                f"{change(results[(layout, 'A/A')][c])}, the difference the crossover cancels."
            )
            scored, dropped = (sum(r["shed"][i] for r in shadow) for i in (0, 1))
            if dropped:
                line += (
                    f" The shadow process scored {scored / (scored + dropped):.0%} of the "
                    f"copies and dropped the rest ({dropped:,.0f}): its core had no more time "
                    "for it."
                )
            if "router" in configs:
                line += (
                    f" The router alone {change(results[(layout, 'router')][c])}, mirroring "
                    f"{MIRROR:.0%} of requests {change(results[(layout, 'router+shadow 25%')][c])}."
                )
            if IDLE in configs:
                line += (
                    " A busy loop at idle priority on the clients' core in one server's turns, "
                    f"without any table: {change(results[(layout, IDLE)][c])}."
                )
            verdicts.append(line)
    command = (
        "python benchmarks/bench_serving.py --router"
        + "".join(
            f" --{k} {v}"
            for k, v in (
                ("duration", f"{args.duration:g}"),
                ("warmup", f"{args.warmup:g}"),
                ("concurrency", args.concurrency),
            )
        )
        + ("" if pinned else " --no-pin")
    )
    section = "\n".join(
        [
            "## Serving: router and shadow (`benchmarks/bench_serving.py --router`)",
            "",
            f"Command: `{command}` on {date.today()}, {platform.machine()}, "
            f"{platform.python_version()}, {os.cpu_count()} cores.",
            "",
            "The model of the serving benchmark above (LightGBM, 20 numeric features) served by "
            "two `mlsd serve` processes, **A** and **B**, each following the routing table of "
            f"a workspace of its own (`serving.poll_s: {POLL_S}`). Before each measurement one "
            "of them gets the configuration's table and the other none: **A/A** (no table on "
            "either: how much the two processes differ), **router** (a 50/50 table of version "
            "1 and version 2, assigned by the request id, every row logged with experiment, "
            "arm, unit and p, per-arm metrics), **router+shadow** (version 1 answers "
            "everything, version 2 scores a copy of each request in the shadow process, "
            "`python -m mlsd.serving.router` under `SCHED_IDLE`, which reads the copies from "
            "the prediction log's lines as the log's writer thread takes them, and logs a "
            "shadow row; copies that find the queue full are dropped and counted) and "
            f"**router+shadow {MIRROR:.0%}** (`rollout.shadow.share: {MIRROR:g}`: a hash of the "
            "request id picks the requests copied). Version 2 is the same package under "
            "another version number: a second model loaded and verified on its own, with the "
            "same cost per row. Each configuration is measured twice, its table on B (`on B`) "
            "and then on A (`on A`): a crossover, whose geometric mean of the two ratios "
            "cancels whatever makes one process faster than the other (the A/A row measures "
            "that difference). The servers take the load in "
            f"turns of {SLOT_S:g} s (one keep-alive connection per client, 64 rows in turn), "
            "in pairs A B, B A, A B, ..., a slot ending once its last answers are in; a ratio "
            "is the median over the pairs of the p50 of the server with the table over the "
            "other's, with the 95% interval of that median (order statistics of the "
            "binomial). Slots this short cancel the drift of a shared VM, which moves runs a "
            "few seconds apart by more than the effect measured here. "
            + (
                "Both servers are pinned to core 0. Three layouts place the rest, as this "
                "machine has no third core: **server's core** leaves the shadow process on "
                "core 0 with the servers (where `taskset -c 0 mlsd serve` puts it, at idle "
                "priority there) and gives the load generator core 1 to itself, as clients on "
                "other machines have theirs; **own core** gives the "
                "shadow process core 1 to itself and runs the load generator on core 0 with "
                "the servers (the clients' CPU, the same in both turns, dilutes the ratio: "
                "the server's CPU per request is what p50 follows with the clients on other "
                "machines); **shared core** runs the load generator on core 1 with the "
                f"shadow process. **{IDLE}** (shared core, no table) runs a busy loop under "
                "`SCHED_IDLE` on the clients' core during one server's turns only: what any "
                "work at the lowest priority there does to the clients. In every layout the "
                "shadow process (and the idle loop) is stopped in the other server's turns, "
                "so that its backlog does not spill into them. "
                if pinned
                else f"Clients and servers share the {os.cpu_count()} cores unpinned. "
            )
            + "After the runs the two servers counted "
            + ", ".join(f"`{k}` {v:,.0f}" for k, v in shadow_counts.items())
            + f". Ready after start: {startup:.1f} s.",
            "",
            *table,
            "",
            *verdicts,
            "",
        ]
    )
    print()
    print(section)
    if args.no_write:
        return
    write_section("## Serving: router and shadow", section)


RANK_ITEMS = 100  # items per /v1/rank request
RANK_GROUPS = 500  # training groups (50,000 rows)
RANKED = ("rank", "predict")


def train_ranker(tmp: Path) -> dict[str, Any]:
    """A LightGBM lambdarank model trained by mlsd (default parameters) on groups of
    :data:`RANK_ITEMS` items: the 20 features, relevance 0-4 by quintile of the hidden
    score within each group."""
    import numpy as np
    import pandas as pd

    from mlsd.models.train import train
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    X, _ = features(RANK_GROUPS * RANK_ITEMS, seed=0)
    rng = np.random.default_rng(0)
    hidden = (
        np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + np.abs(X[:, 3]) + 0.5 * X[:, 4]
        + 0.2 * X[:, 7:12].sum(axis=1) + rng.normal(scale=0.5, size=len(X))
    )  # fmt: skip
    frame = pd.DataFrame(X, columns=names())
    frame.insert(0, "query", np.repeat(np.arange(RANK_GROUPS), RANK_ITEMS))
    order = pd.Series(hidden).groupby(frame["query"]).rank(method="first") - 1
    frame["rel"] = (order * 5 // RANK_ITEMS).astype(int)
    frame.to_parquet(tmp / "rank.parquet")
    config = tmp / "system.yaml"
    config.write_text(
        "name: bench-rank\n"
        "problem: {task: ranking, target: rel, group: query}\n"
        "metrics: {primary: ndcg@10}\n"
        "data: {source: rank.parquet}\n"
        "models: {candidates: [lightgbm], tuning: {budget_s: 0}}\n"
        f"serving: {{poll_s: 0, max_instances: {RANK_ITEMS}}}\n"
    )
    spec = load_spec(config)
    started = time.perf_counter()
    result = train(spec, Workspace.for_spec(spec), progress=False)
    if not result.registered:
        raise SystemExit(f"the ranking model was not registered: {result.reasons}")
    return {
        "config": config,
        "package": Path(result.package),
        "train_s": time.perf_counter() - started,
    }


def raw_booster(
    model_txt: Path, arrays: list, seconds: float, repeat: int, concurrency: int
) -> list[dict]:
    """``Booster.predict`` (one OpenMP thread per call) on the 100-row arrays in turn from
    ``concurrency`` Python threads at once (LightGBM releases the GIL), ``repeat`` windows
    of ``seconds``: each call's p50 and p99, and calls per second."""
    import threading

    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(model_txt))
    for x in arrays:  # warm-up
        booster.predict(x, num_threads=1)
    windows = []
    for _ in range(repeat):
        times: list[int] = []
        stop = time.perf_counter() + seconds

        def client(index: int, stop: float = stop, times: list = times) -> None:
            mine, i = [], index
            while time.perf_counter() < stop:
                t0 = time.perf_counter_ns()
                booster.predict(arrays[i % len(arrays)], num_threads=1)
                mine.append(time.perf_counter_ns() - t0)
                i += 1
            times.extend(mine)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times.sort()
        windows.append(
            {
                "p50_ms": times[len(times) // 2] / 1e6,
                "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] / 1e6,
                "rps": len(times) / seconds,
                "calls": len(times),
            }
        )
    return windows


def rank_breakdown(paths: dict, items: list[list[dict]], tmp: Path) -> dict[str, float]:
    """Where one 100-item ranking's time goes on the server, in this process: median
    milliseconds of each step of ``Server.rank`` and of the whole call."""
    import numpy as np
    import orjson

    from mlsd.predlog.writer import PredictionLog
    from mlsd.serving.app import Server
    from mlsd.serving.model import load_version
    from mlsd.spec import load_spec

    spec = load_spec(paths["config"])
    model = load_version("bench-rank", 1, paths["package"], spec.serving)
    log = PredictionLog(tmp / "breakdown-log", flush_s=1.0)
    server = Server(tmp / "breakdown", "bench-rank", spec.serving, log=log)
    server.model = model
    bodies = [orjson.dumps({"group": g, "items": it}) for g, it in enumerate(items)]
    checked = [model.validator.validate(it) for it in items]
    outputs = [model.predict(c.columns) for c in checked]
    featurizer, booster = model.package.featurizer, model.package.model
    features_ = [featurizer.transform(c.columns) for c in checked]

    steps = {
        "parse the JSON body": lambda i: orjson.loads(bodies[i]),
        "validate 100 items": lambda i: model.validator.validate(items[i]),
        "featurizer": lambda i: featurizer.transform(checked[i].columns),
        "LightGBM (the package's call)": lambda i: booster.predict(features_[i]),
        "log 100 rows": lambda i: log.prediction(
            request_id="b",
            model_version="1",
            inputs=items[i],
            outputs=outputs[i],
            latency_ms=1.0,
            group=str(i),
            ranks=list(range(1, len(items[i]) + 1)),
        ),
        "whole Server.rank": lambda i: server.rank(i, items[i], "b", time.perf_counter()),
        "whole Server.predict (the same items, no ranking)": lambda i: server.predict(
            items[i], "b", time.perf_counter()
        ),
    }
    spent: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(300 + len(items)):  # the steps in turn, so drift hits each alike
        i = k % len(items)
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(i)
            if k >= len(items):  # the first round of lists warms up
                spent[name].append(time.perf_counter() - t0)
    out = {name: float(np.median(times)) * 1e3 for name, times in spent.items()}
    server.close()
    return out


def report_rank(args, levels: list[int], tmp: Path) -> None:
    """``POST /v1/rank`` on 100-item lists against raw ``Booster.predict`` (``--rank``)."""
    import numpy as np

    print("training the ranking model with mlsd ...", flush=True)
    paths = train_ranker(tmp)
    load_before = os.getloadavg()[0]
    package = paths["package"]
    signature = json.loads((package / "signature.json").read_text())
    low = np.array([i.get("min", -np.inf) for i in signature["inputs"]])
    high = np.array([i.get("max", np.inf) for i in signature["inputs"]])
    lists = 8
    X, _ = features(lists * RANK_ITEMS, seed=1)
    X = np.clip(X, low, high)
    arrays = [X[i * RANK_ITEMS : (i + 1) * RANK_ITEMS] for i in range(lists)]
    items = [[{n: float(v) for n, v in zip(names(), x, strict=True)} for x in a] for a in arrays]
    model_txt = package / "model" / "model.txt"
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(model_txt))
    expected = [booster.predict(a, num_threads=1) for a in arrays]
    payloads = {
        "rank": [json.dumps({"group": g, "items": it}).encode() for g, it in enumerate(items)],
        "predict": [json.dumps({"instances": it}).encode() for it in items],
    }
    served = start("mlsd", paths, tmp)
    results: dict[str, dict[int, dict]] = {n: {} for n in RANKED}
    runs_by: dict[str, dict[int, list[dict]]] = {n: {} for n in RANKED}
    try:
        startup = served.wait_ready()
        print(f"mlsd ready in {startup:.1f} s on port {served.port}", flush=True)
        _check_ranking(served.port, payloads["rank"], expected)
        for c in levels:
            for i in range(args.repeat):
                for name in RANKED if i % 2 == 0 else RANKED[::-1]:
                    path = "/v1/rank" if name == "rank" else "/v1/predict"
                    job = {
                        "port": served.port,
                        "path": path,
                        "bodies": [b.decode() for b in payloads[name]],
                        "concurrency": c,
                        "warmup": args.warmup,
                        "duration": args.duration,
                        "max_requests": args.max_requests,
                    }
                    key = f'mlsd_requests_total{{route="{path}",status="200"}}'
                    pid = served.proc.pid
                    before = (
                        _cpu_seconds(pid),
                        _metric(_get(served.port, "/metrics"), key),
                        _thread_cpu_seconds(pid, pid),
                    )
                    r = run_self("--load", job, timeout=args.warmup + args.duration + 120)
                    answered = max(_metric(_get(served.port, "/metrics"), key) - before[1], 1)
                    # the server's CPU per answered request (warm-up included on both sides),
                    # and its main thread's: the event loop (HTTP, JSON parsing, dispatch)
                    r["cpu_ms"] = (_cpu_seconds(pid) - before[0]) / answered * 1e3
                    r["loop_ms"] = (_thread_cpu_seconds(pid, pid) - before[2]) / answered * 1e3
                    bad = {k: v for k, v in r["statuses"].items() if k != "200"}
                    print(
                        f"  {path:<12} concurrency {c:>2}: {r['requests']:>7,} requests  p50 "
                        f"{r['p50_ms']:6.3f} ms  p99 {r['p99_ms']:6.2f} ms  {r['rps']:8,.0f} "
                        f"req/s  server CPU {r['cpu_ms']:.2f} ms/request"
                        + (f"  NON-200: {bad}" if bad else ""),
                        flush=True,
                    )
                    runs_by[name].setdefault(c, []).append(r)
            for name in RANKED:
                results[name][c] = combine(runs_by[name][c])
                for k in ("cpu_ms", "loop_ms"):
                    results[name][c][k] = statistics.median(r[k] for r in runs_by[name][c])
    finally:
        served.stop()
    raws: dict[int, dict] = {}
    for c in levels:
        windows = raw_booster(model_txt, arrays, max(1.0, args.duration), args.repeat, c)
        raws[c] = {k: statistics.median(w[k] for w in windows) for k in ("p50_ms", "p99_ms", "rps")}
        raws[c]["p50_range"] = (
            min(w["p50_ms"] for w in windows),
            max(w["p50_ms"] for w in windows),
        )
        raws[c]["requests"] = sum(w["calls"] for w in windows)
        print(
            f"  raw Booster.predict concurrency {c:>2}: p50 {raws[c]['p50_ms']:6.3f} ms  p99 "
            f"{raws[c]['p99_ms']:6.2f} ms  {raws[c]['rps']:8,.0f} calls/s",
            flush=True,
        )
    steps = rank_breakdown(paths, items, tmp)
    load_after = os.getloadavg()[0]

    table = [
        fmt_row(
            [
                "route",
                "concurrency",
                "requests",
                "p50 ms",
                "p50 range",
                "p99 ms",
                "req/s",
                "p50 / raw",
                "p99 / raw",
                "req/s / raw",
                "server CPU ms/request",
            ]
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in (*RANKED, "raw"):
        for c in levels:
            r = raws[c] if name == "raw" else results[name][c]
            lo, hi = r["p50_range"]
            table.append(
                fmt_row(
                    [
                        {
                            "rank": "`/v1/rank`",
                            "predict": "`/v1/predict`",
                            "raw": "raw `Booster.predict`",
                        }[name],
                        str(c),
                        f"{r['requests']:,}",
                        f"{r['p50_ms']:.3f}",
                        f"{lo:.3f}–{hi:.3f}",
                        f"{r['p99_ms']:.2f}",
                        f"{r['rps']:,.0f}",
                        f"{r['p50_ms'] / raws[c]['p50_ms']:.2f}x",
                        f"{r['p99_ms'] / raws[c]['p99_ms']:.2f}x",
                        f"{r['rps'] / raws[c]['rps']:.2f}x",
                        f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "–",
                    ]
                )
            )
    breakdown = [
        fmt_row(["step of one 100-item `/v1/rank` (in process)", "ms (median)"]),
        "|---|---|",
        *(fmt_row([step, f"{ms:.3f}"]) for step, ms in steps.items()),
    ]
    verdicts = []
    for c in levels:
        rank, predict, raw = results["rank"][c], results["predict"][c], raws[c]
        verdicts.append(
            f"- concurrency {c}: `/v1/rank` answers 100 items in {rank['p50_ms']:.2f} ms p50 "
            f"({rank['p50_range'][0]:.2f}–{rank['p50_range'][1]:.2f} over the runs) against "
            f"{raw['p50_ms']:.2f} ms for raw `Booster.predict` on the same rows from {c} "
            f"thread(s): **{rank['p50_ms'] / raw['p50_ms']:.1f}x slower** at p50, "
            f"{rank['p99_ms'] / raw['p99_ms']:.1f}x at p99 ({rank['p99_ms']:.1f} ms), "
            f"{rank['rps'] / raw['rps']:.2f}x its throughput ({rank['rps']:,.0f} against "
            f"{raw['rps']:,.0f} lists/s). Ranking adds "
            f"{100 * (rank['p50_ms'] / predict['p50_ms'] - 1):+.0f}% to `/v1/predict` of "
            f"the same items ({predict['p50_ms']:.2f} ms p50)."
        )
    model_ms = steps["LightGBM (the package's call)"]
    whole = steps["whole Server.rank"]
    plain = steps["whole Server.predict (the same items, no ranking)"]
    cpu = statistics.median(results["rank"][c]["cpu_ms"] for c in levels)
    loop = statistics.median(results["rank"][c]["loop_ms"] for c in levels)
    verdicts.append(
        f"- Where mlsd is slower: the model itself is {model_ms:.2f} ms of the "
        f"{whole:.2f} ms `Server.rank` takes in process; validation, the featurizer and the "
        f"log add {whole - model_ms:.2f} ms ({100 * (whole / model_ms - 1):.0f}%). The server "
        f"process spends {cpu:.2f} ms of CPU per answered `/v1/rank` (its `/proc` CPU time "
        f"over the requests `/metrics` counted), {loop:.2f} ms of it on the event loop's "
        "thread (HTTP, reading the ~40 KB body, parsing it, handing the list to a worker "
        "thread, sending the answer) and the rest on the worker thread that runs "
        "`Server.rank` and the log writer's. At "
        "concurrency 8 the Python part runs under one GIL while the raw threads only wait "
        "on LightGBM (which releases it), so the gap widens; the server also shares the "
        "2 cores with the load generator, the raw threads do not. In process, "
        f"`Server.rank` takes {100 * (whole / plain - 1):+.0f}% over `Server.predict` of the "
        "same items (the sort, the answer's list, group and position in each log row)."
    )
    command = "python benchmarks/bench_serving.py --rank" + "".join(
        f" --{k} {v}"
        for k, v in (
            ("duration", f"{args.duration:g}"),
            ("warmup", f"{args.warmup:g}"),
            ("concurrency", args.concurrency),
            ("repeat", str(args.repeat)),
        )
    )
    section = "\n".join(
        [
            "## Serving: ranking (`benchmarks/bench_serving.py --rank`)",
            "",
            f"Command: `{command}` on {date.today()}, {platform.machine()}, "
            f"{platform.python_version()}, {os.cpu_count()} cores, LightGBM "
            f"{_version('lightgbm')}.",
            "",
            "A LightGBM lambdarank model (20 numeric features, default parameters, trained by "
            f"`mlsd train` in {paths['train_s']:.0f} s on {RANK_GROUPS} groups of "
            f"{RANK_ITEMS} items) served by `mlsd serve` (`serving.poll_s: 0`). Each request "
            f'is `POST /v1/rank` with `{{"group", "items"}}` of {RANK_ITEMS} items '
            f"({lists} lists in turn): validation, featurizer, one LightGBM call, the sort, "
            "the answer and one log row per item. `/v1/predict` gets the same 100 items as "
            "`instances`, in runs alternating with the rank runs. The raw floor is "
            "`Booster.predict` on the same 100-row float64 arrays in this Python process, one "
            "OpenMP thread per call (as the server calls LightGBM for fewer rows than its "
            "threading threshold), no HTTP, no JSON, no validation, no log: the ratio is what "
            "the service around the model costs. "
            "Load as above (one keep-alive connection per client, one request in flight on "
            f"each), {args.repeat} runs per figure, medians, the p50's run-to-run range shown; "
            f"client and server share the {os.cpu_count()} cores with whatever else runs on "
            "the machine. Lists over 64 items are scored on the thread pool, off the event "
            f"loop. Ready after start: {startup:.1f} s. The machine's 1-minute load average "
            f"was {load_before:.2f} when the runs started and {load_after:.2f} at the end "
            "(other processes share it). The raw rows: `Booster.predict` from as "
            "many Python threads as the server has clients (LightGBM releases the GIL), each "
            "call's latency; the ratios compare each route with the raw figure at the same "
            "concurrency.",
            "",
            *table,
            "",
            *breakdown,
            "",
            *verdicts,
            "",
        ]
    )
    print()
    print(section)
    if args.no_write:
        return
    write_section("## Serving: ranking", section)


def _check_ranking(port: int, payloads: list[bytes], expected: list) -> None:
    """Every ranking must order the raw booster's scores, highest first."""
    import numpy as np

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body, want in zip(payloads, expected, strict=True):
            conn.request(
                "POST", "/v1/rank", body=body, headers={"content-type": "application/json"}
            )
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                raise RuntimeError(f"/v1/rank answered {response.status}: {text[:500]!r}")
            ranking = json.loads(text)["ranking"]
            order = [r["item"] for r in ranking]
            if order != list(np.argsort(-want, kind="stable")):
                raise RuntimeError("/v1/rank's order is not the raw booster's")
            if not np.allclose([r["score"] for r in ranking], want[order], rtol=0, atol=1e-9):
                raise RuntimeError("/v1/rank's scores are not the raw booster's")
    finally:
        conn.close()


def _pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cpus`` (Linux); what it starts later inherits."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux): the server's shadow process."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def crossover(runs: list[dict]) -> tuple[float, float, float]:
    """The median ratio of a crossover and its 95% interval: the geometric mean of each
    run's median and of each of its bounds (conservative: the bounds of a mean of
    independent estimates are narrower than the mean of their bounds)."""
    bounds = [(statistics.median(r["ratios"]), *_median_interval(r["ratios"])) for r in runs]
    return tuple(map(statistics.geometric_mean, zip(*bounds, strict=True)))


def _median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values``: the order statistics the
    binomial(n, 1/2) puts ``level`` between (the range when there are too few values)."""
    from scipy.stats import binom

    ordered, n = sorted(values), len(values)
    k = 0  # the largest k with P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2
    while k + 1 <= n and binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads; Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_seconds(pid: int, tid: int) -> float:
    """User + system CPU seconds of thread ``tid`` of process ``pid`` (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the live children of ``pid`` (the shadow process)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += _cpu_seconds(int(stat.parent.name))
    return total


def _shadow_counts(port: int) -> tuple[float, float]:
    """The shadow server's copies scored and dropped so far."""
    text = _get(port, "/metrics")
    scored = _metric(text, 'mlsd_shadow_predictions_total{arm="challenger"}')
    return scored, _metric(text, "mlsd_shadow_dropped_total")


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _metric(text: str, key: str) -> float:
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


if __name__ == "__main__":
    main()

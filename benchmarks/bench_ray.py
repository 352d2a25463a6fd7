"""The Ray engine on this machine: batch scoring and tuning trials, local against Ray.

    python benchmarks/bench_ray.py [--rows 10000000] [--budget 30] [--no-write]
    python benchmarks/bench_ray.py --serving [--duration 5] [--repeat 3] [--no-write]
    python benchmarks/bench_ray.py --monitor [--log-rows 1000000] [--no-write]

Batch: the serving benchmark's model (LightGBM, 20 numeric features, trained by mlsd at its
defaults on 50,000 rows) scores ``--rows`` rows of a Parquet file (written in row groups of
1M) with ``mlsd predict`` locally (one process, reading ahead in a thread) and with
``--engine ray`` (Ray Data, an actor pool of the cluster's CPUs less one, the driver
writing the output). Both outputs are compared: the same scores in the same order. Ray's
start (``ray.init`` of a 2-CPU local cluster) is timed apart.

Tuning: LightGBM on the same 50,000-row table (33,000 rows to fit, the rest to validate)
searched for ``--budget`` seconds by Optuna's TPE, one trial at a time here against two at a
time on the cluster (one per CPU): finished trials per minute and the best validation log
loss. Each run is a fresh study with the same seed.

Serving (``--serving``): the same model answers single-row ``POST /v1/predict`` requests
(the serving benchmark's load generator: keep-alive connections, one request in flight each)
from ``mlsd serve`` (one process), ``mlsd serve --engine ray --replicas 2`` (two mlsd servers
placed by Ray sharing the port) and a Ray Serve application with two replicas behind Serve's
proxy, each replica holding mlsd's ``Server`` and calling its ``predict`` (validation, model,
prediction log: the work of mlsd's route). The configurations run in turn, one at a time,
``--repeat`` rounds; medians.

Monitoring (``--monitor``): the Caravan example (85 input fields) trained by mlsd, then
``--log-rows`` predictions written to its log as the server writes them (requests of 100 over
seven days, feedback for one request in ten, segments of 20,000 rows) and ``mlsd monitor``
over daily windows, locally and with ``--engine ray`` (one actor per CPU, each reading a
block of segments). The time spent reading the log is measured apart from the checks, and
the two reports are compared.

Figures go to BENCHMARKS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from bench_serving import (
    ROOT,
    Served,
    combine,
    features,
    names,
    run_load,
    train_model,
    venv_env,
)
from report import write_section

GROUP_ROWS = 1_000_000


def write_rows(path: Path, rows: int) -> None:
    """``rows`` rows of the model's features, inside its training range, 1M per row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for at in range(0, rows, GROUP_ROWS):
        X, _ = features(min(GROUP_ROWS, rows - at), seed=10 + at // GROUP_ROWS)
        np.clip(X, -3.5, 3.5, out=X)
        table = pa.table({n: X[:, i] for i, n in enumerate(names())})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def bench_batch(model: dict, rows: int, tmp: Path) -> dict:
    import pyarrow.parquet as pq
    import ray

    from mlsd.engine.ray_batch import on_ray
    from mlsd.serving.batch import predict_batch
    from mlsd.spec import EngineSpec, load_spec

    data = tmp / "rows.parquet"
    started = time.perf_counter()
    write_rows(data, rows)
    print(f"wrote {rows:,} rows in {time.perf_counter() - started:.1f} s")
    spec = load_spec(model["config"])
    out: dict = {"parquet_mb": data.stat().st_size / 2**20}
    local = predict_batch(spec, data, tmp / "local.parquet", progress=False)
    out["local_s"] = local["seconds"]
    print(f"local: {local['seconds']:.1f} s ({local['rows_per_s']:,.0f} rows/s)")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - started
    engine = on_ray(EngineSpec(kind="ray"), spec.serving)
    remote = predict_batch(spec, data, tmp / "ray.parquet", progress=False, engine=engine)
    out["ray_s"] = remote["seconds"]
    print(f"ray: {remote['seconds']:.1f} s ({remote['rows_per_s']:,.0f} rows/s)")
    a = pq.read_table(tmp / "local.parquet", columns=["score"]).column("score").to_numpy()
    b = pq.read_table(tmp / "ray.parquet", columns=["score"]).column("score").to_numpy()
    out["same"] = bool(len(a) == len(b) == rows and np.array_equal(a, b))
    out["rows"] = rows
    return out


def bench_tuning(budget_s: float) -> dict:
    from mlsd.engine.ray_tuning import RayTrials
    from mlsd.models.base import FitData, TaskInfo
    from mlsd.models.tuning import tune
    from mlsd.spec import EngineSpec

    X, y = features(50_000, seed=0)
    y = y.astype(float)
    cut = 33_000
    data = FitData(X[:cut], y[:cut], X[cut:], y[cut:])

    def logloss(p: np.ndarray) -> float:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-np.mean(data.y_valid * np.log(p) + (1 - data.y_valid) * np.log(1 - p)))

    out = {}
    for name, pool in (("local", None), ("ray", RayTrials(EngineSpec(kind="ray")))):
        started = time.perf_counter()
        result = tune(
            "lightgbm", TaskInfo("binary", 2), data, score=logloss, direction="min",
            budget_s=budget_s, max_trials=10_000, seed=0, pool=pool,
        )  # fmt: skip
        wall = time.perf_counter() - started
        done = sum(t["state"] == "COMPLETE" for t in result.trials)
        out[name] = {"wall_s": wall, "complete": done, "pruned": result.n_pruned,
                     "per_min": 60 * done / wall, "best": result.score}  # fmt: skip
        print(f"tuning {name}: {done} trials in {wall:.1f} s, best log loss {result.score:.5f}")
    return out


class Timed:
    """A log reader whose calls are timed: reading apart from the monitor's checks."""

    def __init__(self, reader, workspace):
        self.log, self.seconds = reader(workspace), 0.0

    def __getattr__(self, name):
        method = getattr(self.log, name)

        def timed(*args):
            started = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def bench_monitor(rows: int, tmp: Path) -> dict:
    import shutil

    import pandas as pd
    import ray

    from mlsd.engine.ray_monitoring import log_on_ray
    from mlsd.models import aliases
    from mlsd.models import package as packages
    from mlsd.models.train import train
    from mlsd.monitoring.monitor import monitor
    from mlsd.monitoring.windows import LogRows
    from mlsd.predlog.writer import PredictionLog
    from mlsd.serving.model import format_outputs
    from mlsd.spec import EngineSpec, load_spec
    from mlsd.workspace import Workspace

    folder = tmp / "caravan"
    shutil.copytree(ROOT / "examples" / "caravan", folder, ignore=shutil.ignore_patterns(".mlsd"))
    config = folder / "system.yaml"
    config.write_text(config.read_text() + "\nmonitoring: {window: 1d, log_to_mlflow: false}\n")
    spec = load_spec(config)
    train(spec, progress=False)
    ws = Workspace.for_spec(spec)
    version, package_folder = aliases.resolve(ws.root, spec.name, "champion")
    package = packages.load(package_folder)
    frame = pd.read_csv(folder / "caravan.csv")
    X = frame.drop(columns=["Purchase"])
    inputs = X.to_dict("records")
    outputs = format_outputs(
        package.predict_matrix({c: X[c].tolist() for c in X.columns}), package.signature
    )
    day, start = 86400.0, 1_750_000_000.0 - 1_750_000_000.0 % 86400.0
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for first in range(0, rows, 20_000):  # one writer per segment
        with PredictionLog(ws) as log:
            for r in range(first // 100, min(rows, first + 20_000) // 100):
                i = int(rng.integers(0, len(inputs) - 100))
                ts = start + (r * 100 / rows) * 7 * day
                rid = f"r{r}"
                log.prediction(request_id=rid, model_version=str(version),
                               inputs=inputs[i : i + 100], outputs=outputs[i : i + 100],
                               latency_ms=3.0, ts=ts)  # fmt: skip
                if r % 10 == 0:
                    for k in range(100):
                        log.feedback(request_id=rid, instance=k, label=frame["Purchase"].iloc[i + k], ts=ts + 60)  # fmt: skip
    size = sum(f.stat().st_size for f in (ws.root / "log").rglob("*.jsonl"))
    print(
        f"wrote {rows:,} predictions ({size / 2**20:,.0f} MB) in {time.perf_counter() - started:.1f} s"
    )
    out: dict = {"rows": rows, "log_mb": size / 2**20, "fields": len(X.columns)}
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - started
    reports = {}
    for name, reader in (("local", LogRows), ("ray", log_on_ray(EngineSpec(kind="ray")))):
        opened: list[Timed] = []

        def engine(workspace, reader=reader, opened=opened):
            opened.append(Timed(reader, workspace))
            return opened[-1]

        started = time.perf_counter()
        result = monitor(spec, ws, now=start + 8 * day, publish=False, write=False, engine=engine)
        wall = time.perf_counter() - started
        out[name] = {"wall_s": wall, "read_s": opened[0].seconds}
        report = dict(result.report)
        for volatile in ("generated_at", "seconds"):
            report.pop(volatile)
        reports[name] = report
        print(f"monitor {name}: {wall:.1f} s, of which reading {opened[0].seconds:.1f} s")
    out["same"] = reports["local"] == reports["ray"]
    out["windows"] = len(reports["local"]["models"][0]["windows"])
    return out


def monitor_section(figures: dict) -> str:
    import ray

    command = "python benchmarks/bench_ray.py --monitor" + (
        "" if figures["rows"] == 1_000_000 else f" --log-rows {figures['rows']}"
    )
    local, remote = figures["local"], figures["ray"]
    lines = [
        "## Ray engine: monitoring (`benchmarks/bench_ray.py --monitor`)",
        "",
        f"Command: `{command}` on {date.today()}, {platform.machine()}, "
        f"{platform.python_version()}, 2 cores, Ray {ray.__version__}.",
        "",
        f"`mlsd monitor` over {figures['rows']:,} logged predictions of the Caravan model "
        f"({figures['fields']} input fields; {figures['log_mb']:,.0f} MB of JSON segments, "
        f"labels for a tenth) in {figures['windows']} daily windows: locally (DuckDB over every "
        "segment, two threads) and with `--engine ray` on a 2-CPU local cluster (two actors, "
        "each reading half the segments with one DuckDB thread; the driver merges and checks).",
        "",
        "| | local | Ray | Ray / local |",
        "|---|---|---|---|",
        f"| reading the log, seconds | {local['read_s']:.1f} | {remote['read_s']:.1f} | "
        f"{remote['read_s'] / local['read_s']:.2f}x |",
        f"| checks (drift, quality, performance, latency), seconds | "
        f"{local['wall_s'] - local['read_s']:.1f} | {remote['wall_s'] - remote['read_s']:.1f} | |",
        f"| whole run, seconds | {local['wall_s']:.1f} | {remote['wall_s']:.1f} | "
        f"{remote['wall_s'] / local['wall_s']:.2f}x |",
        f"| cluster start (`ray.init`), seconds | - | {figures['ray_init_s']:.1f} | |",
        "",
        f"- The two reports are the same: {'yes' if figures['same'] else 'NO'}.",
        f"- Reading is {local['read_s'] / local['wall_s']:.0%} of a local run. On two cores the "
        "actors have no more CPU than DuckDB's own threads, and their rows travel to the driver "
        "through the object store: here Ray reads at "
        f"{local['read_s'] / remote['read_s']:.2f}x the local speed. The blocks are what "
        "spreads over the nodes of a real cluster (the log on shared storage); the checks run "
        "on the driver over the columns read, in memory.",
    ]
    return "\n".join(lines) + "\n"


RAY_SERVE_PORT_FLAG = "--ray-serve-app"


def ray_serve_app(config: str, port: int) -> None:
    """A Ray Serve application answering ``/v1/predict`` with mlsd's ``Server`` in two
    replicas behind Serve's proxy on ``port``; runs until terminated."""
    import signal
    import uuid

    import orjson
    import ray
    from ray import serve
    from starlette.responses import Response

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.5})
    class Predict:
        def __init__(self, config: str):
            from mlsd.serving.app import Server
            from mlsd.spec import load_spec
            from mlsd.workspace import Workspace

            spec = load_spec(config)
            self.server = Server(Workspace.for_spec(spec).root, spec.name, spec.serving)
            self.server.load()

        async def __call__(self, request):
            if request.url.path.endswith("/readyz"):
                return Response(b"{}", media_type="application/json")
            payload = orjson.loads(await request.body())
            answer = self.server.predict(
                payload["instances"], uuid.uuid4().hex, time.perf_counter()
            )
            return Response(orjson.dumps(answer), media_type="application/json")

    serve.run(Predict.bind(config), route_prefix="/", blocking=False)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    serve.shutdown()
    ray.shutdown()


def bench_serving(args, tmp: Path) -> dict:
    """p50, p99 and req/s of each serving configuration at concurrency 1 and 8."""
    import sys

    model = train_model(tmp)
    config = str(model["config"])
    X, _ = features(64, seed=3)
    np.clip(X, -3.5, 3.5, out=X)
    rows = [dict(zip(names(), map(float, x), strict=True)) for x in X]
    mlsd = [sys.executable, "-m", "mlsd", "serve", "-c", config, "--port", "{port}"]
    commands = {
        "mlsd serve": mlsd,
        "mlsd serve --engine ray --replicas 2": [*mlsd, "--engine", "ray", "--replicas", "2"],
        "Ray Serve, 2 replicas": [sys.executable, __file__, RAY_SERVE_PORT_FLAG, config, "{port}"],
    }
    runs: dict = {(name, c): [] for name in commands for c in (1, 8)}
    ready: dict = {}
    env = {**venv_env(), "RAY_USAGE_STATS_ENABLED": "0"}
    for _ in range(args.repeat):
        for name, command in commands.items():
            served = Served(name.split()[0], command, "/readyz", tmp, env=env)
            try:
                ready.setdefault(name, served.wait_ready())
                time.sleep(2.0)  # every replica up (the port answers once the first one is)
                for concurrency in (1, 8):
                    result = run_load("mlsd", served.port, rows, concurrency, args)
                    runs[(name, concurrency)].append(result)
                    print(f"{name} c={concurrency}: p50 {result['p50_ms']:.2f} ms, "
                          f"{result['rps']:,.0f} req/s")  # fmt: skip
            finally:
                served.stop()
    return {"runs": {k: combine(v) for k, v in runs.items()}, "ready": ready}


def serving_section(args, figures: dict) -> str:
    import ray

    runs, ready = figures["runs"], figures["ready"]
    base = {c: runs[("mlsd serve", c)] for c in (1, 8)}
    lines = [
        "## Ray engine: serving (`benchmarks/bench_ray.py --serving`)",
        "",
        f"Command: `python benchmarks/bench_ray.py --serving --duration {args.duration:g} "
        f"--repeat {args.repeat}` on {date.today()}, {platform.machine()}, "
        f"{platform.python_version()}, 2 cores, Ray {ray.__version__}.",
        "",
        "The serving benchmark's model answers single-row `POST /v1/predict` requests (its load "
        "generator: keep-alive connections, one request in flight each, 64 rows in turn) from "
        "one `mlsd serve` process, from `mlsd serve --engine ray --replicas 2` (two mlsd "
        "servers in Ray actors sharing the port with `SO_REUSEPORT`) and from a Ray Serve "
        "application with two replicas behind Serve's proxy, each replica calling mlsd's "
        "`Server.predict` (validation, model, prediction log). One configuration at a time, "
        f"{args.repeat} rounds, medians; client and servers share the 2 cores.",
        "",
        "| server | concurrency | p50 ms | p99 ms | req/s | p50 / mlsd serve | ready s |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, c), r in runs.items():
        lines.append(
            f"| {name} | {c} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:,.0f} | "
            f"{r['p50_ms'] / base[c]['p50_ms']:.2f}x | {ready[name]:.1f} |"
        )
    serve1 = runs[("Ray Serve, 2 replicas", 1)]["p50_ms"]
    mine1 = runs[("mlsd serve --engine ray --replicas 2", 1)]["p50_ms"]
    lines += [
        "",
        f"- Serve's proxy: at concurrency 1 a request through Ray Serve takes {serve1:.2f} ms "
        f"at p50 against {base[1]['p50_ms']:.2f} ms from `mlsd serve` "
        f"({serve1 / base[1]['p50_ms']:.1f}x) and {mine1:.2f} ms from mlsd's replicas on Ray. "
        "This is why `--engine ray` places mlsd's own servers (the port shared, the kernel "
        "spreading connections) instead of putting them behind Serve's proxy.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serving", action="store_true", help="the serving comparison")
    parser.add_argument("--monitor", action="store_true", help="the monitoring comparison")
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(RAY_SERVE_PORT_FLAG, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    app = getattr(args, RAY_SERVE_PORT_FLAG.strip("-").replace("-", "_"))
    if app:
        ray_serve_app(app[0], int(app[1]))
        return
    if args.monitor:
        with tempfile.TemporaryDirectory(prefix="mlsd-bench-ray-") as folder:
            section = monitor_section(bench_monitor(args.log_rows, Path(folder)))
        print(section)
        if not args.no_write:
            write_section("## Ray engine: monitoring", section)
        return
    if args.serving:
        with tempfile.TemporaryDirectory(prefix="mlsd-bench-ray-") as folder:
            section = serving_section(args, bench_serving(args, Path(folder)))
        print(section)
        if not args.no_write:
            write_section("## Ray engine: serving", section)
        return
    import ray

    with tempfile.TemporaryDirectory(prefix="mlsd-bench-ray-") as folder:
        tmp = Path(folder)
        model = train_model(tmp)
        batch = bench_batch(model, args.rows, tmp)
        tuning = bench_tuning(args.budget)
        ray.shutdown()
    command = "python benchmarks/bench_ray.py" + (
        "" if args.rows == 10_000_000 and args.budget == 30 else
        f" --rows {args.rows} --budget {args.budget:g}"
    )  # fmt: skip
    local_rps, ray_rps = batch["rows"] / batch["local_s"], batch["rows"] / batch["ray_s"]
    lt, rt = tuning["local"], tuning["ray"]
    lines = [
        "## Ray engine (`benchmarks/bench_ray.py`)",
        "",
        f"Command: `{command}` on {date.today()}, {platform.machine()}, "
        f"{platform.python_version()}, 2 cores, Ray {ray.__version__}.",
        "",
        "Batch: the serving benchmark's model (LightGBM, 20 numeric features) scores "
        f"{batch['rows']:,} rows of one Parquet file ({batch['parquet_mb']:,.0f} MB, row groups "
        "of 1M) with `mlsd predict`, locally and with `--engine ray` on a 2-CPU local cluster "
        "(one scoring actor; Ray Data reads on the other CPU; the driver writes). Tuning: "
        f"LightGBM searched for {args.budget:g} s on 50,000 rows (33,000 fitted, 17,000 "
        "validated), one trial at a time here against one per CPU on the cluster.",
        "",
        "| work | local | Ray | Ray / local |",
        "|---|---|---|---|",
        f"| batch scoring, seconds | {batch['local_s']:.1f} | {batch['ray_s']:.1f} | "
        f"{batch['ray_s'] / batch['local_s']:.2f}x |",
        f"| batch scoring, rows/s | {local_rps:,.0f} | {ray_rps:,.0f} | "
        f"{ray_rps / local_rps:.2f}x |",
        f"| cluster start (`ray.init`), seconds | - | {batch['ray_init_s']:.1f} | |",
        f"| tuning, finished trials per minute | {lt['per_min']:.0f} | {rt['per_min']:.0f} | "
        f"{rt['per_min'] / lt['per_min']:.2f}x |",
        f"| tuning, best validation log loss | {lt['best']:.5f} | {rt['best']:.5f} | |",
        "",
        f"- The Ray output equals the local one row for row: {'yes' if batch['same'] else 'NO'}.",
        f"- On 2 cores Ray scores at {ray_rps / local_rps:.2f}x the local engine's rate: the "
        "local engine already overlaps reading (a thread) with LightGBM's scoring, and Ray adds "
        "its object store, Arrow IPC between actor and driver, and its own processes on the "
        "same two cores. What a cluster with more cores gains is not measured here.",
        f"- Tuning runs {rt['per_min'] / lt['per_min']:.2f}x the trials per minute: two at once "
        "on two CPUs; TPE then proposes from fewer finished trials per proposal, and the order "
        "trials finish in varies, so a Ray search is not the same from run to run.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section("## Ray engine (`benchmarks/bench_ray.py`)", section)


if __name__ == "__main__":
    main()

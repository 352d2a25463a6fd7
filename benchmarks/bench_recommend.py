"""How fast a recommender funnel answers on MovieLens 100k.

The whole funnel (popularity, item-kNN, EASE and ALS each propose 100 movies, the LightGBM
ranker orders their union, seen movies and the request's exclusions are filtered) is built
with the library, packaged, and served by ``mlsd serve --model <package>``. Measured:

- ``POST /v1/recommend`` for k = 10, one request at a time (concurrency 1) over a kept-alive
  connection, against the same funnel called in-process (``Recommender.recommend``, the
  floor: what HTTP, JSON and logging add);
- ``mlsd recommend --users all`` (batch, users/s) against the server asked one user at a time.

    python benchmarks/bench_recommend.py [--requests 2000]

The data ships inside the recbole wheel (python -m pip install --no-deps recbole==1.2.1).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
from bench_serving import Served, venv_env
from report import write_section

SPEC = """\
name: ml100k-bench
problem: {task: ranking, id: user_id, target: item_id}
architecture: {kind: funnel, generators: [popularity, itemknn, ease, als], candidates: 100}
data: {source: interactions.csv}
"""


def build(tmp: Path) -> tuple[Path, list]:
    """The funnel fitted on every rating, as a package; and the user ids."""
    from mlsd.datasets.movielens import tables
    from mlsd.recsys import package as recommenders
    from mlsd.recsys.funnel import Funnel
    from mlsd.recsys.generators import ALS, EASE, ItemKNN, Popularity
    from mlsd.recsys.interactions import Interactions
    from mlsd.recsys.train import assemble

    inter, _, _ = tables()
    inter.to_csv(tmp / "interactions.csv", index=False)
    (tmp / "system.yaml").write_text(SPEC)
    data = Interactions.from_frame(inter, "user_id", "item_id")
    matrix = data.matrix()
    factories = {
        "popularity": Popularity,
        "itemknn": partial(ItemKNN, 100, 10.0),
        "ease": partial(EASE, 500.0),
        "als": partial(ALS, 64),
    }
    funnel = Funnel(factories, candidates=100, seed=0).fit(matrix)
    rec = assemble(data, matrix, funnel.generators, "funnel", funnel.ranker, k=10, candidates=100)
    folder = recommenders.build(
        tmp / "package",
        rec,
        params={n: g.params() for n, g in funnel.generators.items()},
        metrics={},
        meta={"system": "ml100k-bench"},
    )
    return folder, list(data.users)


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(ms), "p99": float(np.percentile(ms, 99))}


def in_process(folder: Path, users: list, n: int) -> list[float]:
    from mlsd.recsys import package as recommenders

    rec = recommenders.load(folder).recommender
    times = []
    for i in range(n):
        started = time.perf_counter()
        rec.recommend([users[i % len(users)]], 10, [[]])
        times.append((time.perf_counter() - started) * 1000)
    return times


def over_http(port: int, users: list, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"}
    times = []
    for i in range(n):
        body = json.dumps({"user": users[i % len(users)], "k": 10}).encode()
        started = time.perf_counter()
        conn.request("POST", "/v1/recommend", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, payload
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        started = time.perf_counter()
        folder, users = build(tmp)
        print(f"built the funnel package in {time.perf_counter() - started:.1f} s")
        floor = in_process(folder, users, args.requests)
        bin_dir = Path(sys.executable).parent
        command = [str(bin_dir / "mlsd"), "serve", "--model", str(folder), "--port", "{port}"]
        served = Served("mlsd", command, "/readyz", tmp, cwd=tmp, env=venv_env())
        try:
            served.wait_ready()
            over_http(served.port, users, 200)  # warm up
            http_ms = over_http(served.port, users, args.requests)
            started = time.perf_counter()
            over_http(served.port, users, len(users))
            one_at_a_time = len(users) / (time.perf_counter() - started)
        finally:
            served.stop()
        batch = subprocess.run(
            [
                str(bin_dir / "mlsd"),
                "recommend",
                "--model",
                str(folder),
                "--output",
                str(tmp / "recs.parquet"),
                "--json",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            env=venv_env(),
            check=True,
        )
        batch_rate = json.loads(batch.stdout)["users_per_s"]
    got, low = percentiles(http_ms), percentiles(floor)
    lines = [
        "## Recommendations: the whole funnel online and in batch "
        "(`benchmarks/bench_recommend.py`)",
        "",
        f"Command: `python benchmarks/bench_recommend.py --requests {args.requests}` "
        f"({date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}).",
        "",
        "MovieLens 100k (943 users, 1,682 movies), every rating a positive. The funnel: "
        "popularity, item-kNN, EASE and ALS each propose 100 unseen movies, the LightGBM "
        "ranker orders their union (about 250 per user), k = 10.",
        "",
        "| | p50 ms | p99 ms | goal |",
        "|---|---:|---:|---|",
        f"| `POST /v1/recommend`, concurrency 1 | {got['p50']:.2f} | {got['p99']:.2f} | "
        f"p50 ≤ 5 ms: {'met' if got['p50'] <= 5 else 'NOT met'} |",
        f"| the same funnel in-process (`Recommender.recommend`) | {low['p50']:.2f} | "
        f"{low['p99']:.2f} | |",
        f"| ratio (HTTP, JSON and the log on top) | {got['p50'] / low['p50']:.2f}x | "
        f"{got['p99'] / low['p99']:.2f}x | |",
        "",
        "| batch | users/s |",
        "|---|---:|",
        f"| `mlsd recommend --users all` | {batch_rate:,.0f} |",
        f"| the server asked one user at a time | {one_at_a_time:,.0f} |",
        f"| ratio | {batch_rate / one_at_a_time:.1f}x |",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    write_section("## Recommendations: the whole funnel", section)


if __name__ == "__main__":
    main()

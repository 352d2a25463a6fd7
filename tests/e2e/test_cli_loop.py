"""The closed loop as a user runs it: `mlsd train`, a real `mlsd serve` following the
champion alias, traffic and late labels over HTTP, then `mlsd loop --once` and
`mlsd retrain` as commands.

One small generated system, in order: with training-like traffic nothing retrains, and a
worse challenger (linear, forced) is refused; then the world drifts (z moves above anything
the champion saw, and y follows it), the loop's triggers fire, the challenger passes the
gate and the server swaps to it under live traffic with zero failed requests; finally a
retrain killed with SIGKILL mid-training leaves the registry and the served model as they
were, and the next retrain takes over its stale lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server import ServerProcess, mlsd_command
from test_cli_data import mlsd

from mlsd.models import aliases

NAME = "loop-e2e"
SPEC = f"""name: {NAME}
problem: {{task: regression, target: y, time: [t]}}
metrics: {{primary: mae}}
data:
  source: d.csv
  split: {{method: time, valid: 0.15, test: 0.15}}
  columns:
    x: {{type: numeric, min: 0, max: 1}}
    z: {{type: numeric, min: 0, max: 1}}
features: {{exclude: [t]}}
models: {{candidates: [FAMILY]}}
serving: {{poll_s: 0.05, log_flush_s: 0.1}}
monitoring: {{window: {{rows: 400}}}}
retraining:
  triggers: [drift, performance]
  window: {{rows: 1500}}
  holdout: {{share: 0.25}}
"""
N_SOURCE, N_STEADY, N_DRIFT = 1500, 600, 1000


def rows(n: int, start: int, seed: int, z: tuple[float, float] = (0.0, 0.5)) -> pd.DataFrame:
    """y = 10 z + 2 x + 8 x [kind = b] + noise: an interaction a tree finds and a line misses."""
    rng = np.random.default_rng(seed)
    x, zz = rng.uniform(0, 1, n), rng.uniform(*z, n)
    kind = rng.choice(["a", "b", "c"], n)
    y = 10 * zz + 2 * x + 8 * x * (kind == "b") + rng.normal(0, 0.3, n)
    return pd.DataFrame({"t": np.arange(start, start + n), "x": x, "z": zz, "kind": kind, "y": y})


def _lines(folder: Path, kind: str) -> int:
    logged = (folder / ".mlsd/log" / NAME / kind).glob("*.jsonl")
    return sum(f.read_bytes().count(b"\n") for f in logged)


def send(server: ServerProcess, frame: pd.DataFrame, tag: str, per_request: int = 50) -> None:
    """Serve ``frame`` in requests of ``per_request`` rows, each request's labels fed back
    after the next request (late labels), then wait until the log holds all of it."""
    folder = server.folder
    before = (_lines(folder, "predictions"), _lines(folder, "feedback"))
    records = frame.drop(columns="y").to_dict("records")
    pending: list[dict] = []
    for number, start in enumerate(range(0, len(records), per_request)):
        rid = f"{tag}-{number}"
        chunk = records[start : start + per_request]
        status, body, _ = server.client.call(
            "POST", "/v1/predict", {"instances": chunk}, {"X-Request-ID": rid}
        )
        assert status == 200, body
        if pending:
            status, body, _ = server.client.call("POST", "/v1/feedback", pending)
            assert status == 200, body
        pending = [
            {"request_id": rid, "instance": k, "label": float(frame["y"].iloc[start + k])}
            for k in range(len(chunk))
        ]
    status, body, _ = server.client.call("POST", "/v1/feedback", pending)
    assert status == 200, body
    deadline = time.time() + 20
    while _lines(folder, "predictions") < before[0] + len(frame) or _lines(
        folder, "feedback"
    ) < before[1] + len(frame):
        assert time.time() < deadline, "the prediction log did not catch up"
        time.sleep(0.05)


def published(folder: Path) -> dict:
    return aliases.read(folder / ".mlsd", NAME)


def served_version(server: ServerProcess) -> str:
    status, body, _ = server.client.call("GET", "/readyz")
    assert status == 200, body
    return str(body["model_version"])


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A champion (lightgbm, version 1) served by a real `mlsd serve` following the alias."""
    folder = tmp_path_factory.mktemp("loop") / "system"
    folder.mkdir()
    rows(N_SOURCE, 0, seed=0).to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(SPEC.replace("FAMILY", "lightgbm"))
    # the same system, declared with a worse model family: what a careless edit would give
    (folder / "linear.yaml").write_text(SPEC.replace("FAMILY", "linear"))
    trained = mlsd("train", "-c", "system.yaml", cwd=folder)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    server = ServerProcess(folder, "-c", "system.yaml")
    yield {"folder": folder, "server": server}
    server.stop()


def test_training_like_traffic_retrains_nothing(system):
    folder, server = system["folder"], system["server"]
    send(server, rows(N_STEADY, N_SOURCE, seed=1), "steady")
    run = mlsd("loop", "--once", "--json", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = run.stdout.splitlines()  # one JSON object per iteration
    it = json.loads(line)
    assert it["error"] is None and it["monitor"]["ran"]
    assert it["monitor"]["n_labelled"] == N_STEADY and it["monitor"]["latest_alerts"] == []
    assert it["retrain"]["needed"] is False and it["retrain"]["trained"] is False
    assert {t["name"]: t["fired"] for t in it["retrain"]["triggers"]} == {
        "drift": False,
        "performance": False,
    }
    assert published(folder)["aliases"] == {"champion": 1}
    assert list(published(folder)["versions"]) == ["1"]


def test_a_worse_challenger_is_refused(system):
    folder, server = system["folder"], system["server"]
    run = mlsd("retrain", "-c", "linear.yaml", "--json", cwd=folder)  # forced: no trigger
    assert run.returncode == 1, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["trained"] and not out["promoted"]
    assert out["challenger_version"] == 2 and out["training"]["chosen"] == "linear"
    cmp = out["comparison"]
    assert cmp["n_holdout"] == N_STEADY // 4
    assert cmp["challenger"] > cmp["champion"] * 1.5  # a line misses the interaction
    assert cmp["ci_low"] > 0 and not cmp["beats"]
    assert any("does not beat the champion" in r for r in out["reasons"])
    assert published(folder)["aliases"] == {"champion": 1, "challenger": 2}
    assert served_version(server) == "1"


def test_drift_fires_the_loop_and_the_server_swaps_with_no_failed_request(system):
    folder, server = system["folder"], system["server"]
    drifted = rows(N_DRIFT, N_SOURCE + N_STEADY, seed=2, z=(0.5, 1.0))
    send(server, drifted, "drift")

    # live traffic during the whole loop: one request every 50 ms on its own connection
    statuses, versions, stop = [], [], threading.Event()
    live = rows(1000, 10_000, seed=3, z=(0.5, 1.0)).drop(columns="y").to_dict("records")

    def traffic() -> None:
        from server import Client

        client = Client(server.port)
        for instance in live:
            if stop.is_set():
                break
            status, body, _ = client.call("POST", "/v1/predict", {"instances": [instance]})
            statuses.append(status)
            versions.append(str(body.get("model_version")) if status == 200 else None)
            time.sleep(0.05)
        client.close()

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        run = mlsd("loop", "--once", cwd=folder)
        deadline = time.time() + 10
        while (not versions or versions[-1] != "3") and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a few more requests answered after the swap
    finally:
        stop.set()
        sender.join(timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = run.stdout.splitlines()
    assert "alert(s) (drift z" in line and "performance" in line, line
    assert "retrain (drift, performance): challenger v3" in line and "→ PROMOTED" in line
    assert published(folder)["aliases"]["champion"] == 3
    # zero failed requests; version 1 answered until the swap, version 3 after it, no flapping
    assert statuses and set(statuses) == {200}, statuses
    swap = versions.index("3")
    assert swap > 0 and set(versions[:swap]) == {"1"} and set(versions[swap:]) == {"3"}
    assert served_version(server) == "3"


def test_a_retrain_killed_mid_training_changes_nothing_and_its_lock_is_taken_over(system):
    folder, server = system["folder"], system["server"]
    # labels that arrived after the new champion was built: what a retrain learns from
    send(server, rows(300, 20_000, seed=4, z=(0.5, 1.0)), "after")
    before = published(folder)
    ws = folder / ".mlsd"
    lock = ws / "locks" / f"retrain-{NAME}.lock"
    validated = ws / "reports" / NAME / "retrain-validation.json"
    started = time.time()
    env = {k: v for k, v in os.environ.items() if k != "MLSD_HOME"}
    proc = subprocess.Popen(
        [*mlsd_command(), "retrain", "-c", "system.yaml"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # kill it once its rows are validated: it holds the lock and is training the challenger
    deadline = time.time() + 60
    while not (validated.exists() and validated.stat().st_mtime >= started):
        assert proc.poll() is None, "the retrain ended before it could be killed"
        assert time.time() < deadline, "the retrain never reached training"
        time.sleep(0.005)
    assert lock.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    assert published(folder) == before  # same versions, same aliases
    assert served_version(server) == "3"
    assert json.loads(lock.read_text())["pid"] == proc.pid  # left behind, and stale

    run = mlsd("retrain", "-c", "system.yaml", "--json", cwd=folder)
    assert run.returncode in (0, 1), run.stdout + run.stderr  # not "already running" (2)
    assert "taking over a stale retrain lock" in run.stderr
    out = json.loads(run.stdout)
    assert out["trained"] and out["challenger_version"] == 4
    assert not lock.exists()  # released at the end

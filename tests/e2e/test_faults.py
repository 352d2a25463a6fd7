"""Faults injected for real into the CLI: a signal, a second process, a locked database, a
kill. Each test starts `mlsd` as a child process, hurts it, and checks what a user would
find afterwards: files under their final names, the registry, the aliases the server reads,
the routing table.

One small regression system (linear models, two registered versions) is trained once for
the module; a test that changes it works on a copy.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from server import mlsd_command
from test_cli_data import mlsd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
from loop_helpers import frame

from mlsd.events import EventLog
from mlsd.models import aliases, package, routing
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

NAME = "faults"
SPEC = f"""name: {NAME}
problem: {{task: regression, target: y}}
metrics: {{primary: mae}}
data:
  source: d.csv
  columns:
    a: {{type: numeric, min: -10, max: 10}}
models: {{candidates: [linear]}}
serving: {{batch_rows: 500}}
rollout:
  canary: {{steps: [50, 100], min_requests: 30, min_duration: 0s, margin: 1.0}}
"""
# Holds an exclusive SQLite lock on a database, as another writer (or a sqlite3 shell) would.
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", time.time(), flush=True)
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Versions 1 (champion) and 2 (challenger) of one system; returns its folder."""
    from mlsd.models.train import train

    folder = tmp_path_factory.mktemp("faults") / "system"
    folder.mkdir()
    (folder / "system.yaml").write_text(SPEC)
    spec = load_spec(folder / "system.yaml")
    for seed in (0, 1):
        frame(1200, seed).to_csv(folder / "d.csv", index=False)
        assert train(spec, Workspace.for_spec(spec), progress=False).registered
    return folder


@pytest.fixture
def system(trained, tmp_path):
    """A private copy of the trained system (its registry and aliases get changed)."""
    folder = tmp_path / "system"
    shutil.copytree(trained, folder)
    return folder


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLSD_HOME"}
    return subprocess.Popen(
        [*mlsd_command(), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def registry_rows(folder: Path) -> tuple[dict[int, str], dict[str, int]]:
    """What MLflow's database says, read with sqlite3: version → status, alias → version."""
    with closing(sqlite3.connect(folder / ".mlsd" / "mlflow.db", timeout=30)) as conn:
        versions = dict(
            conn.execute("SELECT version, status FROM model_versions WHERE name = ?", (NAME,))
        )
        names = dict(
            conn.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (NAME,)
            )
        )
    return versions, names


def assert_registry_consistent(folder: Path, *, published_current: bool = True) -> dict:
    """Every version is whole, every alias (in MLflow and in the published file the server
    reads) names one of them, and (unless a run was killed mid-change) the file says what
    MLflow says. Returns the published aliases."""
    versions, names = registry_rows(folder)
    published = aliases.read(folder / ".mlsd", NAME)  # whole JSON, or this raises
    assert set(versions.values()) <= {"READY"}, versions
    assert set(names.values()) <= set(versions), (names, versions)
    assert {int(v) for v in published["versions"]} == set(versions), (published, versions)
    assert set(published["aliases"].values()) <= set(versions), published
    for path in published["versions"].values():
        assert (Path(path) / "manifest.json").is_file(), path
    assert "champion" in names, names
    if published_current:  # a change killed midway is finished by the next command
        assert names.get("challenger") != names["champion"], names
        assert published["aliases"] == names, (published, names)
    return published["aliases"]


# --- 1. SIGTERM in the middle of `mlsd predict` ------------------------------------------------


def test_sigterm_mid_predict_leaves_no_output_and_no_temporary_file(trained, tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2_000_000, 4))
    x[::1000, 0] = np.inf  # one row in a thousand is rejected: a rejects file is being written
    inputs = tmp_path / "in"
    inputs.mkdir()
    pq.write_table(pa.table({c: x[:, i] for i, c in enumerate("abcd")}), inputs / "rows.parquet")
    out = tmp_path / "out"
    out.mkdir()
    run = start(
        "predict", "--input", str(inputs / "rows.parquet"), "--output", str(out / "scored.parquet"),
        cwd=trained,
    )  # fmt: skip
    deadline = time.time() + 30
    while len(list(out.glob(".*.tmp"))) < 2:  # the scores and the rejects both begun
        assert run.poll() is None, run.communicate()
        assert time.time() < deadline, "mlsd predict never started writing"
        time.sleep(0.01)
    time.sleep(0.2)
    assert run.poll() is None, "the run ended before it could be interrupted: make it larger"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=30)

    assert run.returncode == 128 + signal.SIGTERM, (run.returncode, err)
    assert "interrupted" in err and "Traceback" not in err, err
    # nothing under the final names, and the temporary files are gone with the run
    assert sorted(p.name for p in out.iterdir()) == []


# --- 2. two `mlsd train` at once in one workspace ----------------------------------------------


def test_two_trainings_at_once_one_refuses_naming_the_other(tmp_path):
    folder = tmp_path / "fresh"  # no workspace yet: both would create MLflow's database
    folder.mkdir()
    (folder / "system.yaml").write_text(SPEC)
    frame(1200, 0).to_csv(folder / "d.csv", index=False)
    runs = [start("train", "--json", cwd=folder) for _ in range(2)]
    outs = [run.communicate(timeout=120) for run in runs]

    for (out, err), run in zip(outs, runs, strict=True):
        assert "Traceback" not in err, err
        assert run.returncode in (0, 2), (run.returncode, out, err)
    results = [json.loads(out) for out, _ in outs]
    done = [r for r in results if "error" not in r]
    assert done, results
    for result, other in zip(results, reversed(runs), strict=True):
        if "error" in result:  # refused, naming the run that holds the workspace
            assert result["error"]["type"] == "TrainRunningError", result
            assert f"pid {other.pid} " in result["error"]["message"], (result, other.pid)
    registered = {r["model_version"] for r in done}
    names = assert_registry_consistent(folder)
    assert names["champion"] in registered
    assert {int(v) for v in aliases.read(folder / ".mlsd", NAME)["versions"]} == registered


# --- 3. the registry's database locked by another process --------------------------------------


def lock_database(folder: Path, seconds: float) -> subprocess.Popen:
    """A process holding BEGIN EXCLUSIVE on the workspace's MLflow database for ``seconds``."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(folder / ".mlsd" / "mlflow.db"), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    return locker


def released_at(locker: subprocess.Popen) -> float:
    out, _ = locker.communicate(timeout=60)
    return float(out.split()[1])


def test_promote_waits_for_a_locked_registry_and_moves_the_alias(system):
    locker = lock_database(system, 3)
    run = mlsd("promote", "2", "--json", cwd=system)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert json.loads(run.stdout)["changed"] is True
    (event,) = EventLog(system / ".mlsd" / "events.sqlite").read(kind="promoted")
    moved = datetime.fromisoformat(event["ts"]).timestamp()
    assert moved >= released_at(locker)  # it waited for the lock, then moved the alias
    assert assert_registry_consistent(system) == {"champion": 2}


def test_train_registers_once_the_locked_registry_is_free(system):
    report = system / ".mlsd" / "reports" / NAME / "evaluation.json"
    began = time.time()
    run = start("train", "--json", cwd=system)
    deadline = time.time() + 60
    while not (report.exists() and report.stat().st_mtime >= began):  # about to register
        assert run.poll() is None, run.communicate()
        assert time.time() < deadline, "mlsd train never reached registration"
        time.sleep(0.01)
    locker = lock_database(system, 3)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert "Traceback" not in err, err
    released = released_at(locker)
    with closing(sqlite3.connect(system / ".mlsd" / "mlflow.db")) as conn:
        (logged,) = conn.execute("SELECT max(start_time) FROM runs").fetchone()
    assert logged / 1000 >= released - 0.01  # its run was logged once the lock was gone
    result = json.loads(out)
    assert (result["model_version"], result["alias"]) == (3, "challenger")
    assert assert_registry_consistent(system) == {"champion": 1, "challenger": 3}


# --- 4. a rollout decision killed with SIGKILL -------------------------------------------------

# Where each experiment's promotion is killed: seconds after its first write to MLflow's
# database (the champion alias moving), or after it saved its state (before MLflow's import
# and the registry's changes); each run is killed at once, or a random while later.
PROMOTION_KILLS = [("mlflow", lambda rng: 0.0), ("mlflow", lambda rng: rng.uniform(0, 0.15)),
                   ("state", lambda rng: rng.uniform(0, 2.5))]  # fmt: skip


class Traffic:
    """Logs labelled requests the way the server does: each unit assigned by the published
    routing table and answered by its arm's package."""

    def __init__(self, ws: Workspace):
        self.ws, self.sent, self.models = ws, 0, {}

    def send(self, n: int) -> None:
        from mlsd.predlog.writer import PredictionLog

        table = routing.read(self.ws.root, NAME)
        rows = frame(n, 1000 + self.sent)
        columns = {c: rows[c].to_numpy() for c in "abcd"}
        answers = {}
        for arm in table.arms:
            if arm.version not in self.models:
                self.models[arm.version] = package.load(arm.package)
            answers[arm.name] = self.models[arm.version].predict_matrix(columns)
        now = time.time()
        with PredictionLog(self.ws) as log:
            for i in range(n):
                unit = f"u{self.sent + i}"
                arm, p = table.assign(unit)
                log.prediction(
                    request_id=unit,
                    model_version=str(arm.version),
                    inputs=[{c: float(rows[c].iloc[i]) for c in "abcd"}],
                    outputs=[{"value": float(answers[arm.name][i])}],
                    latency_ms=2.0,
                    ts=now,
                    routed={"experiment": table.experiment, "arm": arm.name, "unit": unit, "p": p},
                )
                log.feedback(request_id=unit, label=float(rows["y"].iloc[i]), ts=now)
        self.sent += n


def assert_rollout_consistent(folder: Path, ws: Workspace, *, published_current: bool) -> None:
    """The experiment's state and the routing table are whole JSON; a table routes to
    registered versions only, and only while its experiment runs."""
    from mlsd.rollout.experiment import latest

    names = assert_registry_consistent(folder, published_current=published_current)
    experiment = latest(ws)
    table = routing.read(ws.root, NAME)  # whole and well-formed, or this raises
    registered = set(registry_rows(folder)[0])
    if table is not None:
        assert {a.version for a in (*table.arms, *table.shadows)} <= registered, table
        assert experiment.running and table.experiment == experiment.id, (table, experiment)
        if published_current:
            assert table.arms == experiment.table().arms, (table, experiment.weights)
    elif published_current:
        assert not experiment.running, "a running experiment without its routing table"
    if experiment.running:
        assert experiment.champion.version in registered
    assert names["champion"] in registered


def changed(path: Path) -> Callable[[], bool]:
    """Whether ``path`` was rewritten since now (and, for a SQLite database, its write
    committed: no rollback journal left)."""
    before = path.stat().st_mtime_ns
    journal = path.with_name(path.name + "-journal")
    return lambda: path.stat().st_mtime_ns != before and not journal.exists()


def step_killed_after(system: Path, done: Callable[[], bool], delay: float) -> bool:
    """Run `mlsd rollout step`; SIGKILL it ``delay`` s after ``done()`` turns true (unless
    it ended by then). Returns whether it was killed."""
    run = start("rollout", "step", cwd=system)
    while run.poll() is None and not done():
        time.sleep(0.0005)
    time.sleep(delay)
    killed = run.poll() is None
    if killed:
        run.kill()
    out, err = run.communicate(timeout=30)
    assert run.returncode == (-signal.SIGKILL if killed else 0), out + err
    return killed


def test_rollout_step_killed_mid_decision_leaves_aliases_and_routing_consistent(system):
    from mlsd.rollout import controller
    from mlsd.rollout.experiment import latest

    spec = load_spec(system / "system.yaml")
    ws = Workspace.for_spec(spec)
    traffic = Traffic(ws)
    rng = random.Random(20)
    kills = 0
    for where, delay in PROMOTION_KILLS:
        champion = aliases.read(ws.root, NAME)["aliases"]["champion"]
        other = 2 if champion == 1 else 1
        experiment = controller.start(spec, ws, [str(other)], "canary")  # 50%, then 100%
        state = ws.root / "rollout" / NAME / f"{experiment.id}.json"
        # the advance to 100%, killed as soon as it saved its state (before or after it
        # published the new table)
        traffic.send(300)
        kills += step_killed_after(system, changed(state), rng.uniform(0, 0.01))
        assert_rollout_consistent(system, ws, published_current=False)
        # the promotion, killed inside
        if routing.read(ws.root, NAME) is not None:
            traffic.send(300)
        trigger = changed(state if where == "state" else ws.root / "mlflow.db")
        kills += step_killed_after(system, trigger, delay(rng))
        assert_rollout_consistent(system, ws, published_current=False)
        # the next steps finish what the killed ones left: the challenger becomes champion
        for _ in range(3):
            if not latest(ws).running:
                break
            if routing.read(ws.root, NAME) is not None:
                traffic.send(300)
            step = mlsd("rollout", "step", cwd=system)
            assert step.returncode == 0, step.stdout + step.stderr
            assert "Traceback" not in step.stderr, step.stderr
            assert_rollout_consistent(system, ws, published_current=True)
        assert latest(ws).status == "promoted", latest(ws).history
        assert aliases.read(ws.root, NAME)["aliases"] == {"champion": other}
    assert kills >= 4, kills  # most runs were still deciding when killed
    status = mlsd("rollout", "status", "--json", cwd=system)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["experiment"]["id"] == latest(ws).id

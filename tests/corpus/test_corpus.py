"""Every step on real tables no one here wrote (#12): the standing guard against data that
breaks mlsd on day one.

For each table of :mod:`tables`, from a fresh workspace: `mlsd init` on 80% of its rows,
`mlsd validate`, `mlsd train` (default parameters: no tuning), a real HTTP server on
127.0.0.1 answering the other 20% (rows the system never saw), `mlsd predict` on the same
rows, and `mlsd monitor` on that traffic. Then planted faults, each of which must be found
on every table: a copy of the target, a monotone transform of it and two columns that sum to
it (leakage errors naming them), one feature shifted by 0.5 sd in served traffic (a drift
alert naming it), and a column sent as missing (a quality alert naming it).

No table is excused from any step. On tables with a time column, alerts on the time columns
and on the predictions are real differences, not false alarms (:func:`_time_difference`).
The figures of each table go to ``corpus.json`` in the session's temp folder;
``benchmarks/bench_corpus.py`` prints them as the BENCHMARKS.md table.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tables import TABLES, Table

from mlsd.cli import main as mlsd_main

HELD_OUT = 0.2
BATCH = 100  # instances per request
SHIFT_SD = 0.5


def mlsd(*args: str, cwd: Path) -> tuple[int, dict]:
    """Run the CLI in-process with --json, as a user would in ``cwd``; (exit code, output)."""
    out = io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out):
        code = mlsd_main([*args, "--json"])
    return code, json.loads(out.getvalue())


def csv_rows(path: Path) -> list[dict]:
    """A CSV's rows as a client reading it sends them: numbers as numbers, empty as null."""
    from mlsd.serving.batch import csv_value

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [{k: csv_value(v or None) for k, v in row.items()} for row in frame.to_dict("records")]


@contextlib.contextmanager
def serving(folder: Path):
    """A real server (mlsd's app under uvicorn) on a free port of 127.0.0.1, in a thread."""
    from e2e.server import served_in_thread
    from mlsd.serving.app import Server
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    spec = load_spec(folder / "system.yaml")
    app = Server(Workspace.for_spec(spec).root, spec.name, spec.serving)
    app.load()
    with served_in_thread(app) as client:
        yield client


def send(client, instances: list[dict]) -> list:
    """Every instance through POST /v1/predict, BATCH per request; the answers in order."""
    answers = []
    for start in range(0, len(instances), BATCH):
        status, body, _ = client.call(
            "POST", "/v1/predict", {"instances": instances[start : start + BATCH]}
        )
        assert status == 200, body
        answers += body["predictions"]
    return answers


class Run:
    """One table taken through every step; the figures the report shows."""

    def __init__(self, table: Table, root: Path):
        self.table, self.root = table, root
        self.figures: dict = {"table": table.name, "task": table.task}
        frame = table.load()
        held = np.random.default_rng(0).random(len(frame)) < HELD_OUT
        self.frame, self.held = frame, held
        root.mkdir(parents=True)
        frame[~held].to_csv(root / "data.csv", index=False)
        features = frame.drop(columns=[table.target])
        features[held].to_csv(root / "traffic.csv", index=False)
        self.figures.update(rows=len(frame), held_out=int(held.sum()))

    def log_folder(self) -> Path:
        from mlsd.predlog.writer import log_folder
        from mlsd.spec import load_spec
        from mlsd.workspace import Workspace

        return log_folder(Workspace.for_spec(load_spec(self.root / "system.yaml")))

    def monitor(self, instances: list[dict]) -> dict:
        """Serve ``instances`` on a fresh log, then monitor that traffic alone."""
        shutil.rmtree(self.log_folder(), ignore_errors=True)
        with serving(self.root) as client:
            send(client, instances)
        code, report = mlsd("monitor", cwd=self.root)
        assert code in (0, 1), report
        return report


def init_args(table: Table) -> list[str]:
    args = ["init", "data.csv", "--target", table.target, "--name", table.name]
    if table.time:
        args += ["--time", *table.time]
    if table.entity:
        args += ["--id", table.entity]
    return args


@pytest.fixture(scope="module", params=TABLES, ids=lambda t: t.name)
def run(request, tmp_path_factory) -> Run:
    """The table after init, validate and train (asserted in the tests below)."""
    table: Table = request.param
    r = Run(table, tmp_path_factory.mktemp("corpus") / table.name)
    r.init = mlsd(*init_args(table), cwd=r.root)
    r.validate = mlsd("validate", cwd=r.root)
    started = time.perf_counter()
    r.train = mlsd("train", cwd=r.root) if r.validate[1].get("passed") else (None, {})
    r.figures["train_s"] = round(time.perf_counter() - started, 1)
    yield r
    _record(r.figures, tmp_path_factory)


def _record(figures: dict, factory) -> None:
    path = factory.getbasetemp() / "corpus.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*rows, figures], indent=1))


def test_init_infers_the_task(run):
    from mlsd.spec import load_spec

    code, out = run.init
    assert code == 0, out
    task = load_spec(run.root / "system.yaml").problem.task
    run.figures["init_task"] = task
    assert task == run.table.task


def test_validate_raises_no_blocking_error(run):
    code, report = run.validate
    blocking = [a["message"] for a in report["anomalies"] if a["blocking"]]
    run.figures["validate"] = "pass" if not blocking else "; ".join(blocking)
    run.figures["warnings"] = [
        f"{a['check']}:{a['column']}" for a in report["anomalies"] if a["severity"] == "warning"
    ]
    assert code == 0 and not blocking


def test_train_beats_its_baselines(run):
    code, out = run.train
    assert code == 0, out
    metric = out["primary_metric"]
    run.figures.update(
        model=out["chosen"],
        metric=metric,
        score=out["test"][metric],
        best_baseline=_best([b[metric] for b in out["baselines"].values() if b], out["direction"]),
        registered=out["registered"],
    )
    assert out["registered"], out["reasons"]


def _best(values: list, direction: str) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def test_serve_answers_held_out_rows_and_batch_equals_online(run):
    if run.train[0] != 0:
        pytest.skip("train failed (reported by test_train_beats_its_baselines)")
    instances = csv_rows(run.root / "traffic.csv")
    shutil.rmtree(run.log_folder(), ignore_errors=True)
    with serving(run.root) as client:
        online = send(client, instances)  # any refusal fails inside send
    code, out = mlsd(
        "predict", "--input", "traffic.csv", "--output", "scored.parquet", cwd=run.root
    )
    assert code == 0 and out["rejected"] == 0, out
    scored = pd.read_parquet(run.root / "scored.parquet")
    key = {"regression": "value", "binary": "score", "multiclass": "label"}[run.table.task]
    column = key if key in scored else f"predicted_{key}"
    assert scored[column].tolist() == [a[key] for a in online]
    run.figures["serve"] = f"{len(online)} answered, 0 refused"


def _time_difference(table: Table, alert: dict) -> bool:
    """An alert that is a real difference, not a false alarm, on a time-ordered table: its
    time columns and its predictions are referenced to the training and validation periods,
    while the held-out traffic is drawn from every period."""
    if not table.time:
        return False
    if alert["check"] == "prediction_drift":
        return True
    return alert["check"] in ("feature_drift", "out_of_range") and alert["subject"] in table.time


def test_monitor_raises_no_alert_on_in_distribution_traffic(run):
    if run.train[0] != 0:
        pytest.skip("train failed")
    report = run.monitor(csv_rows(run.root / "traffic.csv"))
    alerts = report["latest"]["alerts"]
    real = [a for a in alerts if _time_difference(run.table, a)]
    false = [a["message"] for a in alerts if a not in real]
    run.figures["false_alarms"] = len(false)
    run.figures["time_alerts"] = len(real)
    assert not false


def test_planted_leaks_are_errors_naming_them(run):
    """A copy of the target, a monotone transform of it, and two parts that sum to it."""
    frame = run.frame[~run.held].copy()
    target = frame[run.table.target]
    if run.table.task == "regression":
        y = target.astype(float)
    else:  # the class as a number: what a recoded label or a sum of parts would carry
        y = target.astype(str).astype("category").cat.codes.astype(float)
    rng = np.random.default_rng(1)
    part = rng.normal(0, y.std() + 1, len(y)).round(3)
    frame["leak_copy"] = target
    frame["leak_monotone"] = np.exp((y - y.mean()) / (y.std() + 1e-9)) * 7.0
    frame["leak_part_a"] = part
    frame["leak_part_b"] = y - part
    folder = run.root.parent / f"{run.table.name}-leaks"
    folder.mkdir()
    frame.to_csv(folder / "data.csv", index=False)
    code, _ = mlsd(*init_args(run.table), cwd=folder)
    assert code == 0
    code, report = mlsd("validate", cwd=folder)
    errors = {a["column"] for a in report["anomalies"] if a["check"] == "leakage" and a["blocking"]}
    planted = {"leak_copy", "leak_monotone", "leak_part_a", "leak_part_b"}
    run.figures["planted_leaks"] = f"{len(errors & planted)}/4 found"
    assert code == 1
    assert planted <= errors, report["anomalies"]
    assert not errors - planted, errors - planted


def _shift_column(run: Run) -> str | None:
    """The numeric feature with the most distinct values (a shift there is a real shift)."""
    from mlsd.spec import load_spec

    used = set(load_spec(run.root / "system.yaml").features.exclude)
    ignored = [run.table.target, *run.table.time, run.table.entity, *used]
    frame = run.frame.drop(columns=[c for c in ignored if c], errors="ignore")
    numeric = [c for c in frame if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].std() > 0]
    return max(numeric, key=lambda c: frame[c].nunique(), default=None)


def test_planted_drift_and_missing_values_are_alerts_naming_them(run):
    if run.train[0] != 0:
        pytest.skip("train failed")
    name = _shift_column(run)
    assert name is not None, "a corpus table needs a numeric feature to shift"
    # drift: every row of the table (in-distribution but for the shift), enough to test
    run.frame.drop(columns=[run.table.target]).to_csv(run.root / "all.csv", index=False)
    instances = csv_rows(run.root / "all.csv")
    sd = float(run.frame[name].std())
    for i in instances:
        if i[name] is not None:
            i[name] = i[name] + SHIFT_SD * sd
    report = run.monitor(instances)
    drifted = {a["subject"] for a in report["latest"]["alerts"] if a["check"] == "feature_drift"}
    run.figures["planted_drift"] = "found" if name in drifted else "missed"
    assert name in drifted, report["latest"]["alerts"]
    # missing: the same column sent as null in every row
    instances = csv_rows(run.root / "all.csv")
    for i in instances:
        i[name] = None
    report = run.monitor(instances)
    missing = {a["subject"] for a in report["latest"]["alerts"] if a["check"] == "missing_rate"}
    run.figures["planted_missing"] = "found" if name in missing else "missed"
    assert name in missing, report["latest"]["alerts"]

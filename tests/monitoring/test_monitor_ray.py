"""``mlsd monitor --engine ray``: the log read in parallel blocks by actors on a Ray cluster
the module starts gives the report the local engine gives, and its failures are clear."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlsd.cli import main
from mlsd.engine import log_reader, ray_monitoring
from mlsd.engine.cluster import EngineError
from mlsd.engine.ray_monitoring import blocks, in_order
from mlsd.models import aliases
from mlsd.models import package as packages
from mlsd.models.train import train
from mlsd.monitoring.monitor import monitor
from mlsd.monitoring.windows import LogRows
from mlsd.predlog.writer import PREDICTIONS, PredictionLog, log_folder, segment_files
from mlsd.serving.model import format_outputs
from mlsd.spec import EngineSpec, load_spec
from mlsd.workspace import Workspace

pytest.importorskip("ray")

DAY = 86400.0
START = 1_750_000_000.0 - 1_750_000_000.0 % DAY  # a UTC midnight
NOW = START + 10 * DAY
SPEC = """name: m
problem: {task: binary, target: y}
data: {source: d.csv, columns: {c: categorical}}
models: {candidates: [lightgbm]}
monitoring: {window: 1d, min_rows: 100, log_to_mlflow: false}
"""


def table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(loc=shift, size=n)
    b = rng.integers(0, 20, n).astype(float)
    c = rng.choice(["red", "green", "blue"], n)
    y = np.where(a + b / 10 + (c == "red") + rng.normal(size=n) > 1.5, "yes", "no")
    return pd.DataFrame({"a": a, "b": b, "c": c, "y": y})


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A trained system and a log of six segments over three days: labels on a third of
    the rows, refused requests, field ``c`` never sent in the first two segments (a block
    without that column), the third day shifted."""
    folder = tmp_path_factory.mktemp("monitor-ray")
    table(1500, 0).to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(SPEC)
    spec = load_spec(folder / "system.yaml")
    assert train(spec, progress=False).registered
    ws = Workspace.for_spec(spec)
    version, package_folder = aliases.resolve(ws.root, spec.name, "champion")
    package = packages.load(package_folder)
    for segment in range(6):
        day = segment // 2
        rows = table(300, 10 + segment, shift=1.5 if day == 2 else 0.0)
        inputs = rows.drop(columns=["y"]).to_dict("records")
        if segment < 2:
            inputs = [{k: v for k, v in row.items() if k != "c"} for row in inputs]
        columns = {c: rows[c].tolist() for c in ("a", "b", "c")}
        outputs = format_outputs(package.predict_matrix(columns), package.signature)
        with PredictionLog(ws) as log:  # one segment each
            for r, lo in enumerate(range(0, 300, 50)):
                rid, ts = f"s{segment}-r{r}", START + day * DAY + 3600 * (segment % 2) + 60 * r
                log.prediction(
                    request_id=rid,
                    model_version=str(version),
                    inputs=inputs[lo : lo + 50],
                    outputs=outputs[lo : lo + 50],
                    latency_ms=2.0 + r,
                    ts=ts,
                )
                for k in range(0, 50, 3):
                    label = rows["y"].iloc[lo + k]
                    log.feedback(request_id=rid, instance=k, label=label, ts=ts + 30)
            log.rejected(
                request_id=f"s{segment}-bad",
                model_version=str(version),
                problems=[{"instance": 0, "field": "a", "problem": "not a number"}],
                instances=1,
                ts=START + day * DAY + 7000,
            )
    with PredictionLog(ws) as log:  # a late segment of day 0 (another replica's): sorting
        rows = table(60, 99)
        log.prediction(
            request_id="late",
            model_version=str(version),
            inputs=rows.drop(columns=["y"]).to_dict("records"),
            outputs=format_outputs(
                package.predict_matrix({c: rows[c].tolist() for c in ("a", "b", "c")}),
                package.signature,
            ),
            latency_ms=1.0,
            ts=START + 5000,
        )
    assert len(segment_files(log_folder(ws) / PREDICTIONS)) == 7
    return spec, ws


def report(spec, ws, engine) -> dict:
    result = monitor(spec, ws, now=NOW, publish=False, write=False, engine=engine)
    out = dict(result.report)
    for volatile in ("generated_at", "seconds"):
        out.pop(volatile)
    return out


def test_blocks_are_runs_of_files_of_about_equal_size(tmp_path):
    sizes = [10, 10, 10, 10, 40, 10, 10]
    files = []
    for i, size in enumerate(sizes):
        files.append(tmp_path / f"{i}.jsonl")
        files[-1].write_bytes(b"x" * size)
    two = blocks(files, 2)
    assert [len(b) for b in two] == [5, 2]  # 80 bytes of 100 once the 40 is in
    assert [f for b in two for f in b] == files  # every file once, in order
    assert blocks(files, 3) == [files[:4], files[4:5], files[5:]]
    pair = files[:2]
    assert blocks(pair, 8) == [pair[:1], pair[1:]]  # never an empty block
    assert blocks([], 2) == []


def test_blocks_in_serving_order_are_not_sorted_again():
    import pyarrow as pa

    def part(*rows):
        ts, rid, inst = zip(*rows, strict=True) if rows else ((), (), ())
        return pa.table({"ts": pa.array(ts, pa.float64()), "request_id": pa.array(rid, pa.string()),
                         "instance": pa.array(inst, pa.int64())})  # fmt: skip

    first = part((1.0, "a", 0), (2.0, "b", 1))
    assert in_order([first, part(), part((2.0, "b", 1), (3.0, "a", 0))])  # a tie, an empty one
    assert in_order([first, part((2.0, "c", 0))])  # same time: the request id decides
    assert not in_order([first, part((2.0, "b", 0))])  # same request: the instance decides
    assert not in_order([first, part((1.5, "z", 9))])
    assert in_order([first, part((None, "a", 0))])  # no time sorts last
    assert not in_order([part((None, "a", 0)), first])


def test_ray_reads_the_log_in_blocks_and_reports_as_the_local_engine(
    ray_cluster, logged, monkeypatch
):
    spec, ws = logged
    local = report(spec, ws, LogRows)
    ray_spec = spec.model_copy(update={"engine": EngineSpec(kind="ray")})
    ordered = []

    def spy(parts):
        ordered.append(in_order(parts))
        return ordered[-1]

    monkeypatch.setattr(ray_monitoring, "in_order", spy)
    remote = report(ray_spec, ws, log_reader(ray_spec))
    assert ordered == [False]  # the late segment's block came before the rest: sorted
    assert remote == local
    # the report covers what was logged: the blocks' rows, labels, rejects and the shift
    model = local["models"][0]
    assert model["n"] == 1860 and local["n_labelled"] == 6 * 6 * 17
    assert [w["n"] for w in model["windows"]] == [660, 600, 600]
    assert [w["quality"]["rejected"]["requests"] for w in model["windows"]] == [2, 2, 2]
    drifted = [
        {c["column"] for c in w["drift"]["columns"] if c["drifted"]} for w in model["windows"]
    ]
    assert drifted[0] == set() and "a" in drifted[2]


def test_cli_monitors_on_ray(ray_cluster, logged, capsys):
    spec, _ = logged
    code = main(["monitor", "-c", str(spec.path), "--engine", "ray", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["n_predictions"] == 1860
    assert code == 1 and out["latest"]["alerts"]  # the shifted last day alerts


def test_a_segment_that_does_not_parse_is_set_aside_and_reported_by_both_engines(
    ray_cluster, logged
):
    spec, ws = logged
    folder = log_folder(ws) / PREDICTIONS
    for engine in (LogRows, log_reader(spec, "ray")):
        bad = folder / "zz-copied-in.jsonl"
        bad.write_text('{"request_id": "x", "ts": 1.0, "model_version": "1"\n')  # cut short
        out = report(spec, ws, engine)
        assert out["models"][0]["n"] == 1860  # the others read as before
        (skipped,) = out["skipped_segments"]
        assert skipped["segment"] == str(bad) and "Malformed JSON" in skipped["reason"]
        assert skipped["moved_to"] == str(folder / "corrupt" / bad.name)
        (folder / "corrupt" / bad.name).unlink()


def test_segments_the_actors_cannot_see_are_a_clear_error(ray_cluster, logged, tmp_path):
    import shutil

    spec, ws = logged
    copy = Workspace(tmp_path / "ws", ws.system)
    shutil.copytree(log_folder(ws), log_folder(copy))
    log = log_reader(spec, "ray")(copy)  # the actors get their blocks' paths
    try:
        shutil.rmtree(log_folder(copy) / PREDICTIONS)  # ...which they then cannot see
        with pytest.raises(EngineError, match="not visible from here") as raised:
            log.versions()
        assert "shared storage" in raised.value.hint
    finally:
        log.close()

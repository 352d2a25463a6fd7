"""Batch scoring on Ray Data (``--engine ray``): the same files as the local engine, row for
row, on a cluster the test starts and on one started apart with ``ray start --head``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from batch_data import BAD_ROWS, System, system_factory

from mlsd.engine.cluster import EngineError
from mlsd.engine.ray_batch import on_ray
from mlsd.serving.batch import score_here
from mlsd.spec import EngineSpec

pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    return system_factory(tmp_path_factory)


def both(system: System, input_path: Path, folder: Path, **serving) -> tuple[dict, dict]:
    """The summaries of the local engine and the Ray engine on the same input; their files
    are local.parquet / ray.parquet (and .rejects.parquet) in ``folder``."""
    out = {}
    for name in ("local", "ray"):
        spec = system.make_spec(**serving)
        engine = score_here if name == "local" else on_ray(EngineSpec(kind="ray"), spec.serving)
        out[name] = system.predict(
            input_path, folder / f"{name}.parquet", engine=engine, serving=serving
        )
    return out["local"], out["ray"]


def same_summary(local: dict, remote: dict) -> None:
    keep = ("rows", "scored", "rejected", "flagged", "model_version", "unknown_columns")
    assert {k: remote[k] for k in keep} == {k: local[k] for k in keep}


@pytest.mark.parametrize("task", ["binary", "regression"])  # two families, two output shapes
def test_ray_scores_a_parquet_file_as_the_local_engine_row_for_row(
    ray_cluster, systems, task, tmp_path
):
    system = systems(task)
    table = pcsv.read_csv(system.data)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=90)  # blocks across chunks
    local, remote = both(system, tmp_path / "in.parquet", tmp_path, batch_rows=64)
    same_summary(local, remote)
    assert remote["rows"] == 400
    got, want = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert got.schema == want.schema and got.equals(want)


def test_ray_rejects_and_flags_a_csv_as_the_local_engine(ray_cluster, systems, tmp_path):
    system = systems("binary")
    (tmp_path / "in.csv").write_text(BAD_ROWS + "\n")
    for policy in ("reject", "flag"):
        local, remote = both(system, tmp_path / "in.csv", tmp_path, on_invalid=policy, batch_rows=3)
        same_summary(local, remote)
        assert remote["rejected"] == (5 if policy == "reject" else 2)
        for name in ("{}.parquet", "{}.rejects.parquet"):
            got = pq.read_table(tmp_path / name.format("ray"))
            assert got.equals(pq.read_table(tmp_path / name.format("local"))), (policy, name)
        first = pq.read_table(tmp_path / "ray.rejects.parquet").column("cust")[0].as_py()
        assert first == ("X1" if policy == "reject" else "X2")  # X1 is flagged, not refused


def test_ray_scores_a_folder_of_parquet_files_in_name_order(ray_cluster, systems, tmp_path):
    system = systems("binary")
    table = pcsv.read_csv(system.data)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, 400, 150)):
        pq.write_table(table.slice(start, 150), parts / f"part-{i:02d}.parquet")
    pq.write_table(table, tmp_path / "whole.parquet")
    local, remote = both(system, parts, tmp_path, batch_rows=100)
    same_summary(local, remote)
    whole = system.predict(tmp_path / "whole.parquet", tmp_path / "whole.scored.parquet")
    assert whole["rows"] == remote["rows"] == 400
    got = pq.read_table(tmp_path / "ray.parquet")
    assert got.column("cust").to_pylist() == table.column("cust").to_pylist()
    assert got.equals(pq.read_table(tmp_path / "whole.scored.parquet"))


def test_a_model_failing_verification_on_the_actors_is_a_clear_error(
    ray_cluster, systems, tmp_path
):
    system = systems("regression")
    spec = system.make_spec()
    served = system.served()
    # the driver verified the package; the actors verify it again and find it changed
    model_file = Path(served.package.folder) / "featurizer.json"
    original = model_file.read_bytes()
    engine = on_ray(EngineSpec(kind="ray"), spec.serving)

    def tampering(source, scorer):
        model_file.write_bytes(original + b"\n")
        yield from engine(source, scorer)

    try:
        with pytest.raises(EngineError, match="batch scoring on Ray failed") as caught:
            system.predict(system.data, tmp_path / "out.parquet", engine=tampering)
    finally:
        model_file.write_bytes(original)
    assert caught.value.exit_code == 2
    assert not (tmp_path / "out.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not RAY.exists(), reason="the ray command is not beside this Python")
def test_cli_joins_a_cluster_started_apart_by_its_address(systems, tmp_path):
    """``ray start --head`` in its own process group, joined by `engine.address`; the test's
    own cluster is not running in this process (the CLI is a subprocess anyway)."""
    system = systems("binary")
    port = _free_port()
    # the head and mlsd share a token, as Ray's token authentication asks of a cluster
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN"] = token
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="mlsd-ray-", dir="/tmp")  # Unix socket paths are short
    head = subprocess.Popen(
        [
            str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
            "--include-dashboard=false", f"--temp-dir={temp}",
            "--object-store-memory=100000000",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        spec_path = tmp_path / "system.yaml"  # the system's, with its workspace and the head
        spec_path.write_text(
            system.spec_text()
            + f"workspace: {system.workspace.root}\n"
            + f"engine: {{kind: ray, address: '127.0.0.1:{port}'}}\n"
        )
        (tmp_path / "d.csv").write_bytes(system.data.read_bytes())
        deadline = time.monotonic() + 60
        while True:  # the head answers once its GCS is up
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, head.stderr.read().decode()
            assert time.monotonic() < deadline, "ray start --head did not come up in 60 s"
            time.sleep(0.5)
        run = subprocess.run(
            [
                sys.executable, "-m", "mlsd", "predict", "-c", str(spec_path), "--input",
                str(system.data), "--output", str(tmp_path / "scored.parquet"), "--json",
            ],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert summary["rows"] == summary["scored"] == 400
        local = system.predict(system.data, tmp_path / "local.parquet")
        assert pq.read_table(tmp_path / "scored.parquet").equals(
            pq.read_table(tmp_path / "local.parquet")
        )
        assert local["scored"] == 400
    finally:
        with contextlib.suppress(ProcessLookupError):
            # the whole cluster at once: `ray start --block` on SIGTERM takes ~30 s to stop
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(60)
        shutil.rmtree(temp, ignore_errors=True)
